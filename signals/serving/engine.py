"""SignalEngine: candles -> features -> runner -> skill gate -> Signal / Action, with a signal cache and the ledger.

`service.py` is only the HTTP face of this class; the engine is plain async Python that receives the two
runner ports (`wire.py`), so it runs the same behind `bentoml serve`, in-process tests and benchmarks. Every
signal it computes (not those it serves from its cache) and every action is recorded in the ledger once, through
a writer that never blocks or fails the request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import aiohttp
import numpy as np
import pandas as pd

from signals.contract import schemas
from signals.contract.wire import ActionRow, CnnLstmPort, FamiliesPort, ObservationRequest, PpoPort, WindowRequest
from signals.core.background import within
from signals.core.errors import (
    ExchangeUnavailable,
    InvalidInput,
    ModelIntegrityError,
    ModelNotFound,
    RunnerUnavailable,
    SignalsError,
    StillComputing,
)
from signals.core.logs import request_id
from signals.core.metrics import server_metrics
from signals.core.settings import Settings
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import MODEL_TIMEFRAMES, horizon_end, next_close, parse_timeframe, utc_now
from signals.core.vocab import ACTION_NAMES, CLASS_NAMES
from signals.features.ppo import LONG_POSITION
from signals.features.ppo import observation as observation_with_position
from signals.ledger.records import action_row, signal_row
from signals.ledger.rows import SignalRow
from signals.ledger.writer import LedgerWriter
from signals.models.evidence import PPO_RULE_TEXT, RULE_TEXT
from signals.models.families import CNN_LSTM, PPO, family_of_store_name, plugin_families
from signals.serving.catalog import ModelCatalog, ModelEntry
from signals.serving.explain import explain
from signals.serving.gate import STALE_REASON, Standing, action_gate, consensus, plan_requires, signal_gate
from signals.serving.inputs import ModelInputs
from signals.serving.market import MarketData, MarketSnapshot
from signals.serving.risk import risk_levels

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A call carrying this many windows is a batch already: it goes to the runner directly, not through its queue.
DIRECT_CALL_MIN_WINDOWS = 8


@dataclass(frozen=True)
class Pending:
    """A (symbol, timeframe) whose signal is not cached: its model, candles and window, ready for the runner."""

    entry: ModelEntry
    snapshot: MarketSnapshot
    window: np.ndarray

    def request(self) -> WindowRequest:
        return WindowRequest(model=self.entry.tag, window=self.window)


@dataclass(eq=False)
class Cached:
    """A cached signal, the time it turns stale (worked out once, not on every hit), its stale form and the JSON of
    each form once asked for (`SignalEngine.cached_json`: a hit answered from bytes serialises nothing)."""

    signal: schemas.Signal
    stale_after_ns: int
    _stale: schemas.Signal | None = None
    _json: dict[bool, bytes] = field(default_factory=dict)

    def now(self, now_ns: int) -> tuple[bool, schemas.Signal]:
        """(stale, the signal as it reads at `now_ns`)."""
        if now_ns <= self.stale_after_ns:
            return False, self.signal
        if self._stale is None:
            self._stale = aged(self.signal)
        return True, self._stale

    def json(self, now_ns: int) -> bytes:
        stale, signal = self.now(now_ns)
        payload = self._json.get(stale)
        if payload is None:
            payload = self._json[stale] = wire_json(signal)
        return payload


def aged(signal: schemas.Signal) -> schemas.Signal:
    """A signal once a newer candle should have closed: `stale`, and no trade plan (the gate's last rule)."""
    if signal.actionable:
        no_plan = {"actionable": False, "levels": None, "plan_requires": None}
        return signal.model_copy(update={"stale": True, **no_plan, "abstain_reason": STALE_REASON})
    return signal.model_copy(update={"stale": True})


def wire_json(signal: schemas.Signal) -> bytes:
    """The JSON of a signal exactly as BentoML's route writes it (`JSONSerde.serialize_model`: `model_dump_json`,
    UTF-8); a test holds the fast lane's answer byte-identical to the route's."""
    return signal.model_dump_json().encode("utf-8")


class SignalEngine:
    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        cnn_lstm: CnnLstmPort,
        ppo: PpoPort,
        *,
        catalog: ModelCatalog | None = None,
        market: MarketData | None = None,
        writer: LedgerWriter | None = None,
        clock: Callable[[], pd.Timestamp] = utc_now,
        families: FamiliesPort | None = None,
    ) -> SignalEngine:
        """The engine of the configured universe and candle source over the runner ports; the catalog defaults to
        the newest verified versions in the store (the server passes the one its ledger's version state chose)."""
        return cls(
            settings,
            ModelCatalog.from_store(settings) if catalog is None else catalog,
            MarketData(settings) if market is None else market,
            cnn_lstm,
            ppo,
            clock=clock,
            writer=writer,
            families=families,
        )

    @classmethod
    def offline(
        cls,
        settings: Settings,
        catalog: ModelCatalog | None = None,
        *,
        cnn_lstm: CnnLstmPort | None = None,
        ppo: PpoPort | None = None,
        writer: LedgerWriter | None = None,
        clock: Callable[[], pd.Timestamp] = utc_now,
        families: FamiliesPort | None = None,
    ) -> SignalEngine:
        """An engine without runner services (the CLI, backfill, benches, tests): the models run in this process
        (`models.local`) unless ports are given (a test double, or local runners shared between engines)."""
        if cnn_lstm is None or ppo is None:
            from signals.models.local import LocalCnnLstm, LocalPpo  # torch: loaded only where it is used

            cnn_lstm = LocalCnnLstm(settings) if cnn_lstm is None else cnn_lstm
            ppo = LocalPpo(settings) if ppo is None else ppo
        if families is None and plugin_families():  # installed families run in this process too
            from signals.models.model_set import LocalFamilies

            families = LocalFamilies(settings)
        return cls.from_settings(
            settings, cnn_lstm, ppo, catalog=catalog, writer=writer, clock=clock, families=families
        )

    def __init__(
        self,
        settings: Settings,
        catalog: ModelCatalog,
        market: MarketData,
        cnn_lstm: CnnLstmPort,
        ppo: PpoPort,
        *,
        clock: Callable[[], pd.Timestamp] = utc_now,
        writer: LedgerWriter | None = None,
        families: FamiliesPort | None = None,
        budget_sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """`budget_sleep`: how a request's budget elapses (default: the event loop's timer; a test passes a wait it
        ends itself)."""
        self.settings = settings
        self.catalog = catalog
        self.market = market
        self.cnn_lstm = cnn_lstm
        self.ppo = ppo
        self.families = families  # the installed families' runner; None: no such family is served
        self.inputs = ModelInputs(market)  # each model's window (with the market context where it reads it)
        computed: dict[str, list[str]] = {}  # served and shadow: the refresh computes both
        for entry in (*catalog.entries, *catalog.shadows):
            if entry.timeframe:
                computed.setdefault(entry.family, []).append(entry.timeframe)
        self.inputs.expect(computed)
        self.clock = clock
        self.writer = writer
        self.metrics = server_metrics()
        self._universe = frozenset(normalize_symbol(s) for s in settings.universe)
        self._cache: OrderedDict[tuple[str, str, str, pd.Timestamp], Cached] = OrderedDict()
        # (model name, version) -> its probation standing; the live loop refreshes it at each candle close
        # (`track_record.probation`): this floor only reads it.
        self.standings: dict[tuple[str, str], Standing] = {}
        self._budget_sleep = budget_sleep
        self._runner_calls = 0  # CNN-LSTM runner calls in flight from this engine (the batching path's choice)
        self._background: set[asyncio.Future[Any]] = set()  # answers that outlived their request's budget

    # --- CNN-LSTM signals -------------------------------------------------------------------------------
    async def predict(self, symbol: str, timeframe: str) -> schemas.Signal:
        """The signal of one pair: from the cache (no task, no timer: the warm path), else computed within the
        request budget (`within_budget`; the candles and features of a live source have their own budget)."""
        prepared = await self._prepare(symbol, timeframe)  # one pair: no gather, errors raise directly
        if isinstance(prepared, schemas.Signal):
            return prepared
        return await self.within_budget(self._computed(prepared))

    async def _computed(self, prepared: Pending) -> schemas.Signal:
        withheld = self.withheld(prepared.entry)
        (computed,) = await self.compute([prepared], withheld=[withheld])
        result = self._served(prepared, computed, withheld=withheld)
        if isinstance(result, SignalsError):
            raise result
        return result

    async def predict_many(
        self, pairs: Sequence[tuple[str, str]], *, trigger: str = "request"
    ) -> list[schemas.Signal | SignalsError]:
        """Signals for many (symbol, timeframe) pairs; one runner call carries every uncached window.

        Per-pair failures come back as the error in that pair's place, so a batch answers what it can.
        """
        prepared = await asyncio.gather(*(self._prepare(s, tf) for s, tf in pairs), return_exceptions=True)
        results: list[schemas.Signal | SignalsError | None] = []
        pending: list[tuple[int, Pending]] = []
        for i, item in enumerate(prepared):
            if isinstance(item, SignalsError | schemas.Signal):
                results.append(item)
            elif isinstance(item, Pending):
                results.append(None)
                pending.append((i, item))
            else:
                raise item  # an unexpected exception is a bug: let the framework answer 500
        if pending:
            withheld = [self.withheld(item.entry) for _, item in pending]
            computed = await self.compute([item for _, item in pending], withheld=withheld)
            for (i, item), signal, reason in zip(pending, computed, withheld, strict=True):
                results[i] = self._served(item, signal, withheld=reason, trigger=trigger)
        return [r for r in results if r is not None]

    async def compute(
        self,
        items: Sequence[Pending],
        *,
        withheld: Sequence[str | None],
        at: Sequence[pd.Timestamp] | None = None,
    ) -> list[schemas.Signal | None]:
        """The one way a signal is computed (requests, the candle-close loop, shadow, replay, backfill): the items'
        windows through the runner in one call, then the gate and the risk levels. None in an item's place when the
        runner has not loaded its model. Nothing is cached or recorded here: each caller decides.

        One per item: `withheld`, the probation's reason to serve no plan (`withheld()` for a served signal, None
        where probation does not apply: shadow, backfill), and `at`, the prediction times (default: now; a
        backfill computes as if at each close)."""
        for name, values in (("probation reasons", withheld), ("prediction times", at)):
            if values is not None and len(values) != len(items):
                raise ValueError(f"{len(values)} {name} for {len(items)} items")
        if not items:
            return []
        rows = await self._forward(items)
        signals: list[schemas.Signal | None] = []
        for i, (item, row) in enumerate(zip(items, rows, strict=True)):
            probabilities = probabilities_of(row)
            when = None if at is None else at[i]
            signal = None
            if probabilities is not None:
                signal = self._build_signal(item, probabilities, withheld=withheld[i], at=when)
            signals.append(signal)
        return signals

    async def _forward(self, items: Sequence[Pending]) -> list[list[float]]:
        """One runner call per runner for the windows (the CNN-LSTM's, the installed families'), down the path
        `batching_path` picks. A family without a runner answers NaN rows."""
        cnn = CNN_LSTM.name
        others = [i for i, item in enumerate(items) if item.entry.family != cnn]
        if not others:  # the common case: one call, as before the families existed
            return await self._call("CNN-LSTM", self.cnn_lstm, [item.request() for item in items])
        rows: list[list[float]] = [[math.nan] * 3 for _ in items]
        mine = [i for i, item in enumerate(items) if item.entry.family == cnn]
        for name, port, positions in (("CNN-LSTM", self.cnn_lstm, mine), ("families", self.families, others)):
            if positions and port is not None:
                answers = await self._call(name, port, [items[i].request() for i in positions])
                for position, answer in zip(positions, answers, strict=True):
                    rows[position] = answer
        return rows

    async def _call(self, name: str, port: CnnLstmPort, requests: list[WindowRequest]) -> list[list[float]]:
        call = port.predict if self.batching_path(len(requests)) == "queue" else port.predict_many
        self._runner_calls += 1
        try:
            return await runner_call(name, lambda: call(requests), self.settings.runner_timeout_s)
        finally:
            self._runner_calls -= 1

    def batching_path(self, windows: int) -> str:
        """`queue` (the runner's adaptive batching) or `direct` (its method without a queue) for a call of `windows`.

        A call that is a batch already goes direct. So does a lone call (no other of this engine's calls at the
        runner): alone in the queue it would only wait for the dispatcher's tick and learned wait, which on a fast
        hop costs more than batching saves (BENCHMARKS.md, "Batching that pays"). With batching off
        (`SIGNALS_MAX_BATCH_SIZE=1`) every call takes the runner's one-at-a-time method, as before."""
        if windows >= DIRECT_CALL_MIN_WINDOWS:
            return "direct"
        if self.settings.max_batch_size <= 1:
            return "queue"  # the runner's `predict` is then not batchable: one call per request, as before
        return "direct" if self._runner_calls == 0 else "queue"

    async def within_budget(self, work: Coroutine[Any, Any, T]) -> T:
        """`work`'s answer if it comes within `SIGNALS_REQUEST_BUDGET_S`; else a 503 with Retry-After while the
        work goes on in the background (its signals are cached and recorded when they come), so that no request
        meets the framework's own timeout (a bare 504 after 10 s)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)  # held until done: a request that gave up (or was cancelled) leaves it running
        task.add_done_callback(self._background.discard)
        budget = self.settings.request_budget_s
        try:
            if self._budget_sleep is None:
                await asyncio.wait({task}, timeout=budget)
            else:
                timer = asyncio.ensure_future(self._budget_sleep(budget))
                try:
                    await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    timer.cancel()
        except asyncio.CancelledError:  # the caller left: the work goes on, its signals are cached
            task.add_done_callback(_log_late_failure)
            raise
        if task.done():
            return task.result()
        task.add_done_callback(_log_late_failure)
        self.metrics.over_budget.inc()
        raise StillComputing(
            f"the signal is still being computed (not within the request budget of {budget:g} s); it is served "
            f"from the cache once done: retry in {BUDGET_RETRY_AFTER_S} s",
            retry_after_s=BUDGET_RETRY_AFTER_S,
        )

    async def read_candles(self, timeframe: str) -> int:
        """Read every candle series the timeframe's models (served and shadow) read at its current candle, all at
        once: the refresh's first step, so that what follows computes from memory. The snapshots are cached by the
        market layer; a failure is left for the computing step to meet (and report per pair, or retry). Returns the
        series read without error."""
        wanted: set[tuple[str, str]] = set()
        for entry in (*self.catalog.entries, *self.catalog.shadows):
            if entry.timeframe == timeframe and entry.symbol and entry.family != PPO.name:
                wanted |= self.inputs.files_read(entry.family, entry.card, entry.symbol, timeframe)
        read = await asyncio.gather(*(self.market.snapshot(*pair) for pair in sorted(wanted)), return_exceptions=True)
        failed = [error for error in read if isinstance(error, BaseException)]
        for error in failed:
            if not isinstance(error, SignalsError):
                raise error  # a bug, not a market's failure
        return len(read) - len(failed)

    async def shadow(self, timeframe: str) -> list[schemas.Signal]:
        """Signals of the candidate (shadow) versions of a timeframe: recorded with mode `shadow`, never served."""
        items = []
        for entry in self.catalog.shadow_cnn(timeframe):
            try:
                snapshot = await self.market.snapshot(entry.symbol or "", timeframe)
                items.append(Pending(entry, snapshot, await self.window(entry, snapshot)))
            except SignalsError as error:
                logger.warning("shadow %s skipped: %s", entry.tag, error)
        signals = []
        computed = await self.compute(items, withheld=[None] * len(items))  # never served: no probation
        for item, signal in zip(items, computed, strict=True):
            if signal is None:
                continue
            self._record(item, signal, mode="shadow", trigger="scheduler")
            signals.append(signal)
        return signals

    def served_symbol(self, raw_symbol: str) -> str:
        """The symbol in ccxt form, if the server serves it (404 otherwise: in live mode an arbitrary symbol would
        make the server fetch and store any market the exchange lists)."""
        symbol = normalize_symbol(raw_symbol)
        if symbol not in self._universe:
            shown = ", ".join(self.settings.universe[:8]) + (", ..." if len(self.settings.universe) > 8 else "")
            raise ModelNotFound(
                f"{symbol} is not in the served universe ({len(self.settings.universe)} pairs: {shown}; "
                "SIGNALS_UNIVERSE sets it)"
            )
        return symbol

    async def _prepare(self, raw_symbol: str, raw_timeframe: str) -> Pending | schemas.Signal:
        entry, snapshot, cached = await self._lookup(raw_symbol, raw_timeframe)
        self.metrics.lookup(cached is not None)
        if cached is not None:
            return cached.now(self.clock().value)[1]
        return Pending(entry, snapshot, await self.window(entry, snapshot))

    async def cached_json(self, raw_symbol: str, raw_timeframe: str) -> bytes | None:
        """The JSON `/predict` answers for a pair whose signal is cached (made once per cached signal and form), or
        None when it is not cached: the API's fast lane (`signals.api.fastlane`) answers a hit with these bytes.
        A hit is counted here; a miss (or an error) is counted by the route the request goes on to."""
        _, _, cached = await self._lookup(raw_symbol, raw_timeframe)
        if cached is None:
            return None
        self.metrics.lookup(True)
        return cached.json(self.clock().value)

    async def _lookup(self, raw_symbol: str, raw_timeframe: str) -> tuple[ModelEntry, MarketSnapshot, Cached | None]:
        symbol, timeframe = self.served_symbol(raw_symbol), parse_timeframe(raw_timeframe)
        entry = self.catalog.cnn(symbol, timeframe)
        snapshot = await self.market.snapshot(symbol, timeframe)
        key = (entry.tag, symbol, timeframe, snapshot.candle_time)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
        return entry, snapshot, cached

    async def window(self, entry: ModelEntry, snapshot: MarketSnapshot, *, history: bool = False) -> np.ndarray:
        """The entry's model's window at the snapshot's candle (`serving.inputs`; `history`: replay, backfill)."""
        symbol, timeframe = entry.symbol or "", entry.timeframe or ""
        return await self.inputs.window(
            entry.family, entry.metadata, symbol, timeframe, snapshot, history=history, card=entry.card
        )

    def _served(
        self, item: Pending, fresh: schemas.Signal | None, *, withheld: str | None, trigger: str = "request"
    ) -> schemas.Signal | SignalsError:
        """A computed live signal cached, recorded (a paper call when only probation withheld its plan) and aged
        as of now; an error when the runner had no model."""
        if fresh is None:
            runner = "CNN-LSTM" if item.entry.family == CNN_LSTM.name else "families"
            return ModelIntegrityError(f"model {item.entry.name} is not loaded by the {runner} runner; see /models")
        paper = withheld is not None and fresh.abstain_reason == withheld  # only probation stood in its way
        self._remember((item.entry.tag, fresh.symbol, fresh.timeframe, item.snapshot.candle_time), fresh)
        self._record(item, fresh, mode="live", trigger=trigger, paper=paper)
        return self._as_of_now(fresh)

    def withheld(self, entry: ModelEntry) -> str | None:
        """Why the probation of a model with a positive walk-forward edge withholds its plans; None when its live
        calls confirmed the edge, when its edge is not positive (the gate's first rule refuses anyway) or when
        probation is off. A version whose standing is not known yet is on probation: never a pass."""
        needed = self.settings.probation_calls
        if needed <= 0 or entry.edge.get("verdict") != "positive":
            return None
        standing = self.standings.get((entry.name, entry.version))
        if standing is None:
            return f"on probation: its live calls are not counted yet (plans need {needed} resolved calls to confirm)"
        return standing.reason

    def _record(self, item: Pending, signal: schemas.Signal, *, mode: str, trigger: str, paper: bool = False) -> None:
        """Count the signal and queue its ledger row (never blocking: see `LedgerWriter`)."""
        self.metrics.produced.labels(signal.timeframe, mode, trigger).inc()
        if self.writer is None:
            return
        # The row (a JSON dump of the signal, the window's hash) is made in the writer's thread: a cold request
        # only queues it. The time of recording is now, not when the thread gets to it.
        row = functools.partial(self.ledger_row, item, signal, mode, self.clock(), paper=paper, request=request_id())
        self.writer.submit("signal", row)  # request_id(): None in the candle-close loop

    def ledger_row(
        self,
        item: Pending,
        signal: schemas.Signal,
        mode: str,
        recorded: pd.Timestamp | None = None,
        *,
        paper: bool = False,
        request: str | None = None,
    ) -> SignalRow:
        """The signal's ledger row; `request`: the id of the request that computed it (taken where the request
        runs: this may be called in the writer's thread)."""
        return signal_row(
            signal,
            model_name=item.entry.name,
            window=item.window,
            threshold=item.entry.threshold,
            risk=item.snapshot.risk(self._stop_atr),
            mode=mode,
            recorded=self.clock() if recorded is None else recorded,
            paper=paper,
            request_id=request,
        )

    @property
    def _stop_atr(self) -> float:
        return self.settings.stop_atr

    def warm(self, signals: Sequence[schemas.Signal], tags: Mapping[tuple[str, str], str]) -> int:
        """Put signals computed elsewhere (another worker's refresh, read back from the ledger) into the cache."""
        warmed = 0
        for signal in signals:
            tag = tags.get((signal.symbol, signal.timeframe))
            if tag is not None and tag.endswith(f":{signal.model_version}"):
                self._remember((tag, signal.symbol, signal.timeframe, pd.Timestamp(signal.candle_time)), signal)
                warmed += 1
        return warmed

    def _build_signal(
        self, item: Pending, probabilities: np.ndarray, *, withheld: str | None, at: pd.Timestamp | None = None
    ) -> schemas.Signal:
        """The signal as of its candle's close (not stale); `_as_of_now` ages it on every answer. `at` is its
        prediction time (now, unless a backfill computes it as if at the candle's close); `withheld` is the
        probation's reason to serve no plan (`withheld()` for a served signal, None where no probation applies)."""
        entry, snapshot = item.entry, item.snapshot
        symbol, timeframe = entry.symbol or "", entry.timeframe or ""
        direction = CLASS_NAMES[int(np.argmax(probabilities))]
        confidence = float(probabilities.max())
        edge = entry.edge_model
        actionable, reason = signal_gate(
            edge,
            direction,
            confidence,
            entry.threshold,
            stale=False,
            withheld=withheld,
            spot_shorts=self.settings.spot_shorts,
        )
        levels = None
        if actionable:
            levels = risk_levels(
                direction,
                close=snapshot.close,
                atr=snapshot.atr,
                timeframe=timeframe,
                stop_atr=self.settings.stop_atr,
                r_multiples=tuple(self.settings.take_profit_r),
                tick=snapshot.tick,
            )
        candle_time = snapshot.candle_time
        horizon = entry.horizon
        return schemas.Signal(
            symbol=symbol,
            timeframe=timeframe,
            direction=direction,
            confidence=confidence,
            probabilities=schemas.Probabilities(**dict(zip(CLASS_NAMES, map(float, probabilities), strict=True))),
            actionable=actionable,
            abstain_reason=reason,
            edge=edge,
            break_even_hit_rate=entry.break_even_hit_rate,
            model_version=entry.version,
            model_accuracy=entry.accuracy,
            model_accuracy_ci=entry.accuracy_ci,
            baseline_accuracy=entry.baseline_accuracy,
            candle_time=candle_time.to_pydatetime(),
            prediction_time=(self.clock() if at is None else at).to_pydatetime(),
            valid_until=next_close(candle_time, timeframe).to_pydatetime(),
            horizon_bars=horizon,
            expires_at=None if horizon is None else horizon_end(candle_time, timeframe, horizon).to_pydatetime(),
            current_price=snapshot.close,
            levels=None if levels is None else schemas.Levels.model_validate(levels, from_attributes=True),
            plan_requires=plan_requires(direction, levels is not None),
            data_source=snapshot.data_source,
            stale=False,
            family=entry.family,
        )

    def _as_of_now(self, signal: schemas.Signal) -> schemas.Signal:
        """The signal with `stale` as of now; a stale signal serves no trade plan (the gate's last rule)."""
        if not self.is_stale(pd.Timestamp(signal.candle_time), signal.timeframe):
            return signal
        return aged(signal)

    def as_of_now(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A recorded signal or action (its fresh form, as the ledger keeps it) as it reads now: `stale`, and no
        longer actionable once stale (what the push stream sends)."""
        if kind == "signal":
            return self._as_of_now(schemas.Signal.model_validate(payload)).model_dump(mode="json")
        action = schemas.Action.model_validate(payload)
        if not self.is_stale(pd.Timestamp(action.candle_time), action.timeframe):
            return action.model_dump(mode="json")
        update: dict[str, Any] = {"stale": True}
        if action.actionable:
            update |= {"actionable": False, "abstain_reason": STALE_REASON}
        return action.model_copy(update=update).model_dump(mode="json")

    def _remember(self, key: tuple[str, str, str, pd.Timestamp], signal: schemas.Signal) -> None:
        if self.settings.signal_cache_size == 0:
            return
        self._cache[key] = Cached(signal, self._stale_after_ns(pd.Timestamp(signal.candle_time), signal.timeframe))
        while len(self._cache) > self.settings.signal_cache_size:
            self._cache.popitem(last=False)

    def is_stale(self, candle_time: pd.Timestamp, timeframe: str) -> bool:
        """Stale when a newer candle should have closed: now > close of the last candle + tf + grace."""
        return bool(self.clock().value > self._stale_after_ns(candle_time, timeframe))

    def _stale_after_ns(self, candle_time: pd.Timestamp, timeframe: str) -> int:
        return int(next_close(candle_time, timeframe).value) + int(self.settings.stale_grace_s * 1e9)

    async def batch(self, symbols: list[str] | None, timeframe: str) -> schemas.BatchResponse:
        timeframe = parse_timeframe(timeframe)
        if symbols is not None and len(symbols) > len(self.settings.universe):
            raise InvalidInput(
                f"{len(symbols):,} symbols asked; at most {len(self.settings.universe)} (the served universe) per "
                "request, or none for every symbol with a model"
            )
        wanted = list(dict.fromkeys(symbols)) if symbols is not None else self.catalog.cnn_symbols(timeframe)
        pairs = [(s, timeframe) for s in wanted]
        answered, errors = _split_answers(pairs, await self.within_budget(self.predict_many(pairs)))
        raise_if_nothing_answered(answered, errors)
        signals = [signal for _, signal in answered]
        return schemas.BatchResponse(timeframe=timeframe, signals=signals, errors=errors)

    async def summary(self, symbol: str, timeframes: list[str] | None) -> schemas.SummaryResponse:
        symbol = self.served_symbol(symbol)
        wanted = list(dict.fromkeys(parse_timeframe(tf) for tf in (timeframes or MODEL_TIMEFRAMES)))
        pairs = [(symbol, tf) for tf in wanted]
        answered, errors = _split_answers(pairs, await self.within_budget(self.predict_many(pairs)))
        raise_if_nothing_answered(answered, errors)
        signals = {tf: signal for (_, tf), signal in answered}
        return schemas.SummaryResponse(
            symbol=symbol, signals=signals, consensus=consensus(signals.values()), errors=errors
        )

    # --- PPO actions ------------------------------------------------------------------------------------
    async def action(self, request: schemas.ActionRequest) -> schemas.Action:
        symbol = self.served_symbol(request.symbol)
        timeframe = parse_timeframe(request.timeframe or self.settings.ppo_timeframe)
        entry = self.catalog.ppo(timeframe)
        snapshot = await self.market.snapshot(symbol, timeframe)
        position = LONG_POSITION if request.position.side == "long" else 0.0
        observation = observation_with_position(snapshot.ppo_market_window, position)
        request_row = ObservationRequest(model=entry.tag, observation=observation)
        (answer,) = await runner_call("PPO", lambda: self.ppo.act([request_row]), self.settings.runner_timeout_s)
        row = ActionRow.model_validate(answer, from_attributes=True)  # a dict when it crossed the hop as JSON
        if row.missing:
            raise ModelIntegrityError(f"model {entry.name} is not loaded by the PPO runner; see /models")
        action_id, probabilities, value = row.action, np.asarray(row.probabilities, dtype=np.float64), row.value
        close, candle_time = snapshot.close, snapshot.candle_time
        names = dict(zip(ACTION_NAMES, map(float, probabilities), strict=True))
        explanation = None
        if request.include_explanation:
            explanation = explain(observation, names, ACTION_NAMES[action_id], request.position, close, value)
        edge = entry.edge_model
        actionable, reason = action_gate(edge, ACTION_NAMES[action_id], request.position.side)
        stale = self.is_stale(candle_time, timeframe)
        if actionable and stale:
            actionable, reason = False, STALE_REASON
        action = schemas.Action(
            symbol=symbol,
            timeframe=timeframe,
            action_id=action_id,
            action_name=ACTION_NAMES[action_id],
            probabilities=schemas.ActionProbabilities(**names),
            confidence=float(probabilities[action_id]),
            actionable=actionable,
            abstain_reason=reason,
            edge=edge,
            current_price=close,
            candle_time=candle_time.to_pydatetime(),
            valid_until=next_close(candle_time, timeframe).to_pydatetime(),
            model_version=entry.version,
            data_source=snapshot.data_source,
            stale=stale,
            explanation=explanation,
        )
        self.metrics.produced.labels(timeframe, "live", "request").inc()
        if self.writer is not None:
            record = action_row(
                action,
                model_name=entry.name,
                position=request.position.side,
                mode="live",
                recorded=self.clock(),
                request_id=request_id(),
            )
            self.writer.submit("action", record)
        return action

    async def aclose(self) -> None:
        await self.market.aclose()

    # --- models -----------------------------------------------------------------------------------------
    def models(self) -> list[schemas.ModelInfo]:
        """Every served model, and every unreadable version in the store named with the reason."""
        unreadable = [
            schemas.ModelInfo(
                family=(family_of_store_name(bad.name) or CNN_LSTM).name,
                name=bad.name,
                symbol=None,
                timeframe=None,
                version=bad.version,
                status="unavailable",
                error=f"unreadable, skipped: {bad.reason}",
            )
            for bad in self.catalog.unreadable
        ]
        skipped = [
            schemas.ModelInfo(
                family=bad.name,
                name=bad.name,
                symbol=None,
                timeframe=None,
                version="",
                status="unavailable",
                error=f"family skipped: {bad.reason}",
                role="skipped",
            )
            for bad in self.catalog.skipped
        ]
        lost = [_model_info(entry) for entry in self.catalog.shadows if entry.lost_to is not None]
        return [_model_info(entry) for entry in self.catalog.entries] + lost + unreadable + skipped


def _log_late_failure(task: asyncio.Future[Any]) -> None:
    """An answer no request waits for any more failed: say so (its error is nobody else's to read)."""
    if not task.cancelled() and task.exception() is not None:
        logger.warning("an answer that outlived its request failed: %s", task.exception())


def probabilities_of(row: Sequence[float | None]) -> np.ndarray | None:
    """A runner row as probabilities; None for a NaN row (the runner did not load that model; JSON may say null)."""
    probabilities = np.asarray([np.nan if p is None else p for p in row], dtype=np.float64)
    if probabilities.shape != (3,) or not np.isfinite(probabilities).all():
        return None
    return probabilities


def _split_answers(
    pairs: Sequence[tuple[str, str]], results: Sequence[schemas.Signal | SignalsError]
) -> tuple[list[tuple[tuple[str, str], schemas.Signal]], list[schemas.RequestError]]:
    """Answered (symbol, timeframe) pairs with their signals, and an error entry for each of the others."""
    answered, errors = [], []
    for (symbol, timeframe), result in zip(pairs, results, strict=True):
        if isinstance(result, schemas.Signal):
            answered.append(((symbol, timeframe), result))
        else:
            status = int(result.error_code)
            errors.append(schemas.RequestError(symbol=symbol, timeframe=timeframe, status=status, message=str(result)))
    return answered, errors


def _model_info(entry: ModelEntry) -> schemas.ModelInfo:
    card = entry.card
    metrics: dict[str, Any]
    if entry.family == PPO.name:
        metrics = {"evaluation": card.evaluation, "held_out_summary": card.held_out_summary}
        ranges = {"training_range": card.training_range, "held_out_range": card.held_out_range}
        data_range = {k: v for k, v in ranges.items() if v is not None}
    else:
        metrics = {
            "walk_forward": card.metrics,  # this pair's out-of-sample test blocks
            "pooled_walk_forward": card.pooled_walk_forward,  # every pair of the timeframe
            "threshold": card.threshold,
            "break_even_hit_rate": card.break_even_hit_rate,
            "horizon_bars": card.horizon,
            "health": card.health,
        }
        data_range = dict(card.data_range)
    return schemas.ModelInfo(
        family=entry.family,
        name=entry.name,
        symbol=entry.symbol,
        timeframe=entry.timeframe,
        version=entry.version,
        status="ok" if entry.error is None else "unavailable",
        error=entry.error,
        edge=None if entry.error is not None else entry.edge_model,
        metrics=metrics,
        data_range=data_range,
        rule=card.rule,
        rule_text=PPO_RULE_TEXT if entry.family == PPO.name else RULE_TEXT,
        role="shadow" if entry.role == "shadow" else "served",
        note=entry.note,
    )


RUNNER_RETRY_AFTER_S = 5
BUDGET_RETRY_AFTER_S = 2  # a cold timeframe's computation usually ends within a few seconds of the budget


async def runner_call(family: str, call: Callable[[], Awaitable[T]], timeout_s: float) -> T:
    """`call()` to a runner, whose failure (the worker restarting after a crash, a refused connection, no answer
    within `timeout_s`) is a 503 with Retry-After, never a 500 or the server's 504: the rest of the API (cached
    signals, the ledger, the other family) serves on.

    A call that fails on the connection itself (a kept-alive connection the runner had closed: "Cannot write to
    closing transport") is made once more on a fresh one: runner calls only compute, so asking twice is safe."""
    for attempt in (1, 2):
        try:
            return await within(call(), timeout_s)
        except SignalsError:
            raise
        except Exception as error:  # a cancellation is no Exception: it passes through
            if attempt == 1 and isinstance(error, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError):
                logger.info("%s runner connection failed (%s); asking again", family, error)
                continue
            logger.warning("%s runner call failed: %s: %s", family, type(error).__name__, error)
            raise RunnerUnavailable(
                f"the {family} runner is not answering ({type(error).__name__}); it restarts by itself, retry shortly",
                retry_after_s=RUNNER_RETRY_AFTER_S,
            ) from error
    raise AssertionError("unreachable: the loop returns or raises")


def raise_if_nothing_answered(answered: Sequence[Any], errors: Sequence[schemas.RequestError]) -> None:
    """Every pair failed: answer the failure itself (503 when any was ours, else the callers' common status) rather
    than a 200 with nothing in it."""
    if answered or not errors:
        return
    statuses = {e.status for e in errors}
    summary = "; ".join(f"{e.symbol} {e.timeframe or ''}: {e.message}".replace("  ", " ") for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    message = f"no pair could be answered: {summary}{more}"
    if any(status >= 500 for status in statuses):
        failure = ExchangeUnavailable(message)  # 503 + Retry-After; the message names what failed
        failure.errors = [e.model_dump(exclude_none=True) for e in errors]  # each pair's, as a 200 would list them
        raise failure
    if len(statuses) == 1:
        error = SignalsError(message)
        error.error_code = HTTPStatus(statuses.pop())
        raise error
