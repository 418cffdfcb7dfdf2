"""What happened after each recorded signal: resolved with the training label function once its horizon ended.

For a signal of candle t the resolver takes the same closed candles the server computed it from (the last
SERVING_TAIL bars up to t, so the ATR and hence the plan's R are the served ones) plus the `horizon` bars after t,
and runs `features.labels.trade_plan_outcomes` on them: the realized label, which barrier the price touched first
(pessimistic when one candle touched both), how many bars that took, and what a LONG and a SHORT plan returned;
and what the reversal and persistence baselines called at t (from candles up to t only), for the scorecard.
The call's after-cost return is recorded for actionable signals (what following them earned) and, as a
counterfactual, for the argmax of the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from signals.core.timeframes import timeframe_seconds
from signals.features.cnn import SERVING_TAIL
from signals.features.labels import persistence_calls, reversal_calls, round_trip_cost, trade_plan_outcomes
from signals.ledger.records import ms
from signals.ledger.rows import Outcome, OutcomeColumns, SignalRecord
from signals.ledger.store import Ledger
from signals.serving.engine import SignalEngine

logger = logging.getLogger(__name__)

# A record whose candles are still missing this many horizons after it expired is closed as unresolvable.
GIVE_UP_HORIZONS = 3

CandleReader = Callable[[str, str, pd.Timestamp], pd.DataFrame]  # (symbol, timeframe, from) -> candles


def resolve_records(
    records: Iterable[SignalRecord],
    read_candles: CandleReader,
    *,
    stop_atr: float,
    fee: float,
    slippage: float,
    now_ms: int,
) -> list[Outcome]:
    """Outcome rows (`id` + outcome columns) for the records whose candles are there; see the module doc."""
    cost = round_trip_cost(fee, slippage)
    by_pair: dict[tuple[str, str], list[SignalRecord]] = defaultdict(list)
    for record in records:
        by_pair[(record["symbol"], record["timeframe"])].append(record)
    out: list[Outcome] = []
    for (symbol, timeframe), pair_records in by_pair.items():
        step = pd.Timedelta(seconds=timeframe_seconds(timeframe))
        first = pd.Timestamp(min(r["candle_ms"] for r in pair_records), unit="ms", tz="UTC") - SERVING_TAIL * step
        try:
            candles = read_candles(symbol, timeframe, first)
        except Exception as error:  # no file yet: try again next time (or give up, below)
            logger.warning("outcomes: no %s %s candles: %s", symbol, timeframe, error)
            candles = None
        times = None if candles is None else candles["timestamp"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
        for record in pair_records:
            outcome = None if candles is None or times is None else _resolve(record, candles, times, stop_atr, cost)
            if outcome is not None:
                out.append(Outcome(id=record["id"], resolved_ms=now_ms, **outcome))
            elif _overdue(record, timeframe, now_ms):
                out.append(Outcome(id=record["id"], resolved_ms=now_ms, outcome_note="candles missing"))
    return out


def _overdue(record: SignalRecord, timeframe: str, now_ms: int) -> bool:
    horizon_ms = (record.get("horizon_bars") or 1) * timeframe_seconds(timeframe) * 1000
    expires_ms = record.get("expires_ms")
    return bool(expires_ms is not None and now_ms > expires_ms + GIVE_UP_HORIZONS * horizon_ms)


def _resolve(
    record: SignalRecord, candles: pd.DataFrame, times: np.ndarray, stop_atr: float, cost: float
) -> OutcomeColumns | None:
    horizon = record.get("horizon_bars")
    if not horizon:
        return None
    at = int(np.searchsorted(times, record["candle_ms"]))
    if at >= len(times) or times[at] != record["candle_ms"] or at + horizon >= len(times):
        return None  # the candle or its horizon is not in the store (yet)
    step_ms = timeframe_seconds(record["timeframe"]) * 1000
    if times[at + horizon] - times[at] != horizon * step_ms:
        return {"outcome_note": "a data gap inside the horizon"}
    window = candles.iloc[max(at - SERVING_TAIL + 1, 0) : at + horizon + 1].reset_index(drop=True)
    outcomes = trade_plan_outcomes(window, horizon, stop_atr)
    i = min(at, SERVING_TAIL - 1)
    if not np.isfinite(outcomes.label[i]):
        return None
    long_return, short_return = float(outcomes.long_return[i]), float(outcomes.short_return[i])
    direction = record["direction"]
    call = long_return if direction == "LONG" else short_return if direction == "SHORT" else None
    note = None
    served_risk = record.get("risk")
    if served_risk and not np.isclose(outcomes.risk[i], served_risk, rtol=1e-9):
        note = f"risk recomputed {outcomes.risk[i]:.6g} vs served {served_risk:.6g}: the candles changed"
    close = window["close"].to_numpy(np.float64)
    return {
        "outcome_label": int(outcomes.label[i]),
        # The two baselines as they stood at the signal's candle (known then; computed now, off the refresh path).
        "reversal": int(reversal_calls(close, horizon)[i]),
        "persistence": int(persistence_calls(outcomes.label, horizon)[i]),
        "touched": int(outcomes.touched[i]),
        "bars_to_exit": int(outcomes.bars_to_exit[i]),
        "long_return": long_return,
        "short_return": short_return,
        "call_return": None if call is None else call - cost,
        "outcome_note": note,
    }


async def resolve_due(engine: SignalEngine, ledger: Ledger) -> int:
    """Resolve every recorded signal whose horizon has ended, in batches; idempotent (a resolved record stays)."""
    market, settings = engine.market, engine.settings
    now_ms = ms(engine.clock())

    def read(symbol: str, timeframe: str, start: pd.Timestamp) -> pd.DataFrame:
        return market.store.read_since(market.exchange_id, symbol, timeframe, start)

    total = 0
    while True:
        due = await asyncio.to_thread(ledger.due, now_ms)
        if not due:
            return total
        outcomes = await asyncio.to_thread(
            resolve_records,
            due,
            read,
            stop_atr=settings.stop_atr,
            fee=settings.fee,
            slippage=settings.slippage,
            now_ms=now_ms,
        )
        written = await asyncio.to_thread(ledger.resolve, outcomes)
        timeframe_of = {r["id"]: r["timeframe"] for r in due}
        for outcome in outcomes:
            if outcome.get("outcome_label") is not None:
                engine.metrics.resolved.labels(timeframe_of[outcome["id"]]).inc()
        total += written
        if written == 0:  # what is left waits for its candles
            return total
