"""The window a model is given at a closed candle: the one serving-side builder for live signals, shadows,
backfill and replay.

A CNN-LSTM, or a family that reads only per-pair features, gets the snapshot's (60, 15) window. A family that reads
the market context (`features.registry.needs_context`) gets (60, 30): that window beside the context's columns,
computed by `features.context.context_window` (the training function) over the universe the model was pooled over,
every pair cut at the same closed candle, and the pair's higher timeframes' candles closed by then. Live, each
pair's candles are first brought up to date through the market layer (store, simulated or exchange), then read
from the store; replay and backfill read the store as it is. The universe's tails and cross-section are computed
once per (timeframe, candle, universe); live, so is the context of every pair at that candle
(`context_windows`: a refresh asks for all of them), and each pair's window slices it. Replay and backfill ask for
one pair at many candles: theirs is computed one pair at a time (`context_window`, the same bits).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from signals.core.errors import DataNotFound, SignalsError
from signals.features.cnn import LOOKBACK
from signals.features.context import (
    HIGHER_TIMEFRAMES,
    HTF_TAIL,
    CrossSection,
    OwnColumnsMemo,
    context_window,
    context_windows,
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


@dataclass(frozen=True)
class _Universe:
    """The pooled universe at one closed candle: its tails, their cross-section and (live) every pair's context."""

    tails: dict[str, pd.DataFrame]
    cross: CrossSection
    contexts: dict[str, np.ndarray]


def history_rows(timeframe: str) -> int:
    """Stored candles of each pair a context window at one candle reads."""
    return window_tail(timeframe, LOOKBACK) + _MARGIN


class ModelInputs:
    """Windows for model entries at their snapshot's candle (see the module docstring)."""

    def __init__(self, market: MarketData) -> None:
        self.market = market
        self._universes: OrderedDict[tuple[object, ...], _Universe] = OrderedDict()
        self._locks: dict[tuple[object, ...], asyncio.Lock] = {}
        self._stored: dict[tuple[str, str], tuple[tuple[int, int], pd.DataFrame]] = {}  # whole files (history)
        self._own: dict[str, OwnColumnsMemo] = {}  # timeframe -> each pair's last tail's cross-section inputs

    def expect(self, families: Mapping[str, Sequence[str]]) -> None:
        """The computed (served and shadow) families' timeframes (family -> timeframes): the market layer reads the
        context's longer tails with the snapshots of a timeframe where a family reads the context (one read of each
        file)."""
        for family, timeframes in families.items():
            if self.reads_context(family):
                for timeframe in timeframes:
                    self.market.keep_history(timeframe, history_rows(timeframe))

    def files_read(self, family: str, card: ModelCard, symbol: str, timeframe: str) -> set[tuple[str, str]]:
        """The (symbol, timeframe) candle series a model's window at the current candle reads: its own, and where
        its family reads the market context, its pooled universe's and their higher timeframes' (the refresh reads
        them all first, concurrently: `SignalEngine.read_candles`)."""
        pairs = {(symbol, timeframe)}
        if self.reads_context(family):
            universe = {*card.pooled_symbols, symbol}
            for frame in (timeframe, *HIGHER_TIMEFRAMES.get(timeframe, ())):
                pairs.update((member, frame) for member in universe)
        return pairs

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
        card: ModelCard | None = None,
    ) -> np.ndarray:
        """The model's float32 window at `snapshot`'s last candle; `history`: read the store as it is (replay);
        `card`: the metadata already typed (a catalog entry's, read once: not once per window)."""
        window = snapshot.cnn_window  # raises NotEnoughCandles first, as for every model
        if not self.reads_context(family):
            return window
        card = card or ModelCard.from_metadata(metadata)
        universe = tuple(sorted({*card.pooled_symbols, symbol}))
        last = snapshot.candle_time
        found = await self._universe(universe, timeframe, last, history=history)
        context = found.contexts.get(symbol)
        if context is None:  # replay, backfill, or a pair whose candle is not the universe's
            higher = await self._higher(symbol, timeframe, last, history=history)
            context = await asyncio.to_thread(
                context_window, symbol, timeframe, found.tails, higher, rows=LOOKBACK, cross_section=found.cross
            )
        return np.hstack([window, context.astype(np.float32)])

    async def _universe(
        self, universe: Sequence[str], timeframe: str, last: pd.Timestamp, *, history: bool
    ) -> _Universe:
        key = (self.market.exchange_id, timeframe, last, tuple(universe), history)
        found = self._universes.get(key)
        if found is not None:
            self._universes.move_to_end(key)
            return found
        async with self._locks.setdefault(key, asyncio.Lock()):
            found = self._universes.get(key)
            if found is None:
                rows = history_rows(timeframe)
                frames = {s: await self._candles(s, timeframe, rows, history=history) for s in universe}
                tails = window_universe({s: f for s, f in frames.items() if len(f)}, last, timeframe, LOOKBACK)
                found = await self._computed(tails, timeframe, last, history=history)
                self._universes[key] = found
                while len(self._universes) > _KEEP:
                    self._locks.pop(self._universes.popitem(last=False)[0], None)
        return found

    async def _computed(
        self, tails: dict[str, pd.DataFrame], timeframe: str, last: pd.Timestamp, *, history: bool
    ) -> _Universe:
        """The cross-section and, live, the context of every pair whose tail ends at the candle, in one pass."""
        memo = None if history else self._own.setdefault(timeframe, OwnColumnsMemo())  # live: tails move on by a bar
        cross = await asyncio.to_thread(cross_section_of, tails, LOOKBACK, memo)  # windows read LOOKBACK ranks
        if history:
            return _Universe(tails, cross, {})
        current = {s: f for s, f in tails.items() if f["timestamp"].iloc[-1] == last}
        higher = {s: await self._higher(s, timeframe, last, history=False) for s in current}
        contexts = await asyncio.to_thread(
            context_windows, timeframe, current, higher, rows=LOOKBACK, cross_section=cross
        )
        return _Universe(tails, cross, contexts)

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
            held = snapshot.stored_tail(rows)  # the tail, or the longer one read with it (`keep_history`), or
            if held is not None:  # a shorter one that is all the store holds: no second read of the file
                return held
            market.keep_history(timeframe, rows)  # the next candle's snapshot reads it at once
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
