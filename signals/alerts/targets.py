"""Where a webhook may point: https to a public address by default, never credentials in the URL.

A webhook makes the server send requests on a subscriber's say-so, so a URL is a way to reach what the server can
reach (server-side request forgery): the cloud's metadata service at 169.254.169.254, the loopback admin surface,
the cluster's private services. The policy refuses those unless the operator allows them (`SIGNALS_WEBHOOK_ALLOW_HTTP`,
`SIGNALS_WEBHOOK_ALLOW_PRIVATE`: a receiver on the same host or inside the cluster), at subscription time and again
before every delivery (a name may resolve elsewhere later). Credentials belong in the HMAC secret, not the URL, and
URLs stored before this rule are shown with their password redacted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from signals.core.errors import InvalidInput

Resolver = Callable[[str, int], Iterable[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address a name resolves to (what the HTTP client may connect to)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})


@dataclass(frozen=True)
class TargetPolicy:
    allow_http: bool = False
    allow_private: bool = False
    resolver: Resolver = resolve

    def check(self, url: str) -> str:
        """The URL when it may be called; InvalidInput saying what to change otherwise."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"{redact_url(url)!r} is not an http(s) URL")
        if parts.scheme == "http" and not self.allow_http:
            raise InvalidInput(
                f"{redact_url(url)!r} is plain http: use https (or set SIGNALS_WEBHOOK_ALLOW_HTTP=true for a receiver "
                "on a network you trust)"
            )
        if parts.username is not None or parts.password is not None:
            raise InvalidInput(
                "credentials in a webhook URL are refused (they would be stored and shown): drop the user:password@ "
                "part; receivers authenticate deliveries by the X-Signals-Signature HMAC"
            )
        if not self.allow_private:
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError as error:
                raise InvalidInput(f"{redact_url(url)!r} has a bad port") from error
            try:
                addresses = list(self.resolver(parts.hostname, port))
            except UnicodeError as error:  # the resolver's IDNA encoding: control characters, empty labels
                raise InvalidInput(
                    f"the webhook's host {parts.hostname!r} is not a valid host name ({error}): write it in letters, "
                    "digits, hyphens and dots (an international name as its xn-- form)"
                ) from error
            except OSError as error:
                raise InvalidInput(f"the webhook's host {parts.hostname!r} does not resolve ({error})") from error
            for address in addresses:
                if not _public(address):
                    raise InvalidInput(
                        f"the webhook's host {parts.hostname!r} is {address}, a loopback, link-local or private "
                        "address: refused (set SIGNALS_WEBHOOK_ALLOW_PRIVATE=true for a receiver on this host or "
                        "inside your network)"
                    )
        return url.strip()


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***` (for `alerts list`, logs and `/status`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
