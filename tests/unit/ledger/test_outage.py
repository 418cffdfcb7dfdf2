"""The ledger's outages (issue 20): a PostgreSQL server stopped and started again under the writer, a SQLite file
held by another connection's exclusive lock. Every route (and the event stream's resume) that needs the ledger
answers 503 + Retry-After in the one error shape; a record that could not be written waits in the writer's bounded
retry buffer and is written when the database answers again (the retry driven by the test, never by a wall-clock
wait); health is `ok` again on the first successful write."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from signals.api.errors import answer_errors
from signals.api.web import create_web_app
from signals.contract import schemas
from signals.core.metrics import server_metrics
from signals.ledger.store import Ledger
from signals.ledger.writer import LedgerWriter
from signals.live.push import PushHub
from signals.track_record import audit
from tests.support.factories import action_record, signal_record
from tests.support.postgres import Postgres

FOREVER = 3600.0  # the writer's own retry period: never reached here, the tests retry explicitly


@answer_errors
async def history_route(ledger: Ledger) -> Any:
    """What `/history` runs (service.py), with the same error handling."""
    return await asyncio.to_thread(audit.history, ledger, schemas.HistoryRequest(symbol="BTC/USDT"))


@answer_errors
async def refresh_route(ledger: Ledger) -> Any:
    """What `/admin/refresh` asks of the ledger first: the refresh lease of a candle."""
    return await asyncio.to_thread(ledger.claim, "1h", 1_000, "worker-1", 1_000, 60_000)


def assert_503(answer: Any) -> dict[str, Any]:
    assert isinstance(answer, JSONResponse), answer
    body = json.loads(bytes(answer.body))
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert body["success"] is False and body["status"] == 503 and "ledger" in body["error"]
    assert "127.0.0.1" not in body["error"] and "/" not in body["error"]  # no host, no path
    return body


def writer_of(ledger: Ledger, **options: Any) -> LedgerWriter:
    return LedgerWriter(ledger, server_metrics(), retry_s=FOREVER, clock=lambda: 0.0, **options)


@pytest.fixture
def stopped_postgres(postgres: Postgres) -> Iterator[Postgres]:
    """The session's server, to be stopped by the test; started again whatever happens."""
    try:
        yield postgres
    finally:
        try:
            postgres.start()
        except Exception:  # already running: the test started it
            pass


def test_postgres_stopped_then_started_answers_503_then_writes_what_waited(stopped_postgres: Postgres) -> None:
    ledger = Ledger(stopped_postgres.create_database(f"t_{uuid.uuid4().hex[:12]}"))
    ledger.migrate()
    writer = writer_of(ledger)
    hub = PushHub(ledger)
    stream = TestClient(create_web_app(lambda: None, lambda: hub))  # type: ignore[arg-type,return-value]
    try:
        stopped_postgres.stop()
        assert writer.submit("signal", signal_record()) and writer.submit("action", action_record())
        assert writer.flush(30)
        assert (writer.pending, writer.status.dropped, writer.status.recorded) == (2, 0, 0)
        assert writer.status.degraded and "OperationalError" in (writer.status.last_error or "")
        assert writer.retry_pending() == 0 and writer.pending == 2  # still down: they wait again, none lost
        assert_503(asyncio.run(history_route(ledger)))
        assert_503(asyncio.run(refresh_route(ledger)))
        resumed = stream.get("/api/stream", headers={"Last-Event-ID": "v1|BTC/USDT|2026-11-20T10:00:00Z"})
        assert resumed.status_code == 503 and resumed.headers["retry-after"] == "5"
        assert resumed.json()["success"] is False and "ledger" in resumed.json()["error"]

        stopped_postgres.start()
        assert writer.retry_pending() == 2
        assert (writer.pending, writer.status.retried, writer.status.dropped) == (0, 2, 0)
        assert not writer.status.degraded  # ok again on the first successful write
        assert ledger.counts()["signals"] == 1 and ledger.counts()["actions"] == 1
        assert asyncio.run(refresh_route(ledger)) is True  # the routes answer again (the pool reconnects)
    finally:
        writer.close(5)
        ledger.close()


def test_a_sqlite_file_locked_by_another_process_keeps_the_request_record_for_the_retry(tmp_path: Path) -> None:
    path = tmp_path / "signals.db"
    ledger = Ledger(f"sqlite:///{path}", busy_ms=20)
    ledger.migrate()
    writer = writer_of(ledger)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        assert writer.submit("action", action_record(mode="live"))  # what a request's /action records
        assert writer.flush_unless_failing(30) is False  # a refresh answers 503 at the first failure
        assert writer.flush(30)
        assert (writer.pending, writer.status.dropped) == (1, 0) and writer.status.degraded
        assert "locked" in (writer.status.last_error or "")
        assert_503(asyncio.run(refresh_route(ledger)))

        other.execute("ROLLBACK")
        assert writer.submit("signal", signal_record())  # the first write after the lock: what waited goes too
        assert writer.flush(30)
        assert writer.pending == 0 and not writer.status.degraded
        assert ledger.counts()["actions"] == 1 and ledger.counts()["signals"] == 1
    finally:
        other.close()
        writer.close(5)
        ledger.close()


def test_the_retry_buffer_is_bounded_and_what_overflows_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "signals.db"
    ledger = Ledger(f"sqlite:///{path}", busy_ms=20)
    ledger.migrate()
    writer = writer_of(ledger, retry_capacity=2)
    other = sqlite3.connect(path, isolation_level=None)
    dropped_before = server_metrics().ledger_dropped.labels("signal")._value.get()
    try:
        other.execute("BEGIN EXCLUSIVE")
        for candle in range(3):
            assert writer.submit("signal", signal_record(candle_ms=1_000 + candle))
            assert writer.flush(30)
        assert (writer.pending, writer.status.dropped) == (2, 1)
        assert server_metrics().ledger_dropped.labels("signal")._value.get() == dropped_before + 1
        other.execute("ROLLBACK")
        assert writer.retry_pending() == 2 and ledger.counts()["signals"] == 2
    finally:
        other.close()
        writer.close(5)
        ledger.close()
