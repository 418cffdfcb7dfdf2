"""A track record for a fresh install: the served models run over stored candles as if live (mode `backfill`).

For every candle in [since, until] of each served CNN-LSTM, the signal is computed from the same last SERVING_TAIL
candles the server would have read at that close, by the same engine code, with its prediction time at the
candle's close; it is recorded (once: a candle already recorded is skipped by the ledger) and then resolved like
a live signal. Backfill records are labelled as such everywhere (`mode`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from signals.core.symbols import normalize_symbol
from signals.core.timeframes import close_time, parse_timeframe
from signals.features.cnn import MIN_CANDLES, SERVING_TAIL
from signals.ledger.store import Ledger
from signals.ledger.writer import LedgerWriter
from signals.serving.engine import Pending, SignalEngine
from signals.serving.market import MarketSnapshot
from signals.track_record.outcomes import resolve_due

logger = logging.getLogger(__name__)

CHUNK = 512  # windows per forward call


@dataclass
class BackfillReport:
    timeframe: str
    pairs: int = 0
    computed: int = 0
    recorded: int = 0
    resolved: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {**self.__dict__, "skipped": "; ".join(f"{k}: {v}" for k, v in self.skipped.items()) or None}


async def backfill(
    engine: SignalEngine,
    ledger: Ledger,
    writer: LedgerWriter,
    *,
    timeframes: Sequence[str],
    since: pd.Timestamp,
    until: pd.Timestamp,
    symbols: Sequence[str] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[BackfillReport]:
    """Compute, record and resolve the backfill of each timeframe (see the module doc)."""
    wanted = None if symbols is None else {normalize_symbol(s) for s in symbols}
    reports = []
    for timeframe in (parse_timeframe(tf) for tf in timeframes):
        report = BackfillReport(timeframe)
        items: list[tuple[Pending, pd.Timestamp]] = []
        for symbol in engine.catalog.cnn_symbols(timeframe):
            if wanted is not None and symbol not in wanted:
                continue
            try:
                entry = engine.catalog.cnn(symbol, timeframe)
                candles = await asyncio.to_thread(
                    engine.market.store.read, engine.market.exchange_id, symbol, timeframe
                )
            except Exception as error:  # one pair's problem is reported, the others go on
                report.skipped[symbol] = str(error)
                continue
            report.pairs += 1
            times = candles["timestamp"]
            for at in range(MIN_CANDLES - 1, len(candles)):
                if since <= times.iloc[at] <= until:
                    tail = candles.iloc[max(0, at - SERVING_TAIL + 1) : at + 1].reset_index(drop=True)
                    snapshot = MarketSnapshot(tail, engine.market.data_source, None)
                    window = await engine.window(entry, snapshot, history=True)
                    items.append((Pending(entry, snapshot, window), times.iloc[at]))
        now = engine.clock()
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            # As if served at each close under the walk-forward gate alone: probation judges live calls only.
            predicted_at = [close_time(candle_time, timeframe) for _, candle_time in chunk]
            computed = await engine.compute([item for item, _ in chunk], withheld=[None] * len(chunk), at=predicted_at)
            rows = []
            for (item, _), signal in zip(chunk, computed, strict=True):
                if signal is None:
                    report.skipped.setdefault(item.entry.symbol or "", f"model {item.entry.tag} not loaded")
                    continue
                rows.append(engine.ledger_row(item, signal, "backfill", recorded=now))
            report.computed += len(rows)
            report.recorded += await asyncio.to_thread(writer.write_now, "signal", rows)
            if on_progress is not None:
                on_progress(timeframe, min(start + CHUNK, len(items)), len(items))
        report.resolved = await resolve_due(engine, ledger)
        reports.append(report)
    return reports
