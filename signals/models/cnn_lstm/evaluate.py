"""Scoring a stored CNN-LSTM on candles it was not trained on (another period, another store)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from signals.core.vocab import CLASS_NAMES
from signals.models.cnn_lstm.artifact import CnnLstmPredictor
from signals.models.cnn_lstm.training import LabelledWindows, build_windows
from signals.models.metrics import classification_metrics


def score_on_candles(predictor: CnnLstmPredictor, candles: pd.DataFrame) -> dict[str, Any]:
    """Re-score a stored model on other candles with its own horizon / threshold: accuracy, baseline, ECE.

    The baseline is the model's train-majority class (as at training time); the data's own majority share
    is reported beside it.
    """
    data: LabelledWindows = build_windows(candles, predictor.horizon, predictor.threshold_atr)
    metrics = predictor.stored.metadata.get("metrics", {})
    baseline_name = metrics.get("baseline_class", CLASS_NAMES[1])
    baseline = CLASS_NAMES.index(baseline_name) if baseline_name in CLASS_NAMES else 1
    if len(data) == 0:
        return {"samples": 0}
    return classification_metrics(data.labels, predictor.predict_proba(data.windows), baseline_class=baseline)
