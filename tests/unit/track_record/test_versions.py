"""Model versions side by side: which version serves, a newer one in shadow, promotion by the stated rule,
rollback and pins recorded in the ledger, and a fallback when the served version fails verification."""

from __future__ import annotations

import asyncio
from pathlib import Path

import bentoml
import pytest

from signals.core.errors import Conflict, ModelNotFound
from signals.core.metrics import server_metrics
from signals.core.settings import Settings
from signals.data.store import CandleStore
from signals.ledger.store import Ledger
from signals.ledger.writer import LedgerWriter
from signals.models.cnn_lstm.artifact import WEIGHTS_FILE
from signals.serving.catalog import choose_versions
from signals.serving.engine import SignalEngine
from signals.track_record.versions import current_catalog, pin, promote, rollback
from tests.support.factories import random_walk_candles
from tests.support.models import tiny_cnn_lstm

SYMBOL = "LINK/USDT"
NAME = "cnn-lstm-link-usdt-4h"


@pytest.mark.parametrize(
    ("versions", "state", "pinned", "auto", "served", "candidate"),
    [
        (["v3", "v2", "v1"], None, None, False, "v3", None),  # fresh install: the newest serves
        (["v3", "v2", "v1"], {"served_version": "v2"}, None, False, "v2", "v3"),  # v3 waits in shadow
        (["v3", "v2", "v1"], {"served_version": "v2"}, None, True, "v3", None),  # auto-promote
        (["v3", "v2", "v1"], {"served_version": "v1", "pinned": True}, None, False, "v1", None),  # pinned
        (["v3", "v2", "v1"], {"served_version": "v2"}, "v1", False, "v1", None),  # pinned by setting wins
        (["v3"], {"served_version": "gone"}, None, False, "v3", None),  # promoted version deleted: newest
        ([], None, None, False, None, None),
    ],
)
def test_choose_versions(
    versions: list[str], state: dict | None, pinned: str | None, auto: bool, served: str | None, candidate: str | None
) -> None:
    choice = choose_versions(versions, state, pinned, auto)
    assert (choice.served, choice.candidate) == (served, candidate)


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        exchange="synthetic",
        universe=[SYMBOL],
        timeframes=["4h"],
        device="cpu",
        database_url=f"sqlite:///{tmp_path / 'signals.db'}",
    )


def test_a_new_version_runs_in_shadow_until_promoted_and_every_change_is_recorded(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    CandleStore(tmp_path).write("synthetic", SYMBOL, "4h", random_walk_candles(700, timeframe="4h", seed=9))
    ledger = Ledger(settings.database_url or "")
    ledger.migrate()
    first = tiny_cnn_lstm(SYMBOL, "4h", seed=1)
    catalog = current_catalog(settings, ledger)
    assert catalog.cnn(SYMBOL, "4h").version == first.version and catalog.shadows == []
    second = tiny_cnn_lstm(SYMBOL, "4h", seed=2)
    catalog = current_catalog(settings, ledger)
    assert catalog.cnn(SYMBOL, "4h").version == first.version  # still the first
    assert [e.version for e in catalog.shadows] == [second.version]

    writer = LedgerWriter(ledger, server_metrics())
    engine = SignalEngine.offline(settings, catalog, writer=writer)
    shadow = asyncio.run(engine.shadow("4h"))
    assert [s.model_version for s in shadow] == [second.version]
    writer.flush(10)
    (record,) = ledger.history(SYMBOL, "4h", modes=["shadow"])
    assert record["model_version"] == second.version  # recorded, never served

    refused = promote(ledger, settings, NAME)
    assert not refused.promoted and "resolved signals on common candles" in refused.reason
    forced = promote(ledger, settings, NAME, force=True)
    assert forced.promoted and forced.to_version == second.version and forced.from_version == first.version
    assert current_catalog(settings, ledger).cnn(SYMBOL, "4h").version == second.version

    back = rollback(ledger, NAME)
    assert back.to_version == first.version
    assert current_catalog(settings, ledger).cnn(SYMBOL, "4h").version == first.version
    pin(ledger, NAME, second.version)
    third = tiny_cnn_lstm(SYMBOL, "4h", seed=3)
    catalog = current_catalog(settings, ledger)
    assert catalog.cnn(SYMBOL, "4h").version == second.version and catalog.shadows == []  # a pin holds
    assert third.version not in {e.version for e in catalog.entries}
    kinds = [e["kind"] for e in reversed(ledger.events(NAME))]
    assert kinds == ["serve", "promote", "rollback", "pin"]
    writer.close()
    ledger.close()


def test_a_served_version_that_fails_verification_falls_back_to_the_newest_earlier_one(tmp_path: Path) -> None:
    settings = settings_for(tmp_path).model_copy(update={"universe": ["AVAX/USDT"]})
    older = tiny_cnn_lstm("AVAX/USDT", "4h", seed=4)
    newer = tiny_cnn_lstm("AVAX/USDT", "4h", seed=5)
    weights = newer.file(WEIGHTS_FILE)
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    try:
        entry = current_catalog(settings, None).cnn("AVAX/USDT", "4h")
        assert entry.version == older.version
        assert entry.note is not None
        assert entry.note.startswith(f"fallback: version {newer.version} failed verification")
        assert "SHA-256" in entry.note
    finally:  # the session's model store is shared: a later test that signs or loads every model must not meet it
        bentoml.models.delete(newer.tag)


def test_rollback_goes_to_the_version_asked_for_and_force_is_needed_for_a_pin_or_a_never_served_one(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    ledger = Ledger(settings.database_url or "")
    ledger.migrate()
    first = tiny_cnn_lstm(SYMBOL, "4h", seed=11)
    current_catalog(settings, ledger)  # a fresh install serves the first version
    never_served = tiny_cnn_lstm(SYMBOL, "4h", seed=12)
    third = tiny_cnn_lstm(SYMBOL, "4h", seed=13)
    assert promote(ledger, settings, NAME, third.version, force=True).to_version == third.version

    with pytest.raises(Conflict, match=f"never served version '{never_served.version}'"):
        rollback(ledger, NAME, never_served.version)
    with pytest.raises(ModelNotFound, match="has no version 'nope'"):
        rollback(ledger, NAME, "nope", force=True)
    assert current_catalog(settings, ledger).cnn(SYMBOL, "4h").version == third.version  # refusals change nothing

    forced = rollback(ledger, NAME, never_served.version, force=True)
    assert (forced.from_version, forced.to_version, forced.reason) == (
        third.version,
        never_served.version,
        "rolled back (forced)",
    )
    back = rollback(ledger, NAME, first.version)  # served before: no force needed
    assert back.promoted and back.to_version == first.version
    assert current_catalog(settings, ledger).cnn(SYMBOL, "4h").version == first.version
    again = rollback(ledger, NAME, first.version)
    assert not again.promoted and again.reason == "already served"

    pin(ledger, NAME, third.version)
    with pytest.raises(Conflict, match="is pinned"):
        rollback(ledger, NAME)
    unpinned_by_force = rollback(ledger, NAME, force=True)
    assert unpinned_by_force.to_version == first.version  # the version served before the pin
    assert ledger.model_states()[NAME]["pinned"]  # the pin moves with it
    kinds = [e["kind"] for e in reversed(ledger.events(NAME))]
    assert kinds == ["serve", "promote", "rollback", "rollback", "pin", "rollback"]
    ledger.close()
