"""The gradient-boosted family through the public seam (`models.plugin`): the first family the server finds by its
entry point (`signals.families`: `gbm = "signals.models.gbm.plugin:GbmPlugin"` in pyproject.toml), not by name.

LightGBM on one row per sample (`features.registry`): the CNN-LSTM's 15 features at the bar, the market context's
15 columns at the bar (NaN where unknown: LightGBM's missing-value branches), and the 15 features' means over the
60-bar window. Trained, calibrated, stored, served and replayed by the server's recipe and runner like any
installed family; the artifact is LightGBM's own text format plus a JSON note (no pickle). `lightgbm` is imported
only to fit or load, so discovery costs nothing. `GbmPlugin(context=False)` reads no context (the comparison's
"GBM alone", `bench.family_compare`): the same learner and recipe on the other 30 columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from signals.features.cnn import FEATURE_NAMES
from signals.features.context import CONTEXT_NAMES
from signals.features.registry import SUMMARY_FEATURES

if TYPE_CHECKING:
    import lightgbm as lgb

    from signals.models.plugin import TrainingData

MODEL_FILE: Final = "model.txt"
NOTE_FILE: Final = "gbm.json"


class GbmParams(BaseModel):
    """The learner's hyper-parameters: fixed, conservative, never chosen on a test fold or the confirmation block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_leaves: int = Field(default=15, ge=2)
    learning_rate: float = Field(default=0.05, gt=0)
    max_rounds: int = Field(default=400, ge=1)
    early_stopping: int = Field(default=30, ge=1, description="Rounds without a better validation log-loss.")
    min_child_samples: int = Field(default=200, ge=1)
    feature_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    lambda_l2: float = Field(default=1.0, ge=0)
    num_threads: int = Field(default=1, ge=1)

    def lightgbm(self, seed: int) -> dict[str, Any]:
        return {
            "objective": "multiclass",
            "num_class": 3,
            "metric": "multi_logloss",
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


@dataclass(frozen=True)
class Booster:
    """A fitted booster: raw multi-class scores of its best iteration, as probabilities (float64)."""

    booster: lgb.Booster
    best_iteration: int

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.booster.predict(x, raw_score=True, num_iteration=self.best_iteration), np.float64)
        raw = raw - raw.max(axis=1, keepdims=True)
        exp = np.exp(raw)
        return exp / exp.sum(axis=1, keepdims=True)


class GbmPlugin:
    """LightGBM, multi-class log-loss, early stopping on the validation stretch the server hands `fit`."""

    name = "gbm"
    lookback = 1

    def __init__(self, *, context: bool = True, params: GbmParams | None = None) -> None:
        """The entry point's instance reads the context with `GbmParams()` (the server instantiates it bare)."""
        self.params, self.context = params or GbmParams(), context
        context_names = CONTEXT_NAMES if context else ()
        self.features: tuple[str, ...] = (*FEATURE_NAMES, *context_names, *SUMMARY_FEATURES)  # the row's columns

    def fit(self, train: TrainingData, val: TrainingData, *, seed: int) -> Booster:
        import lightgbm as lgb

        params = self.params
        train_set = lgb.Dataset(train.x, train.y, free_raw_data=True)
        val_set = lgb.Dataset(val.x, val.y, reference=train_set)
        booster = lgb.train(
            params.lightgbm(seed),
            train_set,
            num_boost_round=params.max_rounds,
            valid_sets=[val_set],
            callbacks=[lgb.early_stopping(params.early_stopping, verbose=False)],
        )
        return Booster(booster, int(booster.best_iteration or booster.current_iteration()))

    def save(self, learner: Booster) -> Mapping[str, bytes]:
        text = learner.booster.model_to_string(num_iteration=learner.best_iteration)
        note = {"best_iteration": learner.best_iteration, "features": list(self.features)}
        return {MODEL_FILE: text.encode(), NOTE_FILE: json.dumps(note, indent=2).encode()}

    def load(self, files: Mapping[str, bytes]) -> Booster:
        import lightgbm as lgb

        note = json.loads(files[NOTE_FILE])
        if note.get("features") != list(self.features):
            raise ValueError(f"{NOTE_FILE} lists other features than this family reads; re-train it")
        booster = lgb.Booster(model_str=files[MODEL_FILE].decode())
        if booster.num_feature() != len(self.features):
            raise ValueError(f"{MODEL_FILE} reads {booster.num_feature()} features, not {len(self.features)}")
        return Booster(booster, int(note["best_iteration"]))

    def card(self) -> Mapping[str, Any]:
        from importlib.metadata import version

        return {
            "description": "LightGBM on the CNN-LSTM's features at the bar and their 60-bar means"
            + (" and the market context" if self.context else ""),
            "hyperparameters": self.params.model_dump(mode="json"),
            "library": {"lightgbm": version("lightgbm")},
        }
