"""The writer gathers a burst of request rows into one transaction (issue 22: recording off the cold path).

A thread woken and a transaction made per row cost a cold request about 1 ms of the interpreter's lock; the writer
now sleeps for `linger_s` after the first row of a burst, and `flush` / `close` end that wait at once. The tests set
a linger no test could reach, so they check the order of events, never a duration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from signals.core.metrics import server_metrics
from signals.ledger.store import Ledger
from signals.ledger.writer import LedgerWriter
from tests.support.factories import signal_record

NEVER_S = 3600.0  # a linger that never ends by itself here: only flush / close end it


class CountingLedger(Ledger):
    """A real SQLite ledger that keeps the size of every signal transaction."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.transactions: list[int] = []

    def record_signals(self, rows: Sequence[Mapping[str, Any]]) -> int:
        self.transactions.append(len(rows))
        return super().record_signals(rows)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[CountingLedger]:
    ledger = CountingLedger(f"sqlite:///{tmp_path / 'signals.db'}")
    ledger.migrate()
    yield ledger
    ledger.close()


def test_a_burst_of_rows_is_written_in_one_transaction_when_flushed(ledger: CountingLedger) -> None:
    writer = LedgerWriter(ledger, server_metrics(), linger_s=NEVER_S)
    try:
        for candle in range(5):
            assert writer.submit("signal", signal_record(candle_ms=1_000 + candle))
        made: list[int] = []

        def row() -> dict[str, Any]:  # a row made in the writer's thread (what a cold request queues)
            made.append(1)
            return signal_record(candle_ms=2_000)

        assert writer.submit("signal", row)  # joins the same transaction
        assert ledger.transactions == [] and writer.status.recorded == 0  # lingering: nothing written yet
        assert writer.flush(30)
        assert ledger.transactions == [6] and writer.status.recorded == 6 and made == [1]
        assert writer.submit("signal", signal_record(candle_ms=3_000))  # the next burst lingers again
        assert writer.flush(30)
        assert ledger.transactions == [6, 1]
    finally:
        writer.close()


def test_close_writes_what_lingers_without_waiting_for_the_linger(ledger: CountingLedger) -> None:
    writer = LedgerWriter(ledger, server_metrics(), linger_s=NEVER_S)
    assert writer.submit("signal", signal_record())
    writer.close(timeout=30)  # the thread would still sleep for NEVER_S had close not woken it
    assert ledger.transactions == [1] and writer.status.recorded == 1
    assert len(ledger.history("BTC/USDT", "1h")) == 1


def test_no_linger_writes_each_row_as_it_comes(ledger: CountingLedger) -> None:
    writer = LedgerWriter(ledger, server_metrics(), linger_s=0)
    try:
        assert writer.submit("signal", signal_record(candle_ms=1_000))
        assert writer.flush(30)
        assert writer.submit("signal", signal_record(candle_ms=2_000))
        assert writer.flush(30)
        assert ledger.transactions == [1, 1]
    finally:
        writer.close()
