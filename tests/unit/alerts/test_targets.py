"""Where a webhook may point: https to public addresses by default; credentials never stored or shown.

The resolver is injected (a name's addresses are the input under test); one test goes through the real dispatcher
to show a refused target is never contacted, whatever the ledger holds.
"""

from __future__ import annotations

import logging

import pytest

from signals.alerts.targets import TargetPolicy, redact_url
from signals.core.errors import InvalidInput


def resolving_to(*addresses: str) -> TargetPolicy:
    return TargetPolicy(resolver=lambda host, port: addresses)


@pytest.mark.parametrize(
    ("address", "what"),
    [
        ("169.254.169.254", "the cloud metadata service (link-local)"),
        ("127.0.0.1", "loopback"),
        ("10.0.0.7", "private"),
        ("192.168.1.20", "private"),
        ("::1", "IPv6 loopback"),
        ("fe80::1", "IPv6 link-local"),
        ("::ffff:127.0.0.1", "loopback mapped into IPv6"),
        ("0.0.0.0", "unspecified"),
    ],
)
def test_a_name_that_resolves_to_a_non_public_address_is_refused(address: str, what: str) -> None:
    with pytest.raises(InvalidInput, match="SIGNALS_WEBHOOK_ALLOW_PRIVATE=true"):
        resolving_to("93.184.216.34", address).check("https://hooks.example/desk")  # one bad address is enough


def test_literal_private_hosts_are_refused_by_the_real_resolver() -> None:
    for url in ("https://169.254.169.254/latest/meta-data", "https://127.0.0.1:3000/admin/promote", "https://[::1]/"):
        with pytest.raises(InvalidInput, match="loopback, link-local or private"):
            TargetPolicy().check(url)


def test_plain_http_and_credentials_are_refused_with_what_to_do() -> None:
    with pytest.raises(InvalidInput, match="use https .*SIGNALS_WEBHOOK_ALLOW_HTTP"):
        resolving_to("93.184.216.34").check("http://hooks.example/desk")
    with pytest.raises(InvalidInput, match="credentials in a webhook URL are refused") as refused:
        resolving_to("93.184.216.34").check("https://desk:hunter2@hooks.example/desk")
    assert "hunter2" not in str(refused.value)
    with pytest.raises(InvalidInput, match="not an http"):
        TargetPolicy().check("file:///etc/passwd")


def test_a_host_the_resolver_cannot_encode_is_refused_with_what_to_write() -> None:
    """Control characters in the host make `getaddrinfo` raise UnicodeError (its IDNA codec), not OSError: found by
    schemathesis as a 500 on POST /admin/alerts."""
    for url in ("https://\x1a\xb7\x93", "https://a..b/hook"):
        with pytest.raises(InvalidInput, match="is not a valid host name.*letters, digits"):
            TargetPolicy().check(url)


def test_public_https_passes_and_the_operator_can_allow_a_local_receiver() -> None:
    assert resolving_to("93.184.216.34").check(" https://hooks.example/desk ") == "https://hooks.example/desk"
    local = TargetPolicy(allow_http=True, allow_private=True)
    assert local.check("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
    with pytest.raises(InvalidInput, match="credentials"):  # never allowed, whatever the settings
        local.check("http://u:p@127.0.0.1:8080/hook")


def test_stored_urls_are_shown_without_their_password() -> None:
    assert redact_url("https://desk:hunter2@hooks.example:8443/x?y=1") == "https://desk:***@hooks.example:8443/x?y=1"
    assert redact_url("https://hooks.example/x") == "https://hooks.example/x"


def test_a_dead_letter_flood_is_one_summary_line_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    """The sender counts dead messages by target and says so once per window, not once per message."""
    import pandas as pd

    from signals.alerts.dispatcher import AlertDispatcher
    from tests.support.clock import FakeClock

    clock = FakeClock(pd.Timestamp("2026-12-05 12:00", tz="UTC"))
    sender = AlertDispatcher(None, clock=clock, dead_summary_s=60)  # type: ignore[arg-type]  # no ledger needed
    caplog.set_level(logging.WARNING, logger="signals.alerts.dispatcher")
    for _ in range(34):
        sender._dead["webhook https://desk:***@hooks.example/x"] += 1
    first = sender.summarise_dead()
    assert first is not None and "34 message(s) dead" in first and "hooks.example/x: 34" in first
    sender._dead["telegram 42"] += 1
    clock.advance(30)
    assert sender.summarise_dead() is None  # within the window: counted, not logged
    clock.advance(31)
    later = sender.summarise_dead()
    assert later is not None and "1 message(s) dead" in later and "telegram 42: 1" in later
    assert [r.getMessage() for r in caplog.records] == [first, later]
