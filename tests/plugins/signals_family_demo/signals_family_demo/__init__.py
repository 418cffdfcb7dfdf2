"""A model family installed as its own package: multinomial logistic regression over the last closed candle's
returns, RSI and ATR, fitted by full-batch gradient descent in numpy; its artifact is one JSON file.

It implements `signals.models.plugin.FamilyPlugin`; the server does everything else (walk-forward, calibration,
gate, store, runner, ledger, replay). docs/add-a-model-family.md walks through it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from signals.models.plugin import TrainingData

ARTIFACT = "logreg.json"


@dataclass
class LogisticRegression:
    """Standardised inputs -> softmax(x W + b)."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray  # (columns, 3)
    bias: np.ndarray  # (3,)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, dtype=np.float64) - self.mean) / self.std) @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)


class DemoFamily:
    name = "demo-logreg"
    features = ("log_return_1", "log_return_4", "rsi_14", "natr_14")
    lookback = 1
    steps = 200
    learning_rate = 0.5
    l2 = 1e-3

    def fit(self, train: TrainingData, val: TrainingData, *, seed: int) -> LogisticRegression:
        x, y = train.x, train.y
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
        xs = (x - mean) / std
        rng = np.random.default_rng(seed)
        model = LogisticRegression(mean, std, rng.normal(0, 0.01, (x.shape[1], 3)), np.zeros(3))
        target = np.eye(3)[y]
        for _ in range(self.steps):
            error = model.predict_proba(x) - target
            model.weights -= self.learning_rate * (xs.T @ error / len(x) + self.l2 * model.weights)
            model.bias -= self.learning_rate * error.mean(axis=0)
        return model

    def save(self, learner: LogisticRegression) -> Mapping[str, bytes]:
        data = {key: getattr(learner, key).tolist() for key in ("mean", "std", "weights", "bias")}
        return {ARTIFACT: json.dumps(data).encode()}

    def load(self, files: Mapping[str, bytes]) -> LogisticRegression:
        data = json.loads(files[ARTIFACT])
        keys = ("mean", "std", "weights", "bias")
        return LogisticRegression(*(np.asarray(data[key], dtype=np.float64) for key in keys))

    def card(self) -> Mapping[str, Any]:
        return {
            "description": "multinomial logistic regression, numpy, full-batch gradient descent",
            "hyperparameters": {"steps": self.steps, "learning_rate": self.learning_rate, "l2": self.l2},
            "library_versions": {"numpy": np.__version__},
        }


family = DemoFamily()
