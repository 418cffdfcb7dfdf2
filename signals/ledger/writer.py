"""Recording that never blocks or fails a request: rows go into a bounded queue, a thread writes them in batches.

When the database is down, the disk is full or the queue overflows, the rows are not recorded: that is counted
(`/metrics`), shown in health with the last error, and the request that produced them is answered as usual.
The scheduler, whose whole job is recording, writes through `write_now` instead and learns about failures.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from signals.core.metrics import ServerMetrics
from signals.core.timeframes import iso_z
from signals.ledger.store import Ledger

logger = logging.getLogger(__name__)

BATCH = 500


@dataclass
class WriterStatus:
    recorded: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    def as_wire(self) -> dict[str, Any]:
        """What /status shows: the times as ISO-8601 with `Z` (the wire's one time format), not epoch floats."""
        stamps = {
            name: None if value is None else iso_z(pd.Timestamp(value, unit="s", tz="UTC"))
            for name, value in (("last_error_at", self.last_error_at), ("last_success_at", self.last_success_at))
        }
        return self.__dict__ | stamps | {"degraded": self.degraded}

    @property
    def degraded(self) -> bool:
        """The last write failed (and none succeeded since)."""
        return self.last_error_at is not None and (self.last_success_at or 0) < self.last_error_at


class LedgerWriter:
    def __init__(self, ledger: Ledger, metrics: ServerMetrics, *, capacity: int = 10_000) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.status = WriterStatus()
        self._queue: queue.Queue[tuple[str, Mapping[str, Any]] | None] = queue.Queue(maxsize=capacity)
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()
        self._listeners: list[Callable[[str, Sequence[Mapping[str, Any]]], None]] = []

    def on_recorded(self, listener: Callable[[str, Sequence[Mapping[str, Any]]], None]) -> None:
        """Call `listener(kind, rows)` after rows were written (the push stream listens here)."""
        self._listeners.append(listener)

    def submit(self, kind: str, row: Mapping[str, Any]) -> bool:
        """Queue a row ("signal" or "action"); False (and counted) when the queue is full."""
        try:
            self._idle.clear()
            self._queue.put_nowait((kind, row))
            return True
        except queue.Full:
            self.status.dropped += 1
            self.metrics.ledger_dropped.labels(kind).inc()
            return False

    def write_now(self, kind: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write synchronously (for the scheduler); raises what the database raises, after counting it."""
        try:
            new = self._write(kind, rows)
        except Exception as error:
            self._failed(kind, len(rows), error)
            raise
        return new

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row was written or given up on; False on timeout."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch: dict[str, list[Mapping[str, Any]]] = {item[0]: [item[1]]}
            # What queued up while the last batch was written goes in this one; nothing waits for more.
            while sum(map(len, batch.values())) < BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.setdefault(nxt[0], []).append(nxt[1])
            for kind, rows in batch.items():
                try:
                    self._write(kind, rows)
                except Exception as error:  # a bad database must not kill the writer: count and go on
                    self._failed(kind, len(rows), error)
            if self._queue.empty():
                self._idle.set()

    def _write(self, kind: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        new = self.ledger.record_signals(rows) if kind == "signal" else self.ledger.record_actions(rows)
        self.status.recorded += new
        self.status.kinds[kind] = self.status.kinds.get(kind, 0) + new
        self.status.last_success_at = time.time()
        self.metrics.recorded.labels(kind).inc(new)
        for listener in self._listeners:
            try:
                listener(kind, rows)
            except Exception:  # a listener's failure is its own
                logger.exception("ledger listener failed")
        return new

    def _failed(self, kind: str, count: int, error: BaseException) -> None:
        self.status.failed += count
        self.status.last_error = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        self.status.last_error_at = time.time()
        self.metrics.ledger_failures.labels(kind).inc(count)
        logger.warning("ledger: %d %s record(s) not recorded: %s", count, kind, self.status.last_error)
