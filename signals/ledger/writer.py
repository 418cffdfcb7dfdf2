"""Recording that never blocks or fails a request: rows go into a bounded queue, a thread writes them in batches.

When the database does not answer (stopped, locked, unreadable), the rows are not lost: they wait in a bounded
retry buffer and are written again every `retry_s`, and at once after any write succeeds (the database is back).
Only what overflows that buffer (or the queue) is dropped, and that is counted (`/metrics`, `/status`). A write
that fails for another reason (a bug: a constraint, bad SQL) is counted and not retried. Health shows the last
error and how many rows wait; it is `ok` again on the first successful write once nothing waits.
The scheduler, whose whole job is recording, writes through `write_now` instead and learns about failures (its
rows wait for the retry too: writes are idempotent, a row written twice is recorded once).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from signals.core.metrics import ServerMetrics
from signals.core.timeframes import iso_z
from signals.ledger.outage import describe, is_outage
from signals.ledger.store import Ledger

logger = logging.getLogger(__name__)

BATCH = 500
# How long the thread gathers rows after the first of a burst before writing them in one transaction. Waking the
# thread and a transaction per row cost a cold request ~1 ms of the interpreter's lock (BENCHMARKS.md, "Recording
# off the cold path"); a burst's rows cost one wake-up and one transaction. `flush` and `close` end it at once.
LINGER_S = 0.05
Row = tuple[str, Mapping[str, Any]]
RowSource = Mapping[str, Any] | Callable[[], Mapping[str, Any]]  # a row, or what makes it in the writer's thread
_TICK: tuple[str, RowSource] = ("", {})  # what the thread reads when no row came within `retry_s`: retry what waits


@dataclass
class WriterStatus:
    recorded: int = 0
    failed: int = 0  # rows whose first write failed (they wait for the retry when the database was down)
    dropped: int = 0  # rows given up on: the queue or the retry buffer was full, or the write was refused
    retried: int = 0  # rows written by a retry
    pending: int = 0  # rows waiting for the retry now
    failing: bool = False  # the last write failed and none succeeded since
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
        """The last write failed (none succeeded since), or rows still wait for the retry."""
        return self.failing or self.pending > 0


class LedgerWriter:
    def __init__(
        self,
        ledger: Ledger,
        metrics: ServerMetrics,
        *,
        capacity: int = 10_000,
        retry_capacity: int = 10_000,
        retry_s: float = 5.0,
        linger_s: float = LINGER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`linger_s`: how long the thread gathers a burst's rows before writing them (0: write what is queued)."""
        self.ledger = ledger
        self.metrics = metrics
        self.status = WriterStatus()
        self.retry_capacity = retry_capacity
        self.retry_s = retry_s
        self.clock = clock
        self._queue: queue.Queue[tuple[str, RowSource] | None] = queue.Queue(maxsize=capacity)
        self._pending: deque[Row] = deque()
        self._pending_lock = threading.Lock()
        self._retry_lock = threading.Lock()  # one retry at a time (the thread's, or a caller's `retry_pending`)
        self._next_retry = 0.0
        self.linger_s = linger_s
        self._idle = threading.Event()
        self._idle.set()
        self._hurry = threading.Event()  # set by `flush` / `close`: write what is queued now, no lingering
        self._listeners: list[Callable[[str, Sequence[Mapping[str, Any]]], None]] = []
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def on_recorded(self, listener: Callable[[str, Sequence[Mapping[str, Any]]], None]) -> None:
        """Call `listener(kind, rows)` after rows were written (the push stream listens here)."""
        self._listeners.append(listener)

    def submit(self, kind: str, row: RowSource) -> bool:
        """Queue a row ("signal" or "action"), or a function that makes it: then the row is built in the writer's
        thread, off the request's path. False (and counted) when the queue is full."""
        try:
            self._idle.clear()
            self._queue.put_nowait((kind, row))
            return True
        except queue.Full:
            self._drop(kind, 1)
            return False

    def write_now(self, kind: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write synchronously (for the scheduler); raises what the database raises, after counting it (and
        keeping the rows for the retry when the database was down)."""
        try:
            new = self._write(kind, rows)
        except Exception as error:
            self._failed(kind, rows, error)
            raise
        self._retry_if_any()
        return new

    def retry_pending(self) -> int:
        """Write the rows that wait for the retry now; the number written (0 when the database still fails)."""
        with self._retry_lock:
            with self._pending_lock:
                rows = list(self._pending)
                self._pending.clear()
            by_kind: dict[str, list[Mapping[str, Any]]] = {}
            for kind, row in rows:
                by_kind.setdefault(kind, []).append(row)
            written = 0
            for kind, kind_rows in by_kind.items():
                try:
                    self._write(kind, kind_rows)
                except Exception as error:  # still down: they wait again (in front of what failed since)
                    self._park(kind, kind_rows, front=True)
                    self._note_error(error)
                    continue
                written += len(kind_rows)
            self.status.retried += written
            self._count_pending()
            if written:
                logger.info("ledger: %d waiting record(s) written (%d still waiting)", written, self.status.pending)
            return written

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row was written, given up on, or parked for the retry; False on timeout."""
        self._hurry.set()
        return self._idle.wait(timeout)

    def flush_unless_failing(self, timeout: float = 10.0) -> bool:
        """Like `flush`, but gives up as soon as a write fails after the call (the rows wait for the retry; a
        caller answering a request need not wait for every attempt); True only when everything was written."""
        since = time.time()
        deadline = time.monotonic() + timeout
        self._hurry.set()
        while not self._idle.wait(0.05):
            self._hurry.set()  # rows that came since (requests go on) do not linger either
            failed_since = (self.status.last_error_at or 0) >= since and self.status.failing
            if failed_since or time.monotonic() > deadline:
                return False
        return not self.status.failing

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._hurry.set()
        self._thread.join(timeout)
        if self._pending:
            logger.warning("ledger: %d record(s) still waiting for the database at shutdown", len(self._pending))

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.retry_s if self._pending else None)
            except queue.Empty:
                item = _TICK
            if item is None:
                return
            if item is not _TICK and self.linger_s > 0 and not self._hurry.is_set():
                # A burst's rows in one transaction: the thread sleeps (off the interpreter's lock) while they
                # queue, instead of waking and writing once per row. `flush` and `close` cut the wait short.
                self._hurry.wait(self.linger_s)
            self._hurry.clear()
            batch: dict[str, list[RowSource]] = {} if item is _TICK else {item[0]: [item[1]]}
            # What queued up while the thread lingered (or wrote the last batch) goes in this one.
            while batch and sum(map(len, batch.values())) < BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.setdefault(nxt[0], []).append(nxt[1])
            for kind, queued in batch.items():
                try:
                    rows = [row() if callable(row) else row for row in queued]
                except Exception:  # a row that cannot be made is a bug: counted as dropped, the others go on
                    logger.exception("ledger: %d %s record(s) could not be made", len(queued), kind)
                    self._drop(kind, len(queued))
                    continue
                try:
                    self._write(kind, rows)
                except Exception as error:  # a bad database must not kill the writer: keep the rows, go on
                    self._failed(kind, rows, error)
            self._retry_if_any()
            if self._queue.empty():
                self._idle.set()

    def _retry_if_any(self) -> None:
        """Retry what waits when a write just succeeded (the database is back) or the retry is due."""
        if self._pending and (not self.status.failing or self.clock() >= self._next_retry):
            self.retry_pending()

    def _write(self, kind: str, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        new = self.ledger.record_signals(rows) if kind == "signal" else self.ledger.record_actions(rows)
        self.status.recorded += new
        self.status.kinds[kind] = self.status.kinds.get(kind, 0) + new
        self.status.last_success_at = time.time()
        self.status.failing = False
        self.metrics.recorded.labels(kind).inc(new)
        for listener in self._listeners:
            try:
                listener(kind, rows)
            except Exception:  # a listener's failure is its own
                logger.exception("ledger listener failed")
        return new

    def _failed(self, kind: str, rows: Sequence[Mapping[str, Any]], error: BaseException) -> None:
        self.status.failed += len(rows)
        self.metrics.ledger_failures.labels(kind).inc(len(rows))
        first = not self.status.failing  # one warning per outage, not one per record
        self._note_error(error)
        if is_outage(error):
            self._park(kind, rows)
            logger.log(
                logging.WARNING if first else logging.DEBUG,
                "ledger: %d %s record(s) wait for the retry (%d waiting): %s",
                len(rows),
                kind,
                self.status.pending,
                self.status.last_error,
            )
        else:
            self._drop(kind, len(rows))
            logger.warning("ledger: %d %s record(s) not recorded: %s", len(rows), kind, self.status.last_error)

    def _note_error(self, error: BaseException) -> None:
        self.status.last_error = describe(error)
        self.status.last_error_at = time.time()
        self.status.failing = True
        self._next_retry = self.clock() + self.retry_s

    def _park(self, kind: str, rows: Sequence[Mapping[str, Any]], *, front: bool = False) -> None:
        """Keep rows for the retry, up to `retry_capacity`; the rest are dropped and counted."""
        with self._pending_lock:
            room = max(0, self.retry_capacity - len(self._pending))
            kept = list(rows[:room])
            if front:
                self._pending.extendleft((kind, row) for row in reversed(kept))
            else:
                self._pending.extend((kind, row) for row in kept)
        self._count_pending()
        if len(rows) > len(kept):
            self._drop(kind, len(rows) - len(kept))

    def _drop(self, kind: str, count: int) -> None:
        self.status.dropped += count
        self.metrics.ledger_dropped.labels(kind).inc(count)

    def _count_pending(self) -> None:
        self.status.pending = len(self._pending)
        self.metrics.ledger_pending.set(self.status.pending)
