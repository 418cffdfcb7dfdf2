"""Ledger rows from served signals and actions, and served signals back from ledger rows."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from signals.contract import schemas
from signals.ledger.rows import ActionRow, SignalRow

CLASS_CODE = {"SHORT": 0, "NO_TRADE": 1, "LONG": 2}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(moment: Any) -> int:
    """UTC epoch milliseconds of a timestamp or datetime (any year a datetime holds: a request may name year 9999,
    beyond pandas' nanosecond range; a naive datetime is UTC)."""
    if isinstance(moment, datetime) and not isinstance(moment, pd.Timestamp):
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return (aware - EPOCH) // timedelta(milliseconds=1)
    return int(pd.Timestamp(moment).value // 1_000_000)


def window_hash(window: np.ndarray) -> str:
    """SHA-256 of the float32 window the model saw: a replay checks it rebuilt the same input."""
    return hashlib.sha256(np.ascontiguousarray(window, dtype=np.float32).tobytes()).hexdigest()


def signal_row(
    signal: schemas.Signal,
    *,
    model_name: str,
    window: np.ndarray,
    threshold: float | None,
    risk: float | None,
    mode: str,
    recorded: pd.Timestamp,
    paper: bool = False,
    request_id: str | None = None,
) -> SignalRow:
    """The ledger row of a signal as it was served (its fresh form: `stale` is the reader's business); `paper`: a
    call probation withheld (it would have been actionable)."""
    p = signal.probabilities
    return {
        "model_name": model_name,
        "model_version": signal.model_version,
        "symbol": signal.symbol,
        "timeframe": signal.timeframe,
        "candle_ms": ms(signal.candle_time),
        "mode": mode,
        "paper": paper,
        "p_short": p.SHORT,
        "p_no_trade": p.NO_TRADE,
        "p_long": p.LONG,
        "direction": signal.direction,
        "confidence": signal.confidence,
        "actionable": signal.actionable,
        "abstain_reason": signal.abstain_reason,
        "threshold": threshold,
        "edge_verdict": signal.edge.verdict,
        "horizon_bars": signal.horizon_bars,
        "expires_ms": None if signal.expires_at is None else ms(signal.expires_at),
        "close": signal.current_price,
        "risk": risk,
        "features_hash": window_hash(window),
        "data_source": signal.data_source,
        "recorded_ms": ms(recorded),
        "payload": signal.model_dump(mode="json"),
        "request_id": request_id,
    }


def action_row(
    action: schemas.Action,
    *,
    model_name: str,
    position: str,
    mode: str,
    recorded: pd.Timestamp,
    request_id: str | None = None,
) -> ActionRow:
    p = action.probabilities
    return {
        "model_name": model_name,
        "model_version": action.model_version,
        "symbol": action.symbol,
        "timeframe": action.timeframe,
        "candle_ms": ms(action.candle_time),
        "position": position,
        "mode": mode,
        "action_name": action.action_name,
        "p_hold": p.HOLD,
        "p_buy": p.BUY,
        "p_sell": p.SELL,
        "actionable": action.actionable,
        "edge_verdict": action.edge.verdict,
        "close": action.current_price,
        "data_source": action.data_source,
        "recorded_ms": ms(recorded),
        "payload": action.model_dump(mode="json", exclude={"explanation"}),
        "request_id": request_id,
    }


def signal_from_row(row: SignalRow) -> schemas.Signal:
    """The signal a ledger row recorded, exactly as it was served then."""
    return schemas.Signal.model_validate(row["payload"])
