"""Closed candles for serving: from the Parquet store (default), live from the exchange through ccxt, or from the
simulated demo market (`simulated`: the synthetic store, extended to the last closed candle as time goes on).

Store: the tail of a file is cached until the file changes (mtime and size). Live: the tail is cached until
the next candle closes; then only the candles missing since the last stored one are fetched (one fetch per
(symbol, timeframe) shared by its waiters), merged into the store (atomic write) and the cache, within a request
budget and behind a circuit breaker (`_live_snapshot`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from signals.core.background import within
from signals.core.errors import CandleDataError, ExchangeUnavailable, NotEnoughCandles, StorageUnavailable
from signals.core.settings import Settings
from signals.core.timeframes import MODEL_TIMEFRAMES, iso_z, last_closed_open, next_close, timeframe_delta, utc_now
from signals.data.exchange import ExchangeConfig, ExchangeSource
from signals.data.store import CandleStore, merge_candles
from signals.data.synthetic import (
    DEMO_SEED,
    DEMO_SYMBOLS,
    SIMULATED_BASE,
    SYNTHETIC_EXCHANGE,
    extend_stored_market,
    seed_stored_market,
)
from signals.features.cnn import MIN_CANDLES, SERVING_TAIL, serving_window
from signals.features.indicators import atr as average_true_range
from signals.features.ppo import PPO_MIN_CANDLES, serving_market_window
from signals.serving.breaker import CircuitBreaker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarketSnapshot:
    """The last SERVING_TAIL closed candles of one (symbol, timeframe), and where they came from.

    Immutable: a new candle makes a new snapshot. So everything derived from the candles (the model
    windows, the ATR) is computed once per candle, on first use, and shared by every request until then.
    """

    candles: pd.DataFrame
    data_source: str
    tick: float | None
    # The longer stored tail `candles` was cut from, where a reader asked for more (`MarketData.keep_history`: the
    # market context's universe): one file read serves both.
    history: pd.DataFrame | None = None
    # Candles the store read asked for (0: not a store read): a shorter `history` (or `candles`) is all it holds.
    asked: int = 0

    def stored_tail(self, rows: int) -> pd.DataFrame | None:
        """The last `rows` stored candles if this snapshot's read holds them (or all the store had, when the read
        asked for at least as many), else None."""
        if len(self.candles) >= rows:
            return self.candles
        longest = self.history if self.history is not None else self.candles
        return longest if len(longest) >= rows or self.asked >= rows else None

    @cached_property
    def candle_time(self) -> pd.Timestamp:
        return self.candles["timestamp"].iloc[-1]

    @cached_property
    def close(self) -> float:
        return float(self.candles["close"].iloc[-1])

    @cached_property
    def cnn_window(self) -> np.ndarray:
        """The CNN-LSTM's (60, 15) float32 window (raises NotEnoughCandles; the error is not cached)."""
        return serving_window(self.candles)

    @cached_property
    def ppo_market_window(self) -> np.ndarray:
        return serving_market_window(self.candles)

    def risk(self, stop_atr: float) -> float:
        """The plan's R as a fraction of the last close (stop distance / entry)."""
        return stop_atr * self.atr / self.close

    @cached_property
    def atr(self) -> float:
        """ATR(14) at the last closed candle, over the same tail the windows come from."""
        candles = self.candles
        values = average_true_range(
            candles["high"].to_numpy(np.float64),
            candles["low"].to_numpy(np.float64),
            candles["close"].to_numpy(np.float64),
        )
        return float(values[-1])


class MarketData:
    def __init__(self, settings: Settings, *, clock: Callable[[], pd.Timestamp] = utc_now) -> None:
        self.settings = settings
        self.store = CandleStore(settings.data_dir)
        self.exchange_id = settings.exchange
        self.live = settings.source == "live"
        self.simulated = settings.source == "simulated"
        self.clock = clock
        self._simulated_to: dict[str, pd.Timestamp] = {}
        self._simulating: dict[str, asyncio.Lock] = {}
        self._cache: dict[tuple[str, str], tuple[Any, MarketSnapshot]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._paths: dict[tuple[str, str], str] = {}
        self._history_rows: dict[str, int] = {}  # timeframe -> stored candles a store snapshot reads (>= the tail)
        self._source: ExchangeSource | None = None
        self._inflight: dict[tuple[str, str], asyncio.Task[MarketSnapshot]] = {}
        self._unsaved: dict[tuple[str, str], pd.DataFrame] = {}
        self.store_error: str | None = None
        self.breaker = CircuitBreaker(
            settings.exchange,
            failures=settings.exchange_breaker_failures,
            cooldown_s=settings.exchange_breaker_cooldown_s,
        )

    @property
    def data_source(self) -> str:
        if self.live:
            return f"ccxt:{self.exchange_id}"
        return SYNTHETIC_EXCHANGE if self.exchange_id == SYNTHETIC_EXCHANGE else f"store:{self.exchange_id}"

    async def snapshot(self, symbol: str, timeframe: str) -> MarketSnapshot:
        key = (symbol, timeframe)
        if self.simulated:
            await self.simulate(symbol)
        if not self.live:  # hot path: a cached tail whose file has not changed needs no lock and no await
            cached = self._cache.get(key)
            if cached is not None and cached[0] == self._file_version(key):
                return cached[1]
        if self.live:
            return await self._live_snapshot(symbol, timeframe)
        async with self._locks.setdefault(key, asyncio.Lock()):
            return await self._store_snapshot(symbol, timeframe)

    async def simulate(self, symbol: str) -> None:
        """The simulated market: extend the symbol's stored candles to the last closed candle (deterministic, so
        workers and replicas that do it at once write the same bars; the store's lock serialises the writes)."""
        target = last_closed_open(self.clock(), SIMULATED_BASE)
        if self._simulated_to.get(symbol, target - timeframe_delta(SIMULATED_BASE)) >= target:
            return
        async with self._simulating.setdefault(symbol, asyncio.Lock()):
            if self._simulated_to.get(symbol, target - timeframe_delta(SIMULATED_BASE)) >= target:
                return
            if symbol in DEMO_SYMBOLS:  # a fresh machine or a container: the demo's history first (never invented
                await asyncio.to_thread(  # for other pairs: a real-data model is not served on made-up candles)
                    seed_stored_market,
                    self.store,
                    self.exchange_id,
                    symbol,
                    list(MODEL_TIMEFRAMES),
                    target,
                    seed=DEMO_SEED,
                )
            await asyncio.to_thread(
                extend_stored_market,
                self.store,
                self.exchange_id,
                symbol,
                list(MODEL_TIMEFRAMES),
                self.clock(),
                seed=DEMO_SEED,
            )
            self._simulated_to[symbol] = target

    def keep_history(self, timeframe: str, rows: int) -> None:
        """Store snapshots of `timeframe` read the last `rows` candles from now on (kept as `history`), so a reader
        of a longer tail (the market context) needs no second read of the file."""
        if rows > max(SERVING_TAIL, self._history_rows.get(timeframe, 0)):
            self._history_rows[timeframe] = rows

    def _file_version(self, key: tuple[str, str]) -> tuple[int, int] | None:
        """(mtime, size) of the store file: the writer replaces it atomically, so a change shows here."""
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = str(self.store.path_for(self.exchange_id, *key))
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    async def _store_snapshot(self, symbol: str, timeframe: str) -> MarketSnapshot:
        key = (symbol, timeframe)
        version = self._file_version(key)
        cached = self._cache.get(key)
        if cached is not None and version is not None and cached[0] == version:
            return cached[1]
        snapshot = self._checked(await asyncio.to_thread(self._read_snapshot, symbol, timeframe), symbol, timeframe)
        self._cache[key] = (version, snapshot)
        return snapshot

    def _read_snapshot(self, symbol: str, timeframe: str) -> MarketSnapshot:
        """The stored tail; with `keep_history`, the longer tail read once and the snapshot's cut from it (the same
        candles as a tail read: a bad candle older than the tail fails only the longer read, then read alone)."""
        rows = self._history_rows.get(timeframe, SERVING_TAIL)
        if rows > SERVING_TAIL:
            try:
                history = self.store.read_tail(self.exchange_id, symbol, timeframe, rows)
                candles = history.iloc[-SERVING_TAIL:].reset_index(drop=True)
                return MarketSnapshot(candles, self.data_source, None, history, asked=rows)
            except CandleDataError as error:
                logger.warning(
                    "%s %s: the longer tail is unusable (%s); the serving tail alone", symbol, timeframe, error
                )
        candles = self.store.read_tail(self.exchange_id, symbol, timeframe, SERVING_TAIL)
        return MarketSnapshot(candles, self.data_source, None, asked=SERVING_TAIL)

    def _checked(self, snapshot: MarketSnapshot, symbol: str, timeframe: str) -> MarketSnapshot:
        if snapshot.candles.empty and self.simulated and symbol not in DEMO_SYMBOLS:
            raise NotEnoughCandles(
                f"the simulated demo market has no {symbol} (it continues the demo pairs "
                f"{', '.join(DEMO_SYMBOLS)} and synthetic candles stored with `signals demo-data`): serve real data "
                "with SIGNALS_SOURCE=live or store"
            )
        if snapshot.candles.empty:  # it has no candle_time: say so instead of failing on it (500)
            raise NotEnoughCandles(
                f"found 0 closed {timeframe} candles for {symbol} ({self.data_source}); need at least "
                f"{MIN_CANDLES} for a signal, {PPO_MIN_CANDLES} for an action"
            )
        return snapshot

    async def _live_snapshot(self, symbol: str, timeframe: str) -> MarketSnapshot:
        """The cached tail until the next close; then one fetch per (symbol, timeframe) shared by every waiter
        (single flight), answered within the request budget: a fetch still running after `exchange_budget_s`
        goes on in the background (its candles serve the next request) and this one gets a 503 now."""
        key = (symbol, timeframe)
        cached = self._cache.get(key)
        if cached is not None and self.clock() < next_close(cached[1].candle_time, timeframe):  # not replaced yet
            return cached[1]
        task = self._inflight.get(key)
        if task is None:
            self.breaker.before_call()  # open: a 503 at once, with the cooldown as Retry-After
            task = asyncio.create_task(self._fetch_live(symbol, timeframe), name=f"fetch {symbol} {timeframe}")
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._fetched(key, done))
        budget = self.settings.exchange_budget_s
        try:
            return await within(asyncio.shield(task), budget)
        except TimeoutError:
            raise ExchangeUnavailable(
                f"{self.exchange_id} has not answered for {symbol} {timeframe} within {budget:g} s; the fetch goes on "
                "in the background, retry shortly",
                retry_after_s=max(2.0, budget),
            ) from None

    def _fetched(self, key: tuple[str, str], task: asyncio.Task[MarketSnapshot]) -> None:
        """A fetch ended: forget it, and tell the breaker how the exchange did (our own store errors aside)."""
        self._inflight.pop(key, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self.breaker.success()
        elif isinstance(error, ExchangeUnavailable):
            self.breaker.failure(error)

    async def _fetch_live(self, symbol: str, timeframe: str) -> MarketSnapshot:
        """Fetch what is missing since the last known candle until the tail reaches the last closed candle.

        A page that stops short of it (truncated, or the exchange is late) or that breaks the candle contract is
        asked again with backoff, and never served as fresh: after the retries it is a 503 saying what came."""
        key = (symbol, timeframe)
        step = timeframe_delta(timeframe)
        cached = self._cache.get(key)
        if cached is not None:
            known = cached[1].candles
        else:
            known = await asyncio.to_thread(self.store.read_or_empty, self.exchange_id, symbol, timeframe)
        source = self._exchange_source()
        attempts = self.settings.exchange_retries + 1
        for attempt in range(attempts):
            now = self.clock()
            since = known["timestamp"].iloc[-1] + step if len(known) else now - step * (SERVING_TAIL + 2)
            try:
                fresh = await source.fetch(symbol, timeframe, since)
            except CandleDataError as error:  # a malformed page: the exchange's fault, asked again
                problem = f"a malformed page ({error})"
            else:
                known = merge_candles(known, fresh) if len(fresh) else known
                await self._save(symbol, timeframe, known, fresh)
                expected = last_closed_open(now, timeframe)
                if known.empty or known["timestamp"].iloc[-1] >= expected:
                    break  # current, or a market with no recent candles at all (422 below, not a retry)
                last = iso_z(known["timestamp"].iloc[-1]) if len(known) else "nothing"
                problem = f"candles up to {last}, {iso_z(expected)} expected (a truncated or late answer)"
            if attempt + 1 == attempts:
                raise ExchangeUnavailable(
                    f"{self.exchange_id} gave {problem} for {symbol} {timeframe} after {attempts} attempt(s)"
                )
            await asyncio.sleep(self.settings.exchange_backoff_s * 2**attempt)
        tail = known.iloc[-SERVING_TAIL:].reset_index(drop=True)
        snapshot = self._checked(MarketSnapshot(tail, self.data_source, _tick_size(source, symbol)), symbol, timeframe)
        self._cache[key] = (None, snapshot)  # an empty tail raised above: fetched again next time
        return snapshot

    async def _save(self, symbol: str, timeframe: str, known: pd.DataFrame, fresh: pd.DataFrame) -> None:
        """Write what was fetched (and anything an earlier failed write left) to the store. A full or read-only
        disk does not fail the request: the candles serve from memory, health says the store is failing, and the
        next write carries them."""
        key = (symbol, timeframe)
        pending = self._unsaved.pop(key, None)
        frame = fresh if pending is None else merge_candles(pending, fresh)
        if frame.empty:
            return
        try:
            await asyncio.to_thread(self.store.write, self.exchange_id, symbol, timeframe, frame)
            self.store_error = None
        except StorageUnavailable as error:
            self._unsaved[key] = frame
            self.store_error = str(error)
            logger.warning("serving %s %s from memory: %s", symbol, timeframe, error)

    def status(self) -> dict[str, Any]:
        """What health shows: the source, the exchange's circuit (live) and the store's last write error."""
        return {
            "source": self.settings.source,
            "data_source": self.data_source,
            "exchange": self.breaker.status() if self.live else None,
            "store_error": self.store_error,
            "unsaved_series": len(self._unsaved),
            "degraded": (self.live and self.breaker.degraded) or self.store_error is not None,
        }

    def _exchange_source(self) -> ExchangeSource:
        if self._source is None:
            self._source = ExchangeSource(ExchangeConfig.from_settings(self.settings), now=self.clock)
        return self._source

    async def aclose(self) -> None:
        if self._source is not None:
            await self._source.aclose()
            self._source = None


def _tick_size(source: ExchangeSource, symbol: str) -> float | None:
    """ccxt's price precision; binance reports it as a tick size (precision mode TICK_SIZE)."""
    market = source.exchange.markets.get(symbol) if source.exchange.markets else None
    precision = (market or {}).get("precision", {}).get("price")
    return float(precision) if precision else None
