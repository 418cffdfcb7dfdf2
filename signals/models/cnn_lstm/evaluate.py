"""Scoring stored CNN-LSTMs on candles they were not trained on (another period, another store).

Each model is scored with its own horizon, stop, temperature, threshold and costs, exactly as it would serve:
the same samples, labels and `skill.score` as the walk-forward at training time, so the figures compare.
Samples whose window or label reaches into the bars the model was fitted or calibrated on are purged: a score on
them would be a score on training data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from signals.core.timeframes import timeframe_seconds
from signals.data.store import CandleStore
from signals.features.cnn import LOOKBACK
from signals.features.context import higher_candles
from signals.features.labels import round_trip_cost
from signals.models.card import ModelCard
from signals.models.cnn_lstm.artifact import CnnLstmPredictor
from signals.models.cnn_lstm.dataset import NS, Samples, build_samples
from signals.models.plugin import FamilyModel, reads_context
from signals.models.skill import Scored, calls_of, score


@dataclass(frozen=True)
class Evaluation:
    """One model's scores on some candles, and its samples for pooling with others of its timeframe."""

    tag: str
    symbol: str
    timeframe: str
    scores: dict[str, Any]
    scored: Scored
    calls: np.ndarray
    cost: float
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    purged: int


def cost_of(predictor: CnnLstmPredictor | FamilyModel) -> float:
    found = predictor.stored.card.round_trip_cost
    return round_trip_cost(0.001, 0.0005) if found is None else found


def fitted_span_ns(card: ModelCard) -> tuple[int, int] | None:
    """The open times of the first training and the last validation sample, from the stored `data_range`."""
    ranges = card.data_range
    try:
        first, last = ranges["train"]["first"], ranges["val"]["last"] or ranges["train"]["last"]
    except (KeyError, TypeError):
        return None
    if not first or not last:
        return None
    return pd.Timestamp(first).value, pd.Timestamp(last).value


def outside_fitted(samples: Samples, card: ModelCard) -> np.ndarray:
    """Indices of the samples that share no bar (window or label horizon) with any fitted sample's."""
    span = fitted_span_ns(card)
    if span is None:
        return np.arange(len(samples))
    step_ns = timeframe_seconds(samples.timeframe) * NS
    reach_ns = (samples.horizon + LOOKBACK) * step_ns
    first, last = span
    keep = (samples.time_ns + reach_ns < first) | (samples.time_ns - reach_ns > last)
    return np.flatnonzero(keep)


def evaluate_model(
    predictor: CnnLstmPredictor | FamilyModel,
    candles: pd.DataFrame,
    *,
    store: CandleStore | None = None,
    exchange: str | None = None,
) -> Evaluation:
    """Score one stored model (a CNN-LSTM, or an installed family's: both answer windows) on `candles` of its own
    (symbol, timeframe), outside the bars it was fitted on. A family that reads the market context gets it over its
    training universe and its higher timeframes, read from `store` (the windows training and serving build)."""
    card = predictor.stored.card
    symbol, timeframe = str(card.symbol), str(card.timeframe)
    context: dict[str, Any] = {}
    if isinstance(predictor, FamilyModel) and reads_context(predictor.plugin):
        if store is None or exchange is None:
            raise ValueError(f"model {predictor.tag} reads the market context: give the candle store")
        universe = {s: store.read_or_empty(exchange, s, timeframe) for s in predictor.universe}
        universe = {s: frame for s, frame in universe.items() if len(frame)} | {symbol: candles}
        higher = higher_candles(lambda s, tf: store.read_or_empty(exchange, s, tf), universe, timeframe)
        context = {"context": True, "universe": universe, "higher": higher}
    every = build_samples({symbol: candles}, timeframe, predictor.horizon, predictor.stop_atr, **context)
    samples = every.subset(outside_fitted(every, card))
    probabilities = predictor.predict_proba(samples.windows()) if len(samples) else np.empty((0, 3), np.float32)
    scored = samples.scored(probabilities.astype(np.float64))
    calls = calls_of(probabilities, predictor.threshold)
    cost = cost_of(predictor)
    timestamps = candles["timestamp"]
    return Evaluation(
        tag=predictor.tag,
        symbol=symbol,
        timeframe=timeframe,
        scores=score(scored, threshold=predictor.threshold, calls=calls, cost=cost, seed=0),
        scored=scored,
        calls=calls,
        cost=cost,
        first=timestamps.iloc[0] if len(timestamps) else None,
        last=timestamps.iloc[-1] if len(timestamps) else None,
        purged=len(every) - len(samples),
    )


def pooled(evaluations: Sequence[Evaluation]) -> dict[str, Any]:
    """The scores of several models of one timeframe over all their samples together (blocks are calendar time)."""
    parts = [e for e in evaluations if len(e.scored)]
    if not parts:
        return {"n": 0}
    return score(
        Scored.concat([e.scored for e in parts]),
        threshold=None,
        calls=np.concatenate([e.calls for e in parts]),
        cost=float(np.mean([e.cost for e in parts])),
    )


def evaluate_models(
    predictors: Mapping[tuple[str, str], CnnLstmPredictor], candles: Mapping[tuple[str, str], pd.DataFrame]
) -> list[Evaluation]:
    """Every (symbol, timeframe) model that has candles, scored on them."""
    return [evaluate_model(predictor, candles[key]) for key, predictor in predictors.items() if key in candles]
