"""The window a model is given at a closed candle: the one serving-side builder for live signals, shadows,
backfill and replay.

A CNN-LSTM, or a family that reads only per-pair features, gets the snapshot's (60, 15) window. A family that reads
the market context (`features.registry.needs_context`) gets (60, 30): that window beside the context's columns,
computed by `features.context.context_window` (the training function) over the universe the model was pooled over,
every pair cut at the same closed candle, and the pair's higher timeframes' candles closed by then. Live, each
pair's candles are first brought up to date through the market layer (store, simulated or exchange), then read
from the store; replay and backfill read the store as it is. The universe's tails and cross-section are computed
once per (timeframe, candle, universe) and shared by every pair of that refresh.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import pandas as pd

from signals.core.errors import DataNotFound, SignalsError
from signals.features.cnn import LOOKBACK
from signals.features.context import (
    HIGHER_TIMEFRAMES,
    HTF_TAIL,
    context_window,
    cross_section_of,
    window_tail,
    window_universe,
)
from signals.models.card import ModelCard
from signals.models.plugin import discover, reads_context
from signals.serving.market import MarketData, MarketSnapshot

logger = logging.getLogger(__name__)

_KEEP: Final = 16  # (timeframe, candle, universe) cross-sections kept: a refresh of every timeframe and the last one
_MARGIN: Final = 8  # candles read beyond the tail: a store a candle ahead of the snapshot still fills it


class ModelInputs:
    """Windows for model entries at their snapshot's candle (see the module docstring)."""

    def __init__(self, market: MarketData) -> None:
        self.market = market
        self._universes: OrderedDict[tuple[object, ...], tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]]
        self._universes = OrderedDict()
        self._locks: dict[tuple[object, ...], asyncio.Lock] = {}
        self._stored: dict[tuple[str, str], tuple[tuple[int, int], pd.DataFrame]] = {}  # whole files (history)

    @staticmethod
    def reads_context(family: str) -> bool:
        plugin = discover().plugins.get(family)
        return plugin is not None and reads_context(plugin)

    async def window(
        self,
        family: str,
        metadata: Mapping[str, object],
        symbol: str,
        timeframe: str,
        snapshot: MarketSnapshot,
        *,
        history: bool = False,
    ) -> np.ndarray:
        """The model's float32 window at `snapshot`'s last candle; `history`: read the store as it is (replay)."""
        window = snapshot.cnn_window  # raises NotEnoughCandles first, as for every model
        if not self.reads_context(family):
            return window
        universe = tuple(sorted({*ModelCard.from_metadata(metadata).pooled_symbols, symbol}))
        last = snapshot.candle_time
        tails, cross = await self._universe(universe, timeframe, last, history=history)
        higher = await self._higher(symbol, timeframe, last, history=history)
        context = await asyncio.to_thread(
            context_window, symbol, timeframe, tails, higher, rows=LOOKBACK, cross_section=cross
        )
        return np.hstack([window, context.astype(np.float32)])

    async def _universe(
        self, universe: Sequence[str], timeframe: str, last: pd.Timestamp, *, history: bool
    ) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
        key = (self.market.exchange_id, timeframe, last, tuple(universe), history)
        found = self._universes.get(key)
        if found is not None:
            self._universes.move_to_end(key)
            return found
        async with self._locks.setdefault(key, asyncio.Lock()):
            found = self._universes.get(key)
            if found is None:
                rows = window_tail(timeframe, LOOKBACK) + _MARGIN
                frames = {s: await self._candles(s, timeframe, rows, history=history) for s in universe}
                tails = window_universe({s: f for s, f in frames.items() if len(f)}, last, timeframe, LOOKBACK)
                found = (tails, await asyncio.to_thread(cross_section_of, tails))
                self._universes[key] = found
                while len(self._universes) > _KEEP:
                    self._locks.pop(self._universes.popitem(last=False)[0], None)
        return found

    async def _higher(
        self, symbol: str, timeframe: str, last: pd.Timestamp, *, history: bool
    ) -> dict[str, pd.DataFrame]:
        out = {}
        for higher in HIGHER_TIMEFRAMES.get(timeframe, ()):
            frame = await self._candles(symbol, higher, HTF_TAIL + LOOKBACK + _MARGIN, history=history)
            if len(frame):
                out[higher] = frame
        return out

    async def _candles(self, symbol: str, timeframe: str, rows: int, *, history: bool) -> pd.DataFrame:
        """A pair's stored candles (live: brought up to date first); empty when it has none (NaN context)."""
        market = self.market
        try:
            if history:
                return await asyncio.to_thread(self._stored_frame, symbol, timeframe)
            snapshot = await market.snapshot(symbol, timeframe)
            if len(snapshot.candles) >= rows:  # the market layer's tail is long enough (a higher timeframe)
                return snapshot.candles
            return await asyncio.to_thread(market.store.read_tail, market.exchange_id, symbol, timeframe, rows)
        except SignalsError as error:
            logger.warning("market context without %s %s: %s", symbol, timeframe, error)
            return pd.DataFrame(columns=["timestamp", "open", "high", "low", "close", "volume"])

    def _stored_frame(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """A whole stored series, read again only when its file changed (a backfill asks at every candle)."""
        market = self.market
        path = market.store.path_for(market.exchange_id, symbol, timeframe)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise DataNotFound(f"no stored {timeframe} candles for {symbol}") from None
        version = (stat.st_mtime_ns, stat.st_size)
        found = self._stored.get((symbol, timeframe))
        if found is None or found[0] != version:
            found = (version, market.store.read(market.exchange_id, symbol, timeframe))
            self._stored[(symbol, timeframe)] = found
        return found[1]
