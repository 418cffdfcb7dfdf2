"""The track record, read back: a pair's history with outcomes, and the replay of one recorded signal.

Replay rebuilds the signal of a recorded candle from the stored candles (the same last SERVING_TAIL bars the server
read) and the recorded model version (loaded by the runner on request), through the same engine code, and compares
it with the record field by field. Inference runs in float64 and is rounded once to float32
(`models.cnn_lstm.artifact.scale`), so the probabilities are compared bit for bit.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from signals.contract import schemas
from signals.core.errors import ModelIntegrityError, ModelNotFound
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import parse_timeframe
from signals.features.cnn import SERVING_TAIL
from signals.ledger.records import ms, signal_from_row, window_hash
from signals.ledger.rows import SignalRecord
from signals.ledger.store import Ledger
from signals.models.families import CNN_LSTM, family_of_store_name
from signals.serving.catalog import verified_entry
from signals.serving.engine import Pending, SignalEngine
from signals.serving.market import MarketSnapshot

TOUCHED: Final = {0: "none", 1: "target_long", 2: "target_short", 3: "both"}
LABELS: Final = {0: "SHORT", 1: "NO_TRADE", 2: "LONG"}
# Every field of a signal that the candles and the model version decide; prediction_time and stale are the clock's.
COMPARED: Final = (
    "symbol",
    "timeframe",
    "direction",
    "confidence",
    "probabilities",
    "actionable",
    "abstain_reason",
    "edge",
    "break_even_hit_rate",
    "model_version",
    "model_accuracy",
    "model_accuracy_ci",
    "baseline_accuracy",
    "candle_time",
    "valid_until",
    "horizon_bars",
    "expires_at",
    "current_price",
    "levels",
    "data_source",
)


def _time(value: int | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(int(value), unit="ms", tz="UTC")


def history_item(row: SignalRecord) -> schemas.HistoryItem:
    outcome = None
    if row.get("resolved_ms") is not None:
        label, touched = row.get("outcome_label"), row.get("touched")
        outcome = schemas.Outcome(
            label=None if label is None else LABELS[int(label)],
            touched=None if touched is None else TOUCHED[int(touched)],
            bars_to_exit=row.get("bars_to_exit"),
            long_return=row.get("long_return"),
            short_return=row.get("short_return"),
            call_return=row.get("call_return"),
            resolved_at=_time(row.get("resolved_ms")),
            note=row.get("outcome_note"),
        )
    return schemas.HistoryItem(
        signal=signal_from_row(row), mode=row["mode"], recorded_at=_time(row["recorded_ms"]), outcome=outcome
    )


def history(ledger: Ledger, request: schemas.HistoryRequest) -> schemas.HistoryResponse:
    symbol = normalize_symbol(request.symbol)
    timeframe = None if request.timeframe is None else parse_timeframe(request.timeframe)
    modes = [request.mode] if request.mode else None
    rows = ledger.history(symbol, timeframe, limit=request.limit, modes=modes)
    return schemas.HistoryResponse(symbol=symbol, items=[history_item(row) for row in rows])


async def replay(engine: SignalEngine, ledger: Ledger, request: schemas.ReplayRequest) -> schemas.ReplayResponse:
    symbol, timeframe = normalize_symbol(request.symbol), parse_timeframe(request.timeframe)
    served = engine.catalog.served_cnn(symbol, timeframe)  # prefer the served model's record of that candle
    when = ms(request.candle_time)
    row = ledger.signal_at(symbol, timeframe, when, model_name=None if served is None else served.name)
    if row is None:
        raise ModelNotFound(f"no recorded signal for {symbol} {timeframe} at {request.candle_time.isoformat()}")
    candle_time = pd.Timestamp(when, unit="ms", tz="UTC")  # recorded: within pandas' range
    recorded = signal_from_row(row)
    tag = f"{row['model_name']}:{row['model_version']}"
    family = family_of_store_name(str(row["model_name"])) or CNN_LSTM  # the family that recorded it
    entry = verified_entry(family, tag, symbol, timeframe, {})
    if entry.error is not None:
        raise ModelIntegrityError(f"the recorded model version {tag} is unavailable: {entry.error}")
    market = engine.market
    candles = market.store.read(market.exchange_id, symbol, timeframe)
    upto = candles.loc[candles["timestamp"] <= candle_time].iloc[-SERVING_TAIL:].reset_index(drop=True)
    if upto.empty or upto["timestamp"].iloc[-1] != candle_time:
        raise ModelNotFound(f"the store holds no {timeframe} candle for {symbol} at {candle_time.isoformat()}")
    snapshot = MarketSnapshot(upto, recorded.data_source, None)
    item = Pending(entry, snapshot, await engine.window(entry, snapshot, history=True))
    # Probation is the live record's verdict at that time, not the candles': a paper call is rebuilt as withheld.
    withheld = recorded.abstain_reason if row.get("paper") else None
    at = pd.Timestamp(recorded.prediction_time)
    (rebuilt,) = await engine.compute([item], withheld=[withheld], at=[at])
    if rebuilt is None:
        raise ModelIntegrityError(f"the CNN-LSTM runner could not load {tag}; see /status")
    left, right = recorded.model_dump(mode="python"), rebuilt.model_dump(mode="python")
    differences = [
        schemas.Difference(field=name, recorded=_plain(left[name]), rebuilt=_plain(right[name]))
        for name in COMPARED
        if not _equal(left[name], right[name])
    ]
    features_match = window_hash(item.window) == row["features_hash"]
    return schemas.ReplayResponse(
        recorded=recorded,
        rebuilt=rebuilt,
        match=not differences and features_match,
        features_match=features_match,
        differences=differences,
        compared=list(COMPARED),
    )


def _equal(left: Any, right: Any) -> bool:
    """Exact equality, floats bit for bit (NaN equal to NaN), recursively through dicts and lists."""
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (np.isnan(left) and np.isnan(right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
