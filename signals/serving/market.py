"""Closed candles for serving: from the Parquet store (default), live from the exchange through ccxt, or from the
simulated demo market (`simulated`: the synthetic store, extended to the last closed candle as time goes on).

Store: the tail of a file is cached until the file changes (mtime and size). Live: the tail is cached until
the next candle closes; then only the candles missing since the last stored one are fetched, merged into the
store (atomic write) and the cache. One lock per (symbol, timeframe) so concurrent requests fetch once.
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

from signals.core.errors import NotEnoughCandles
from signals.core.settings import Settings
from signals.core.timeframes import MODEL_TIMEFRAMES, last_closed_open, next_close, timeframe_delta, utc_now
from signals.data.exchange import ExchangeConfig, ExchangeSource
from signals.data.store import CandleStore, merge_candles
from signals.data.synthetic import DEMO_SEED, SIMULATED_BASE, SYNTHETIC_EXCHANGE, extend_stored_market
from signals.features.cnn import MIN_CANDLES, SERVING_TAIL, serving_window
from signals.features.indicators import atr as average_true_range
from signals.features.ppo import PPO_MIN_CANDLES, serving_market_window

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
        self._source: ExchangeSource | None = None

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
        async with self._locks.setdefault(key, asyncio.Lock()):
            if self.live:
                return await self._live_snapshot(symbol, timeframe)
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
        candles = await asyncio.to_thread(self.store.read_tail, self.exchange_id, symbol, timeframe, SERVING_TAIL)
        snapshot = self._checked(
            MarketSnapshot(candles, self.data_source, None),
            symbol,
            timeframe,
        )
        self._cache[key] = (version, snapshot)
        return snapshot

    def _checked(self, snapshot: MarketSnapshot, symbol: str, timeframe: str) -> MarketSnapshot:
        if snapshot.candles.empty:  # it has no candle_time: say so instead of failing on it (500)
            raise NotEnoughCandles(
                f"found 0 closed {timeframe} candles for {symbol} ({self.data_source}); need at least "
                f"{MIN_CANDLES} for a signal, {PPO_MIN_CANDLES} for an action"
            )
        return snapshot

    async def _live_snapshot(self, symbol: str, timeframe: str) -> MarketSnapshot:
        step = timeframe_delta(timeframe)
        cached = self._cache.get((symbol, timeframe))
        now = self.clock()
        if cached is not None and now < next_close(cached[1].candle_time, timeframe):  # not replaced yet
            return cached[1]
        if cached is not None:
            known = cached[1].candles
        else:
            known = await asyncio.to_thread(self.store.read_or_empty, self.exchange_id, symbol, timeframe)
        since = known["timestamp"].iloc[-1] + step if len(known) else now - step * (SERVING_TAIL + 2)
        source = self._exchange_source()
        fresh = await source.fetch(symbol, timeframe, since)
        if len(fresh):
            await asyncio.to_thread(self.store.write, self.exchange_id, symbol, timeframe, fresh)
        tail = merge_candles(known, fresh).iloc[-SERVING_TAIL:].reset_index(drop=True)
        snapshot = self._checked(MarketSnapshot(tail, self.data_source, _tick_size(source, symbol)), symbol, timeframe)
        self._cache[(symbol, timeframe)] = (None, snapshot)  # an empty tail raised above: fetched again next time
        return snapshot

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
