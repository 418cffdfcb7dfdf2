"""The ledger on SQLite and on a real PostgreSQL server: migrations, idempotent records, outcomes, the refresh
lease that exactly one of many contenders wins, and model version state."""

from __future__ import annotations

import threading
from importlib.resources import files
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from signals.core.settings import Settings
from signals.ledger.schema import metadata, signal_records
from signals.ledger.store import Ledger, database_url, redact
from tests.support.factories import action_record
from tests.support.factories import signal_record as record


def test_the_migrated_schema_is_exactly_the_declared_one(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    assert ledger.revision() is not None
    ledger.migrate()  # a second start migrates nothing and fails on nothing


def test_a_signal_is_recorded_once_per_model_version_pair_and_candle(ledger: Ledger) -> None:
    assert ledger.record_signals([record()]) == 1
    assert ledger.record_signals([record(), record(p_long=0.9)]) == 0  # the same key: kept as first recorded
    assert ledger.record_signals([record(model_version="v2"), record(candle_ms=1_700_003_600_000)]) == 2
    stored = ledger.signal_at("BTC/USDT", "1h", 1_700_000_000_000, version="v1")
    assert stored is not None and stored["p_long"] == 0.5 and stored["payload"] == {"symbol": "BTC/USDT"}
    assert ledger.counts() == {"signals": 3, "pending": 3, "actions": 0}


def test_probabilities_come_back_bit_for_bit(ledger: Ledger) -> None:
    values = (0.1234567890123456789, 1 / 3, float.fromhex("0x1.fffffffffffffp-2"))
    ledger.record_signals([record(p_short=values[0], p_no_trade=values[1], p_long=values[2])])
    stored = ledger.signal_at("BTC/USDT", "1h", 1_700_000_000_000)
    assert stored is not None
    assert (stored["p_short"], stored["p_no_trade"], stored["p_long"]) == values


def test_outcomes_resolve_due_records_once(ledger: Ledger) -> None:
    ledger.record_signals([record(), record(candle_ms=1_800_000_000_000, expires_ms=1_800_000_000_000 + 39_600_000)])
    due = ledger.due(now_ms=1_750_000_000_000)
    assert [r["candle_ms"] for r in due] == [1_700_000_000_000]
    outcome = {
        "id": due[0]["id"],
        "resolved_ms": 1,
        "outcome_label": 2,
        "touched": 1,
        "bars_to_exit": 3,
        "long_return": 0.01,
        "short_return": -0.01,
        "call_return": 0.007,
    }
    assert ledger.resolve([outcome]) == 1
    assert ledger.resolve([{**outcome, "outcome_label": 0}]) == 0  # already resolved: left as it was
    assert ledger.due(now_ms=1_750_000_000_000) == []
    (resolved,) = ledger.resolved(timeframe="1h")
    assert resolved["outcome_label"] == 2 and resolved["call_return"] == 0.007
    summary = ledger.live_summary()[("cnn-lstm-btc-usdt-1h", "v1")]["live"]
    assert (summary["recorded"], summary["resolved"], summary["hits"]) == (2, 1, 1)


def test_exactly_one_of_many_contenders_claims_a_refresh(ledger: Ledger) -> None:
    winners: list[str] = []
    start = threading.Barrier(8)

    def contend(name: str) -> None:
        start.wait()
        if ledger.claim("1h", 1_700_000_000_000, name, now_ms=1_000, lease_ms=60_000):
            winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"worker-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    lease = ledger.lease("1h", 1_700_000_000_000)
    assert lease is not None and lease.holder == winners[0] and lease.status == "claimed"


def test_a_dead_holders_lease_is_taken_over_once_it_expires_and_a_finished_one_never(ledger: Ledger) -> None:
    assert ledger.claim("4h", 1, "a", now_ms=1_000, lease_ms=10_000)
    assert not ledger.claim("4h", 1, "b", now_ms=5_000, lease_ms=10_000)  # a's lease runs
    assert ledger.claim("4h", 1, "b", now_ms=12_000, lease_ms=10_000)  # a died: b takes over
    assert not ledger.finish("4h", 1, "a", now_ms=13_000, status="done", detail={})  # a no longer holds it
    assert ledger.finish("4h", 1, "b", now_ms=14_000, status="done", detail={"recorded": 3})
    assert not ledger.claim("4h", 1, "c", now_ms=99_000, lease_ms=10_000)  # done is done
    lease = ledger.lease("4h", 1)
    assert lease is not None and (lease.holder, lease.status, lease.attempts, lease.detail) == (
        "b",
        "done",
        2,
        {"recorded": 3},
    )


def test_model_state_and_events_are_kept(ledger: Ledger) -> None:
    ledger.set_model_state("ppo-1h", "v2", True, 10)
    ledger.set_model_state("ppo-1h", "v3", False, 20)
    assert ledger.model_states()["ppo-1h"]["served_version"] == "v3"
    ledger.add_event(
        {
            "at_ms": 20,
            "kind": "promote",
            "model_name": "ppo-1h",
            "from_version": "v2",
            "to_version": "v3",
            "reason": "better",
            "detail": {"n": 1},
        }
    )
    (event,) = ledger.events("ppo-1h")
    assert event["kind"] == "promote" and event["detail"] == {"n": 1}


def test_the_default_database_is_sqlite_in_the_data_directory_and_urls_are_redacted(tmp_path: Any) -> None:
    assert database_url(Settings(data_dir=tmp_path)) == f"sqlite:///{tmp_path.resolve() / 'signals.db'}"
    url = "postgresql+psycopg://user:secret@db.example:5432/signals"
    assert database_url(Settings(database_url=url)) == url
    assert "secret" not in redact(url) and "db.example" in redact(url)


def test_a_database_that_does_not_answer_is_a_clear_503() -> None:
    from signals.core.errors import LedgerUnavailable

    down = Ledger("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(LedgerUnavailable, match="does not answer"):
        down.ping()
    assert sa.engine.make_url(down.url).port == 1


def _migrate(ledger: Ledger, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(files("signals.ledger") / "migrations"))
    with ledger.engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def test_a_live_and_a_backfill_record_of_one_candle_are_both_kept_and_lookups_prefer_live(ledger: Ledger) -> None:
    """The start-up catch-up records `live` on a candle a backfill already reached: the live record is not lost."""
    assert ledger.record_signals([record(mode="backfill", p_long=0.4)]) == 1
    assert ledger.record_signals([record(mode="live"), record(mode="live", p_long=0.9)]) == 1  # once per mode
    assert ledger.record_actions([action_record(mode="backfill"), action_record(mode="live")]) == 2
    found = ledger.signal_at("BTC/USDT", "1h", 1_700_000_000_000, version="v1")
    assert found is not None and found["mode"] == "live" and found["p_long"] == 0.5
    assert ledger.published("signal", "v1", "BTC/USDT", 1_700_000_000_000) is not None


def test_migration_0004_adds_the_mode_to_the_keys_on_a_ledger_with_records(database_url: str) -> None:
    ledger = Ledger(database_url)
    try:
        _migrate(ledger, "0003")
        # A row as revision 0003 stored it: no `paper` column yet.
        later = {"paper", "request_id"}  # `request_id` comes with 0005
        before = sa.table(
            "signal_records", *(sa.column(c.name, c.type) for c in signal_records.c if c.name not in later)
        )
        with ledger.engine.begin() as connection:
            connection.execute(sa.insert(before), [{k: v for k, v in record().items() if k not in later}])
        _migrate(ledger, "head")
        assert ledger.revision() == "0005"
        assert ledger.record_signals([record(mode="backfill")]) == 1  # same candle, another mode: kept
        assert ledger.record_signals([record(mode="live")]) == 0  # the old live record still holds its key
        rows = ledger.history("BTC/USDT", "1h")
        assert sorted(r["mode"] for r in rows) == ["backfill", "live"] and not any(r["paper"] for r in rows)
        _migrate(ledger, "0003", down=True)  # back: one record per candle, the live one kept
        with ledger.engine.connect() as connection:
            modes = connection.execute(sa.text("SELECT mode FROM signal_records")).scalars().all()
        assert modes == ["live"]
    finally:
        ledger.close()


def test_records_name_the_request_that_computed_them_and_0005_adds_the_column_to_old_records(
    database_url: str,
) -> None:
    ledger = Ledger(database_url)
    try:
        _migrate(ledger, "0004")
        before = sa.table(
            "signal_records", *(sa.column(c.name, c.type) for c in signal_records.c if c.name != "request_id")
        )
        with ledger.engine.begin() as connection:
            connection.execute(sa.insert(before), [{k: v for k, v in record().items() if k != "request_id"}])
        _migrate(ledger, "head")
        assert ledger.record_signals([record(mode="backfill", request_id="ab" * 16)]) == 1
        by_mode = {r["mode"]: r["request_id"] for r in ledger.history("BTC/USDT", "1h")}
        assert by_mode == {"live": None, "backfill": "ab" * 16}
        _migrate(ledger, "0004", down=True)
        assert ledger.revision() == "0004"
    finally:
        ledger.close()


def test_the_live_summary_counts_each_mode_apart(ledger: Ledger) -> None:
    """`/models`' live figures are mode `live` only: backfill and shadow records of the same version are apart."""
    resolved = {"resolved_ms": 1, "outcome_label": 2, "call_return": 0.01}
    ledger.record_signals(
        [
            record(mode="live", actionable=True, candle_ms=1),
            record(mode="live", paper=True, candle_ms=2),
            record(mode="backfill", candle_ms=1),
            record(mode="backfill", candle_ms=3),
            record(mode="shadow", candle_ms=4),
        ]
    )
    ledger.resolve([{"id": r["id"], **resolved} for r in ledger.history("BTC/USDT")])
    summary = ledger.live_summary()[("cnn-lstm-btc-usdt-1h", "v1")]
    assert {mode: block["recorded"] for mode, block in summary.items()} == {"live": 2, "backfill": 2, "shadow": 1}
    live = summary["live"]
    assert (live["resolved"], live["calls"], live["paper_calls"]) == (2, 1, 1)
    assert live["call_return_sum"] == pytest.approx(0.01) and live["paper_return_sum"] == pytest.approx(0.01)
