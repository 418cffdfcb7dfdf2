"""Scoring stored CNN-LSTMs on candles they were not trained on (another period, another store).

Each model is scored with its own horizon, stop, temperature, threshold and costs, exactly as it would serve:
the same samples, labels and `skill.score` as the walk-forward at training time, so the figures compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from signals.features.labels import round_trip_cost
from signals.models.cnn_lstm.artifact import CnnLstmPredictor
from signals.models.cnn_lstm.dataset import build_samples
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


def cost_of(predictor: CnnLstmPredictor) -> float:
    costs = predictor.stored.metadata.get("costs", {})
    return float(costs.get("round_trip", round_trip_cost(0.001, 0.0005)))


def evaluate_model(predictor: CnnLstmPredictor, candles: pd.DataFrame) -> Evaluation:
    """Score one stored model on `candles` of its own (symbol, timeframe)."""
    meta = predictor.stored.metadata
    symbol, timeframe = str(meta["symbol"]), str(meta["timeframe"])
    samples = build_samples({symbol: candles}, timeframe, predictor.horizon, predictor.stop_atr)
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
