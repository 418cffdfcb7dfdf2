"""The loop at candle close: one refresh per (timeframe, candle) across API workers and servers, then outcomes.

At each candle close of each served timeframe (plus `SIGNALS_SCHEDULER_DELAY_S` for the exchange to publish the
candle), every worker of every server sharing the ledger asks for the refresh lease of that (timeframe, candle):
- the one that gets it (`Ledger.claim`) syncs the candles (ccxt in live mode, the store otherwise), computes every
  served model's signal of the timeframe in one batched pass, records them (mode `live`) and its shadows (mode
  `shadow`), which also leaves them in its signal cache; pairs whose exchange calls failed are retried with
  backoff, and those still failing are reported stale (their previous signal keeps serving, marked stale);
  then it resolves the signals whose horizon has ended;
- the others wait for the lease to be done and warm their caches from the ledger records, so that every worker
  answers the first requests after a close from its cache.
A holder that dies mid-refresh loses its lease when it expires (`SIGNALS_REFRESH_LEASE_S`); the next worker to ask
takes it over. At start-up each worker does the same for the current candle of every timeframe (a catch-up).

Lag (`signals_scheduler_lag_seconds`) is the time from when a refresh could first run to its end: the candle's close
for a refresh at a close, the server's start for the catch-up (a 1d candle closed up to a day before a restart: that
age is no lag, and counting it would fire a lag alert on every restart).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from signals.contract import schemas
from signals.core.background import stop_task
from signals.core.clock import SYSTEM_CLOCK, Clock
from signals.core.errors import ExchangeUnavailable, LedgerUnavailable, SignalsError
from signals.core.settings import Settings
from signals.core.timeframes import close_time, iso_z, last_closed_open, parse_timeframe, timeframe_seconds
from signals.ledger.outage import RETRY_AFTER_S
from signals.ledger.records import ms, signal_from_row
from signals.ledger.store import Ledger
from signals.ledger.writer import LedgerWriter
from signals.serving.engine import SignalEngine
from signals.track_record.outcomes import resolve_due
from signals.track_record.probation import refresh_standings
from signals.track_record.versions import reload_catalog

logger = logging.getLogger(__name__)

FOLLOW_POLL_S = 0.2


@dataclass
class RefreshReport:
    timeframe: str
    candle_time: pd.Timestamp
    role: str  # leader | follower | manual
    signals: int = 0
    computed: int = 0  # signals computed by this refresh (a follower computes none)
    recorded: int = 0  # signal rows this refresh wrote (a candle recorded before is not recorded again)
    shadows: int = 0
    actions: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # symbol -> last error
    stale: list[str] = field(default_factory=list)  # pairs whose exchange failed every attempt
    resolved: int = 0
    seconds: float = 0.0  # from the candles read to every served signal (and action) recorded, cached and pushed
    read_seconds: float = 0.0  # reading the candles (the store's files, or the exchange in live mode)
    shadow_seconds: float = 0.0  # the shadow models after it (never served: off the served signals' path)
    lag_seconds: float = 0.0
    catch_up: bool = False  # the start-up refresh: its lag counts from the start, not from the candle's close
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step of a leader's refresh
    # What was computed, by stream key (kind, model version, symbol, candle ms), and when (the engine's clock):
    # an operator's refresh pushes again those recorded before it.
    keys: list[tuple[str, str, str, int]] = field(default_factory=list, repr=False)
    started_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "timeframe": self.timeframe,
            "candle_time": iso_z(self.candle_time),
            "role": self.role,
            "signals": self.signals,
            "computed": self.computed,
            "recorded": self.recorded,
            "shadows": self.shadows,
            "actions": self.actions,
            "errors": self.errors,
            "stale": self.stale,
            "resolved": self.resolved,
            "seconds": round(self.seconds, 4),
            "read_seconds": round(self.read_seconds, 4),
            "shadow_seconds": round(self.shadow_seconds, 4),
            "lag_seconds": round(self.lag_seconds, 3),
            "catch_up": self.catch_up,
            "phases": {name: round(seconds, 4) for name, seconds in self.phases.items()},
        }


class Scheduler:
    def __init__(
        self,
        engine: SignalEngine,
        ledger: Ledger,
        writer: LedgerWriter,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        reload: Callable[[], object] | None = None,
    ) -> None:
        """`reload` replaces the engine's catalog (its owner's `reload`; default: `versions.reload_catalog`)."""
        self.engine = engine
        self.ledger = ledger
        self.writer = writer
        self.settings = settings
        # Closes, leases and backoffs on `clock`: a test moves it instead of waiting for a candle to close.
        self.clock: Callable[[], pd.Timestamp] = clock.now
        self.sleep = clock.sleep
        self.reload = reload or (lambda: reload_catalog(engine, settings, ledger, self.clock))
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.timeframes = sorted({parse_timeframe(tf) for tf in settings.timeframes}, key=timeframe_seconds)
        self.last: dict[str, RefreshReport] = {}
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="signals-scheduler")

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        await stop_task(task)

    async def run(self) -> None:
        """Catch up on the current candles, then refresh at every close until stopped."""
        await self.tick(self.timeframes, catch_up_from=self.clock())
        while not self._stopping.is_set():
            now = self.clock()
            due_at, due = self.next_due(now)
            await self.sleep(max(0.0, (due_at - now).total_seconds()))
            await self.tick(due)

    def next_due(self, now: pd.Timestamp) -> tuple[pd.Timestamp, list[str]]:
        """When the next refresh is due (a close plus the delay) and for which timeframes."""
        delay = pd.Timedelta(seconds=self.settings.scheduler_delay_s)
        # The first close after (now - delay), plus the delay: a close at 10:00 is refreshed at 10:00 + delay.
        upcoming = {
            tf: close_time(last_closed_open(now - delay, tf), tf) + pd.Timedelta(seconds=timeframe_seconds(tf)) + delay
            for tf in self.timeframes
        }
        first = min(upcoming.values())
        return first, [tf for tf, at in upcoming.items() if at == first]

    async def tick(self, timeframes: list[str], *, catch_up_from: pd.Timestamp | None = None) -> list[RefreshReport]:
        """Refresh `timeframes`; `catch_up_from`: the start-up catch-up began then (its lag counts from then)."""
        reports = []
        for timeframe in timeframes:
            try:
                reports.append(await self.refresh(timeframe, catch_up_from=catch_up_from))
            except Exception as error:  # the loop must survive anything one refresh does
                self.last_error = f"{timeframe}: {type(error).__name__}: {error}"
                logger.exception("refresh of %s failed", timeframe)
        await self._reload_catalog()
        await self.refresh_standings([r.timeframe for r in reports if r.role in ("leader", "manual")])
        return reports

    # --- one refresh --------------------------------------------------------------------------------------------
    async def refresh(self, timeframe: str, *, catch_up_from: pd.Timestamp | None = None) -> RefreshReport:
        """The refresh of `timeframe`'s current candle: led by whoever gets the lease, followed by the others.

        A follower keeps asking while the lease is held: if its holder dies, the lease expires and the next ask
        takes it over (and leads). `catch_up_from`: this is the start-up catch-up, begun then."""
        started = time.perf_counter()
        candle_time = last_closed_open(self.clock(), timeframe)
        candle_ms = ms(candle_time)
        lease_ms = int(self.settings.refresh_lease_s * 1000)
        deadline = time.monotonic() + 2 * self.settings.refresh_lease_s
        while True:
            now_ms = ms(self.clock())
            if await asyncio.to_thread(self.ledger.claim, timeframe, candle_ms, self.holder, now_ms, lease_ms):
                report = await self._lead(timeframe, candle_time, started)
                break
            lease = await asyncio.to_thread(self.ledger.lease, timeframe, candle_ms)
            if lease is None or lease.status != "claimed" or time.monotonic() > deadline:
                report = await self._follow(timeframe, candle_time, lease.started_ms if lease else now_ms, started)
                break
            await self.sleep(FOLLOW_POLL_S)
        due = close_time(candle_time, timeframe)
        if catch_up_from is not None:
            report.catch_up = True
            due = max(due, catch_up_from)
        report.lag_seconds = (self.clock() - due).total_seconds()
        self.engine.metrics.scheduler_lag.labels(timeframe).set(report.lag_seconds)
        self.engine.metrics.refreshes.labels(timeframe, report.role).inc()
        self.last[timeframe] = report
        return report

    async def _lead(self, timeframe: str, candle_time: pd.Timestamp, started: float) -> RefreshReport:
        report = RefreshReport(timeframe, candle_time, "leader")
        status = "failed"
        try:
            await self._compute(report, started)
            status = "done"
            self.engine.metrics.refresh_seconds.labels(timeframe).observe(report.seconds)
        except Exception as error:
            report.errors["*"] = f"{type(error).__name__}: {error}"
            raise
        finally:
            await asyncio.to_thread(
                self.ledger.finish, timeframe, ms(candle_time), self.holder, ms(self.clock()), status, report.as_dict()
            )
        # After the refresh (its signals are served already): outcomes of the signals whose horizon has ended.
        mark = time.perf_counter()
        report.resolved = await self.resolve()
        report.phases["resolve"] = time.perf_counter() - mark
        return report

    async def refresh_now(self, timeframe: str) -> RefreshReport:
        """An operator's refresh (`/admin/refresh`), e.g. after importing candles: this worker computes and records
        every signal of the timeframe now, outside the lease (recording is idempotent), then resolves outcomes."""
        timeframe = parse_timeframe(timeframe)
        started = time.perf_counter()
        report = RefreshReport(timeframe, last_closed_open(self.clock(), timeframe), "manual")
        await self._compute(report, started)
        if self.writer.status.failing:  # computed and served, not recorded yet: the caller learns it now
            raise LedgerUnavailable(
                f"the {timeframe} signals were computed and are served, but the ledger does not answer: "
                f"{self.writer.pending} record(s) wait for its retry; try again in {RETRY_AFTER_S:g} s",
                retry_after_s=RETRY_AFTER_S,
            )
        report.resolved = await self.resolve()
        self.last[timeframe] = report
        return report

    async def _compute(self, report: RefreshReport, started: float) -> None:
        """Read every candle the timeframe's models read; then the signals (with retries) and, on the policy's
        timeframe, actions for a flat position, recorded (and so pushed); then the shadows, which no served signal
        waits for.

        `report.seconds` is the served path, from the candles read to the last served signal recorded and pushed
        (what the refresh budget is about); the read before it and the shadows after it are timed apart."""
        timeframe = report.timeframe
        mark = started

        def phase(name: str) -> float:
            nonlocal mark
            now = time.perf_counter()
            report.phases[name] = now - mark
            mark = now
            return now

        phase("lease")
        await self.engine.read_candles(timeframe)
        read = phase("read")
        report.read_seconds = report.phases["read"]
        report.started_ms = ms(self.engine.clock())  # the clock that stamps the records
        symbols = self.engine.catalog.cnn_symbols(timeframe)
        signals, errors = await self._signals_with_retries(timeframe, symbols)
        phase("signals")
        report.signals = report.computed = len(signals)
        report.errors = {symbol: str(error) for symbol, error in errors.items()}
        report.stale = sorted(s for s, e in errors.items() if isinstance(e, ExchangeUnavailable))
        actions = await self._actions(timeframe, symbols or list(self.settings.universe))
        report.actions = len(actions)
        phase("actions")
        report.keys = [
            (kind, answer.model_version, answer.symbol, ms(pd.Timestamp(answer.candle_time)))
            for kind, answers in (("signal", signals), ("action", actions))
            for answer in answers
        ]
        flushed = await asyncio.to_thread(self.writer.flush_unless_failing, 30.0)
        if flushed or not self.writer.status.failing:  # else the rows wait for the writer's retry (`refresh_now`)
            written = await asyncio.to_thread(self.ledger.recorded_since, timeframe, report.started_ms)
            written_keys = {(r["model_version"], r["symbol"], int(r["candle_ms"])) for r in written}
            report.recorded = sum(
                kind == "signal" and (version, symbol, candle) in written_keys
                for kind, version, symbol, candle in report.keys
            )
        report.seconds = phase("record") - read
        if signals:
            newest = max(pd.Timestamp(s.candle_time) for s in signals)
            staleness = (self.clock() - close_time(newest, timeframe)).total_seconds()
            self.engine.metrics.staleness.labels(timeframe).set(staleness)
        report.shadows = len(await self.engine.shadow(timeframe))  # recorded by the writer as they come
        phase("shadows")
        report.shadow_seconds = report.phases["shadows"]

    async def _actions(self, timeframe: str, symbols: list[str]) -> list[schemas.Action]:
        """The policy's action for a flat position on each symbol, on the policy's timeframe only (pushed as
        `prediction_update`); failures are the requests' business and are not retried here."""
        if parse_timeframe(self.settings.ppo_timeframe) != timeframe or not self.engine.catalog.serves_ppo(timeframe):
            return []
        requests = [schemas.ActionRequest(symbol=symbol, timeframe=timeframe) for symbol in symbols]
        answers = await asyncio.gather(*(self.engine.action(r) for r in requests), return_exceptions=True)
        return [answer for answer in answers if isinstance(answer, schemas.Action)]

    async def _signals_with_retries(
        self, timeframe: str, symbols: list[str]
    ) -> tuple[list[schemas.Signal], dict[str, SignalsError]]:
        """Every symbol's signal; symbols whose exchange failed are retried with exponential backoff."""
        signals: list[schemas.Signal] = []
        errors: dict[str, SignalsError] = {}
        todo = list(symbols)
        for attempt in range(self.settings.scheduler_retries + 1):
            if attempt:
                await self.sleep(self.settings.exchange_backoff_s * 2 ** (attempt - 1))
            results = await self.engine.predict_many([(s, timeframe) for s in todo], trigger="scheduler")
            retry = []
            for symbol, result in zip(todo, results, strict=True):
                if isinstance(result, schemas.Signal):
                    signals.append(result)
                    errors.pop(symbol, None)
                else:
                    errors[symbol] = result
                    if isinstance(result, ExchangeUnavailable):
                        retry.append(symbol)
            if not retry:
                break
            todo = retry
        return signals, errors

    async def _follow(
        self, timeframe: str, candle_time: pd.Timestamp, lease_started_ms: int, started: float
    ) -> RefreshReport:
        """Take the leader's signals from the ledger into this worker's cache."""
        report = RefreshReport(timeframe, candle_time, "follower")
        rows = await asyncio.to_thread(self.ledger.recorded_since, timeframe, lease_started_ms)
        tags = {(e.symbol or "", e.timeframe or ""): e.tag for e in self.engine.catalog.entries}
        report.signals = self.engine.warm([signal_from_row(row) for row in rows], tags)
        report.seconds = time.perf_counter() - started
        return report

    # --- outcomes and versions ----------------------------------------------------------------------------------
    async def resolve(self) -> int:
        """Resolve every recorded signal whose horizon has ended (`outcomes.resolve_due`)."""
        return await resolve_due(self.engine, self.ledger)

    async def _reload_catalog(self) -> None:
        """Pick up new model versions (a candidate joins the shadow runs; a promotion or pin takes effect)."""
        try:
            await asyncio.to_thread(self.reload)
        except Exception as error:  # keep serving the catalog we have
            self.last_error = f"catalog reload: {type(error).__name__}: {error}"
            logger.exception("catalog reload failed")

    async def refresh_standings(self, record_events_for: list[str]) -> None:
        """The probation standing of every served positive model, from the outcomes resolved so far, for the next
        candle's signals (those of this close were computed already: what was served is what was recorded); the
        changes are recorded as events by the worker that led the model's timeframe."""
        if self.settings.probation_calls <= 0:
            return
        try:
            self.engine.standings = await asyncio.to_thread(
                refresh_standings,
                self.ledger,
                self.engine.catalog.entries,
                needed=self.settings.probation_calls,
                now_ms=ms(self.clock()),
                record_events_for=record_events_for,
            )
        except Exception as error:  # keep the standings we have (a version not in them is on probation)
            self.last_error = f"probation: {type(error).__name__}: {error}"
            logger.exception("probation standings not refreshed")

    def status(self) -> dict[str, Any]:
        now = self.clock()
        due_at, due = self.next_due(now)
        return {
            "running": self._task is not None and not self._task.done(),
            "holder": self.holder,
            "next_refresh": iso_z(due_at),
            "next_timeframes": due,
            "last": {tf: report.as_dict() for tf, report in self.last.items()},
            "last_error": self.last_error,
        }
