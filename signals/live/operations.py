"""The composition root of an API worker: `Operations.start` builds the engine over the two runner ports, the
catalog of served versions (replaced only by `Operations.reload`), the ledger and its writer, and owns them and the
background loops (push, alerts, the candle-close loop, the Telegram bot) until `stop`; it also assembles what
health, `/models` and `/scorecard` show. `service.py` routes each request to one of its methods.

A ledger that cannot be opened or migrated does not stop the server: signals are then served but not recorded,
health says so with the reason, and the routes that need the ledger answer 503.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from pydantic import BaseModel

from signals.alerts.dispatcher import AlertDispatcher
from signals.alerts.targets import TargetPolicy, redact_url
from signals.contract import schemas
from signals.contract.wire import CnnLstmPort, FamiliesPort, PpoPort
from signals.core.background import STOP_TIMEOUT_S, stop_task, within
from signals.core.clock import SYSTEM_CLOCK, Clock, SystemClock
from signals.core.errors import InvalidInput, LedgerUnavailable, RunnerUnavailable
from signals.core.metrics import server_metrics
from signals.core.settings import Settings
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import iso_z, parse_timeframe, utc_now
from signals.features.labels import round_trip_cost
from signals.ledger import outbox
from signals.ledger.outage import unavailable
from signals.ledger.outbox import sync_webhooks
from signals.ledger.records import ms
from signals.ledger.rows import ModeSummary, StreamRow
from signals.ledger.rules import Filters
from signals.ledger.store import Ledger, backend_name, database_url, redact
from signals.ledger.writer import LedgerWriter
from signals.live.push import PushHub
from signals.live.scheduler import RefreshReport, Scheduler
from signals.serving.catalog import ModelCatalog
from signals.serving.engine import SignalEngine, runner_call
from signals.serving.market import MarketData
from signals.track_record import audit, versions
from signals.track_record.equity import EquityMode, equity_curve
from signals.track_record.probation import RULE as PROBATION_RULE
from signals.track_record.probation import refresh_standings
from signals.track_record.scorecard import DEFAULT_SCORECARD_MODE, scorecard
from signals.track_record.versions import current_catalog, reload_catalog

logger = logging.getLogger(__name__)

WARM_UP_BACKOFF_S = 0.5  # first pause when the runner does not answer the warm-up yet; doubled up to the next
WARM_UP_BACKOFF_MAX_S = 5.0
WARM_UP_MAX_S = 120.0  # then the server turns ready anyway: requests answer 503 until the runner answers

RunnerProbe = tuple[str, Callable[[], Awaitable[Any]]]  # (family shown in errors, the runner's status call)


class Operations:
    """The composition root of an API worker: it builds the engine and owns it, the catalog the engine serves (one
    `reload`), the ledger and its writer, and the background loops, from start to stop."""

    def __init__(
        self,
        settings: Settings,
        engine: SignalEngine,
        ledger: Ledger | None,
        writer: LedgerWriter | None,
        ledger_error: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.clock = clock  # the engine, the candle-close loop, the push stream and the alert sender read this one
        self.engine = engine
        self.ledger = ledger
        self.writer = writer
        self.ledger_error = ledger_error
        self.ledger_backend = backend_name(database_url(settings))
        self.scheduler: Scheduler | None = None
        self.warmed = False  # every served pair computed once since start (`warm_up`): /readyz waits for it
        self._warming: asyncio.Task[None] | None = None
        self.hub: PushHub | None = None
        self.alerts: AlertDispatcher | None = None
        self.bot: Any = None
        if ledger is not None and writer is not None:
            self.hub = PushHub(
                ledger,
                poll_s=settings.stream_poll_s,
                clock=clock.now,
                universe=settings.universe,
                timeframes=settings.timeframes,
                max_subscribers=settings.stream_max_subscribers,
                max_per_key=settings.stream_max_per_key,
            )
            writer.on_recorded(self.hub.poke)  # the worker that records wakes its own subscribers at once
            if settings.alerts:
                self.alerts = AlertDispatcher.from_settings(
                    ledger.engine, settings, health=self.health_components, clock=clock
                )
                writer.on_recorded(self.alerts.poke)

    @classmethod
    def start(
        cls, settings: Settings, cnn_lstm: CnnLstmPort, ppo: PpoPort, families: FamiliesPort | None = None
    ) -> Operations:
        """Open and migrate the ledger (or record why not), start its writer, build the catalog of served versions,
        the market data and the engine over the two runner ports."""
        opened = Ledger.from_settings(settings)
        ledger: Ledger | None = opened
        error = None
        try:
            opened.migrate()
        except Exception as failure:  # the server serves without a track record rather than not at all
            error = f"{type(failure).__name__}: {' '.join(str(failure).split())[:300]}"
            logger.error("ledger %s unavailable, signals will not be recorded: %s", redact(opened.url), error)
            ledger = None
        writer = (
            None
            if ledger is None
            else LedgerWriter(
                ledger,
                server_metrics(),
                capacity=settings.ledger_queue,
                retry_capacity=settings.ledger_retry_queue,
                retry_s=settings.ledger_retry_s,
            )
        )
        clock = SystemClock(settings.clock_offset_s)
        market = MarketData(settings, clock=clock.now)
        market.store.remove_orphans()  # what a writer killed mid-write left behind (the server's start only)
        engine = SignalEngine.from_settings(
            settings,
            cnn_lstm,
            ppo,
            catalog=current_catalog(settings, ledger, clock.now),
            market=market,
            writer=writer,
            clock=clock.now,
            families=families,
        )
        return cls(settings, engine, ledger, writer, error, clock)

    @property
    def catalog(self) -> ModelCatalog:
        """The catalog served now: the engine's, replaced only by `reload`."""
        return self.engine.catalog

    @property
    def market(self) -> MarketData:
        return self.engine.market

    def _allowed_webhooks(self) -> list[dict[str, Any]]:
        """The configured webhooks the target policy allows; each refused one named in one WARNING line."""
        policy = TargetPolicy(self.settings.webhook_allow_http, self.settings.webhook_allow_private)
        allowed = []
        for hook in self.settings.webhooks:
            try:
                policy.check(str(hook.get("url", "")))
            except InvalidInput as error:
                logger.warning("SIGNALS_WEBHOOKS entry %r skipped: %s", redact_url(str(hook.get("url", ""))), error)
                continue
            allowed.append(hook)
        return allowed

    def start_background(self, *, first_worker: bool = True) -> None:
        """The push stream's tail, the alert sender, the candle-close loop when enabled, and the Telegram bot when
        a token is set (in one worker only: Telegram allows one poller per bot)."""
        engine = self.engine
        self._read_standings()
        if self.hub is not None:
            self.hub.present = engine.as_of_now
            self.hub.start()
        if self.alerts is not None and self.ledger is not None:
            sync_webhooks(self.ledger.engine, self._allowed_webhooks())
            self.alerts.start()
        self._warming = asyncio.get_running_loop().create_task(self._warm_then_schedule(), name="signals-warm-up")
        token = self.settings.telegram_token
        if token is not None and first_worker and self.ledger is not None:
            from signals.alerts.telegram import EngineSource, SignalsBot

            self.bot = SignalsBot(
                token.get_secret_value(),
                EngineSource(engine),
                self.ledger.engine,
                api_url=self.settings.telegram_api_url,
                symbol=self.settings.telegram_symbol,
            )
            asyncio.get_running_loop().create_task(self._start_bot(), name="signals-telegram")

    async def _start_bot(self) -> None:
        try:
            await self.bot.start()
        except Exception as error:  # a bad token or an unreachable Bot API must not stop the server
            logger.error("the Telegram bot did not start: %s", error)
            self.bot = None

    @property
    def ready(self) -> bool:
        """Ready for traffic: a verified model to serve, and every served pair computed once (`warm_up`)."""
        return self.catalog.ready and self.warmed

    async def _warm_then_schedule(self) -> None:
        try:
            await self.warm_up()
        except Exception:  # a failed warm-up leaves the pairs to the requests; the server must still turn ready
            logger.exception("warm-up failed")
        self.warmed = True
        self.start_scheduler()  # its catch-up at start finds this worker's cache warm

    async def warm_up(self) -> dict[str, int]:
        """Compute every served (symbol, timeframe) once, cached and recorded, so that a request after start is a
        cache hit (no request meets a cold timeframe: on a loaded box a cold 4h /batch took longer than the 10 s
        request timeout). A timeframe whose runner does not answer yet (it may still be starting) is asked again,
        with backoff, for up to `WARM_UP_MAX_S`; pairs that fail otherwise (no candles, exchange down) are left to
        the requests, which answer their error. Returns the pairs cached per timeframe."""
        engine, clock = self.engine, self.clock
        waited = 0.0
        cached: dict[str, int] = {}
        if not self.settings.warm_up:
            return cached
        for timeframe in sorted({e.timeframe for e in self.catalog.entries if e.timeframe is not None}):
            pairs = [(symbol, timeframe) for symbol in self.catalog.cnn_symbols(timeframe)]
            if not pairs:
                continue
            for attempt in itertools.count():
                try:
                    answers = await engine.predict_many(pairs, trigger="start")
                except RunnerUnavailable as error:
                    pause = min(WARM_UP_BACKOFF_S * 2**attempt, WARM_UP_BACKOFF_MAX_S)
                    if waited + pause > WARM_UP_MAX_S:
                        logger.warning("warm-up of %s given up: %s", timeframe, error)
                        break
                    await clock.sleep(pause)
                    waited += pause
                    continue
                cached[timeframe] = sum(isinstance(a, schemas.Signal) for a in answers)
                break
        logger.info("warm-up: %s signals cached", cached or "no")
        return cached

    def _read_standings(self) -> None:
        """The probation standings as the ledger has them at start (no events: the scheduler's refreshes write
        those), so that the first requests, before the first candle close, are gated by the model's record."""
        if self.ledger is None or self.settings.probation_calls <= 0:
            return
        engine = self.engine
        try:
            engine.standings = refresh_standings(
                self.ledger, engine.catalog.entries, needed=self.settings.probation_calls, now_ms=ms(utc_now())
            )
        except Exception as error:  # without them every positive model is on probation: never a pass
            logger.warning("probation standings unavailable: %s", error)

    def health_components(self) -> dict[str, tuple[bool, str | None]]:
        """What the alert watch compares: the exchange's circuit (live mode) and each served model."""
        components: dict[str, tuple[bool, str | None]] = {}
        market = self.market
        if market.live:
            components["exchange"] = (market.breaker.state != "closed", market.breaker.last_error)
        for entry in self.catalog.entries:
            components[f"model {entry.name}"] = (entry.error is not None, entry.error)
        return components

    def _new_scheduler(self, ledger: Ledger, writer: LedgerWriter) -> Scheduler:
        return Scheduler(self.engine, ledger, writer, self.settings, clock=self.clock, reload=self.reload)

    def start_scheduler(self) -> None:
        if self.settings.scheduler and self.ledger is not None and self.writer is not None:
            self.scheduler = self._new_scheduler(self.ledger, self.writer)
            self.scheduler.start()

    async def stop(self) -> None:
        """Stop every background part, each within its own bound (a shutdown never hangs on one of them), then
        close the ledger and the engine's market data."""
        writer = self.writer
        parts: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        warming = self._warming

        async def stop_warming() -> None:
            await stop_task(warming)

        parts.append(("the warm-up", stop_warming))
        if self.bot is not None:
            parts.append(("the Telegram bot", self.bot.stop))
        if self.alerts is not None:
            parts.append(("the alert sender", self.alerts.stop))
        if self.hub is not None:
            parts.append(("the push stream", self.hub.stop))
        if self.scheduler is not None:
            parts.append(("the scheduler", self.scheduler.stop))
        if writer is not None:
            parts.append(("the ledger writer", lambda: asyncio.to_thread(writer.close)))
        parts.append(("the market data", self.engine.aclose))
        for name, stop in parts:
            try:
                await within(stop(), 2 * STOP_TIMEOUT_S)
            except Exception as error:  # stop the rest regardless
                logger.error("stopping %s: %s: %s", name, type(error).__name__, error)
        if self.ledger is not None:
            self.ledger.close()

    async def refresh_now(self, timeframe: str) -> schemas.RefreshResponse:
        """An operator's refresh of one timeframe on this worker (`Scheduler.refresh_now`), pushed: what it wrote
        reaches the stream as every record does; what was recorded before is pushed again from its record."""
        ledger, writer = self.require_ledger(), self.writer
        assert writer is not None  # a ledger always comes with its writer
        scheduler = self.scheduler or self._new_scheduler(ledger, writer)
        report: RefreshReport = await scheduler.refresh_now(timeframe)
        again = 0
        if self.hub is not None and report.keys:
            rows = await asyncio.to_thread(_recorded_before, ledger, report.keys, report.started_ms)
            again = self.hub.republish(rows)
        return schemas.RefreshResponse.model_validate(report.as_dict() | {"pushed_again": again})

    def require_ledger(self) -> Ledger:
        if self.ledger is None:
            reason = without_details(self.ledger_error)
            raise LedgerUnavailable(f"the ledger is unavailable ({reason}); signals are not recorded")
        return self.ledger

    def reload(self) -> schemas.ReloadResponse:
        """Rebuild the catalog from the store and the ledger's version state; say what changed."""
        return schemas.ReloadResponse.model_validate(
            reload_catalog(self.engine, self.settings, self.ledger, self.clock.now)
        )

    def promote(self, model: str, version: str | None, *, force: bool) -> schemas.VersionDecision:
        """Serve a candidate version by the promotion rule (or forced), then serve it in this worker at once."""
        decision = versions.promote(self.require_ledger(), self.settings, model, version, force=force)
        self.reload()
        return schemas.VersionDecision.model_validate(decision.as_dict())

    def rollback(self, model: str, version: str | None, *, force: bool) -> schemas.VersionDecision:
        """Serve an earlier version again (`versions.rollback`), in this worker at once."""
        decision = versions.rollback(self.require_ledger(), model, version, force=force)
        self.reload()
        return schemas.VersionDecision.model_validate(decision.as_dict())

    def history(self, request: schemas.HistoryRequest) -> schemas.HistoryResponse:
        return audit.history(self.require_ledger(), request)

    def equity(
        self, *, timeframe: str | None, symbol: str | None, calls: EquityMode, mode: schemas.Mode | None
    ) -> schemas.EquityResponse:
        """The equity curve of the served (or paper) calls beside buy-and-hold (`track_record/equity.py`)."""
        filters = {k: v for k, v in {"timeframe": timeframe, "symbol": symbol, "mode": mode}.items() if v is not None}
        rows = self.require_ledger().resolved(
            timeframe=None if timeframe is None else parse_timeframe(timeframe),
            symbol=None if symbol is None else normalize_symbol(symbol),
            modes=[mode or DEFAULT_SCORECARD_MODE],
        )
        cost = round_trip_cost(self.settings.fee, self.settings.slippage)
        return schemas.EquityResponse.model_validate(equity_curve(rows, cost=cost, mode=calls, filters=filters))

    def alert_subscriptions(self) -> list[schemas.AlertSubscription]:
        """The active alert subscriptions (what `signals alerts list` shows), secrets left out."""
        return [_subscription(row) for row in outbox.subscriptions(self.require_ledger().engine)]

    def add_alert_subscription(self, request: schemas.AlertSubscriptionRequest) -> schemas.AlertSubscription:
        """Subscribe a webhook to actionable signals, as `signals alerts add URL` does; the answer carries the new
        HMAC key once."""
        engine = self.require_ledger().engine
        url = TargetPolicy(self.settings.webhook_allow_http, self.settings.webhook_allow_private).check(request.url)
        filters = Filters(
            symbols=[normalize_symbol(s) for s in request.symbols or ()],
            timeframes=[parse_timeframe(t) for t in request.timeframes or ()],
        )
        key = secrets.token_urlsafe(32)
        name = urlparse(url).netloc or url
        added = outbox.add_subscription(
            engine, name=name, kind="webhook", target=url, secret=key, filters=filters.model_dump(),
            now_ms=int(utc_now().timestamp() * 1000),
        )  # fmt: skip
        row = next(r for r in outbox.subscriptions(engine) if r["id"] == added)
        return _subscription(row).model_copy(update={"secret": key})

    async def replay(self, request: schemas.ReplayRequest) -> schemas.ReplayResponse:
        return await audit.replay(self.engine, self.require_ledger(), request)

    def scorecard(self, request: schemas.ScorecardRequest) -> schemas.Scorecard:
        return schemas.Scorecard.model_validate(scorecard_of(self.require_ledger(), self.settings, request))

    def model_infos(self) -> list[schemas.ModelInfo]:
        """Every served model with a `live` block per version: what its recorded signals did so far."""
        engine = self.engine
        infos = engine.models()
        if self.ledger is None:
            return infos
        try:
            live = self.ledger.live_summary()
        except Exception as error:  # the figures are extra: without them /models still answers
            logger.warning("live summary unavailable: %s", error)
            return infos
        for info in infos:
            modes = live.get((info.name, info.version), {})
            info.metrics["live"] = _live_block(modes.get("live"))
            info.metrics["by_mode"] = {mode: _live_block(block) for mode, block in sorted(modes.items())}
            held = engine.standings.get((info.name, info.version))
            if held is not None:
                info.metrics["probation"] = {**held.as_dict(), "rule": PROBATION_RULE}
            shadow = next((e for e in engine.catalog.shadows if e.name == info.name), None)
            if shadow is not None:
                shadow_modes = live.get((shadow.name, shadow.version), {})
                info.metrics["shadow"] = {
                    "version": shadow.version,
                    "live": _live_block(shadow_modes.get("shadow")),
                }
        return infos

    async def status_with_runners(self, runners: Mapping[str, RunnerProbe]) -> schemas.StatusResponse:
        """`status()` and each runner's own status, asked of all runners at once (a dead runner costs one timeout,
        not one each); a runner that does not answer is named with the reason, which is not itself a failure."""
        timeout = self.settings.runner_timeout_s

        async def ask(family: str, probe: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
            try:
                answer = await runner_call(family, probe, timeout)
            except RunnerUnavailable as error:
                return {"error": str(error)}
            return answer.model_dump(mode="json") if isinstance(answer, BaseModel) else dict(answer)

        answers = await asyncio.gather(*(ask(family, probe) for family, probe in runners.values()))
        return schemas.StatusResponse.model_validate(dict(zip(runners, answers, strict=True)) | self.status())

    def status(self) -> dict[str, Any]:
        """The health of the track record: ledger, writer, scheduler, and the served and shadow versions."""
        engine = self.engine
        # the database's kind, never its file or host: `/status` is read by anyone allowed to call the server
        ledger: dict[str, Any] = {"backend": self.ledger_backend, "error": without_details(self.ledger_error)}
        if self.ledger is not None:
            try:
                ledger["records"] = self.ledger.counts()
                ledger["status"] = "degraded" if self.writer and self.writer.status.degraded else "ok"
            except Exception as error:
                ledger["status"], ledger["error"] = "unavailable", str(unavailable(error))
        else:
            ledger["status"] = "unavailable"
        if self.writer is not None:
            ledger["writer"] = self.writer.status.as_wire()
        return {
            "ledger": ledger,
            "scheduler": None if self.scheduler is None else self.scheduler.status(),
            "push": None if self.hub is None else self.hub.status(),
            "alerts": None if self.alerts is None else self.alerts.status(),
            "market": engine.market.status(),
            "versions": {
                "served": {e.name: e.version for e in engine.catalog.entries},
                "shadow": {e.name: e.version for e in engine.catalog.shadows},
                "notes": {e.name: e.note for e in engine.catalog.entries if e.note},
            },
            "cache": server_metrics().snapshot(),
            "time": iso_z(utc_now()),
        }


def _recorded_before(ledger: Ledger, keys: list[tuple[str, str, str, int]], started_ms: int) -> list[StreamRow]:
    """The published records of `keys` written before `started_ms` (the tail publishes those written since)."""
    rows = (ledger.published(kind, version, symbol, candle_ms) for kind, version, symbol, candle_ms in keys)
    return [row for row in rows if row is not None and int(row["recorded_ms"]) < started_ms]


def _live_block(block: ModeSummary | None) -> dict[str, Any]:
    """One mode's figures of a model version (`Ledger.live_summary`); `paper_calls` are calls probation withheld."""
    if not block:
        return {"recorded": 0, "resolved": 0}
    resolved, calls, paper = int(block["resolved"] or 0), int(block["calls"] or 0), int(block["paper_calls"] or 0)
    last = block.get("last_candle_ms")
    return {
        "mode": block["mode"],
        "recorded": int(block["recorded"]),
        "resolved": resolved,
        "hit_rate": (int(block["hits"] or 0) / resolved) if resolved else None,
        "actionable_calls": calls,
        "mean_call_return": (float(block["call_return_sum"] or 0.0) / calls) if calls else None,
        "paper_calls": paper,
        "mean_paper_return": (float(block["paper_return_sum"] or 0.0) / paper) if paper else None,
        "last_candle": iso_z(pd.Timestamp(int(last), unit="ms", tz="UTC")) if last else None,
    }


def _subscription(row: Mapping[str, Any]) -> schemas.AlertSubscription:
    return schemas.AlertSubscription(
        id=int(row["id"]), name=str(row["name"]), kind=str(row["kind"]), target=redact_url(str(row["target"])),
        filters=dict(row["filters"] or {}), created_at=iso_z(pd.Timestamp(int(row["created_ms"]), unit="ms", tz="UTC")),
    )  # fmt: skip


def scorecard_of(ledger: Ledger, settings: Settings, request: schemas.ScorecardRequest) -> dict[str, Any]:
    """The scorecard of the resolved records matching the request's filters, of one mode (`live` by default: what
    the server served as it happened; a backfill or shadow record of the same candle would count it twice)."""
    filters = request.model_dump(mode="json", exclude_none=True)
    modes = [request.mode or DEFAULT_SCORECARD_MODE]
    rows = ledger.resolved(
        timeframe=None if request.timeframe is None else parse_timeframe(request.timeframe),
        symbol=None if request.symbol is None else normalize_symbol(request.symbol),
        model_version=request.model_version,
        modes=modes,
        since_ms=None if request.since is None else ms(request.since),
    )
    return scorecard(rows, cost=round_trip_cost(settings.fee, settings.slippage), filters=filters)


def without_details(error: str | None) -> str | None:
    """An error for callers: its kind, not its text (which may name the database's file, host and port); the
    server's log has the whole of it."""
    if error is None:
        return None
    return f"{error.split(':', 1)[0]} (details in the server log)"
