"""Training the gradient-boosted family with the CNN-LSTM's recipe, so that the two compare on the same folds.

The same samples (`cnn_lstm.dataset.build_samples`: the same bars, labels, gaps and stride), the same confirmation
block (the newest `confirm_share` of the samples, from one instant for every pair), the same walk-forward test
blocks with the same purge and embargo, the same validation stretch (the newest `val_share` of what a fold may
learn from): early stopping on the multi-class log-loss there, then a temperature on the raw scores and the
abstention threshold on that same stretch, never on a test block. The model reads one row per bar
(`features.tabular`): the CNN-LSTM's features at the bar and their window means, plus the market context.

Pure computation on in-memory frames (no store), seeded and deterministic (LightGBM's `deterministic` mode, one
thread count fixed by the caller).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from signals.core.timeframes import iso_z, parse_timeframe, timeframe_seconds
from signals.features.cnn import LOOKBACK
from signals.features.context import context_matrix, cross_section_of
from signals.features.labels import break_even_hit_rate
from signals.features.tabular import base_matrix, tabular_names
from signals.models.calibration import TEMPERATURE_BOUNDS, fit_temperature, softmax_with_temperature
from signals.models.cnn_lstm.dataset import (
    NS,
    Samples,
    build_samples,
    confirmation_start,
    fold_edges,
    labelled_before,
    split_validation,
    within,
)
from signals.models.evidence import Confirmation
from signals.models.skill import Interval, calls_of, choose_threshold, edge_of, score

if TYPE_CHECKING:  # the recipe's settings, shared with the CNN-LSTM (its module imports torch: only when training)
    from signals.models.cnn_lstm.training import TrainConfig

logger = logging.getLogger(__name__)

FLAT_SHARPNESS: Final = 0.01


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
    context: bool = Field(default=True, description="Read the market context features (features.context).")

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


@dataclass
class GbmFit:
    """A booster fitted on one training stretch, stopped and calibrated on its validation stretch."""

    booster: lgb.Booster
    temperature: float
    threshold: float | None
    best_iteration: int
    validation: dict[str, Any]
    train_samples: int
    val_samples: int

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        raw = self.booster.predict(rows, raw_score=True, num_iteration=self.best_iteration)
        return softmax_with_temperature(np.asarray(raw, dtype=np.float64), self.temperature)


@dataclass
class GbmTrainingResult:
    """One timeframe's pooled booster and everything the store and the comparison record about it."""

    timeframe: str
    symbols: list[str]
    fit: GbmFit
    params: GbmParams
    train_config: TrainConfig  # the CNN-LSTM's recipe settings: one recipe for both families
    feature_names: tuple[str, ...]
    horizon: int
    walk_forward: dict[str, Any]
    confirmation: dict[str, Any]
    break_even: dict[str, float]
    health: list[str]
    data_range: dict[str, Any]
    importance: dict[str, float]  # gain share per feature of the served booster
    seconds: float = 0.0
    folds: list[dict[str, Any]] = field(default_factory=list)

    def pair_edge(self, symbol: str) -> dict[str, Any]:
        scores = self.walk_forward.get("pairs", {}).get(symbol)
        if not scores or scores.get("n", 0) == 0:
            return {**edge_of(Interval(math.nan, math.nan, math.nan), 0, 0), "reason": "no walk-forward samples"}
        edge = dict(scores["edge"])
        if self.health and edge["verdict"] == "positive":
            edge["verdict"] = "none"
        if self.health:
            edge["reason"] = "; ".join(self.health)
        return edge

    @property
    def pooled_verdict(self) -> str:
        return str(self.walk_forward.get("pooled", {}).get("edge", {}).get("verdict", "insufficient_data"))

    def pair_confirmation(self, symbol: str) -> Confirmation:
        scores = self.confirmation.get("pairs", {}).get(symbol)
        if not scores or scores.get("n", 0) == 0:
            return Confirmation.of_edge(None, None, None)
        span = scores.get("span", {})
        return Confirmation.of_edge(scores.get("edge"), span.get("first"), span.get("last"))


class Rows:
    """The tabular rows of pooled samples, gathered on demand from each pair's row matrix."""

    def __init__(self, samples: Samples, matrices: Sequence[np.ndarray]) -> None:
        self.samples, self.matrices = samples, matrices

    def __call__(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), self.matrices[0].shape[1]), dtype=np.float64)
        pair, row = self.samples.pair[index], self.samples.row[index]
        for p in np.unique(pair):
            mine = pair == p
            out[mine] = self.matrices[p][row[mine]]
        return out


def pair_matrices(
    candles: Mapping[str, pd.DataFrame],
    timeframe: str,
    higher: Mapping[str, Mapping[str, pd.DataFrame]] | None,
    context: bool,
) -> list[np.ndarray]:
    """Each pair's (n_bars, n_features) rows, in `candles` order (the order `build_samples` numbers pairs)."""
    cross = cross_section_of(candles) if context else None
    out = []
    for symbol, frame in candles.items():
        base = base_matrix(frame)
        if context:
            mine = {tf: frames[symbol] for tf, frames in (higher or {}).items() if symbol in frames}
            base = np.hstack([base, context_matrix(symbol, timeframe, candles, mine, cross_section=cross)])
        out.append(base)
    return out


def fit_gbm(
    rows: Rows, samples: Samples, train: np.ndarray, val: np.ndarray, params: GbmParams, seed: int, cost: float
) -> GbmFit:
    """Boost on `train` with early stopping on `val`'s log-loss, then a temperature and a threshold on `val`."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"{len(train)} training and {len(val)} validation samples: too few for a fit")
    y_train, y_val = samples.labels[train], samples.labels[val]
    x_val = rows(val)
    train_set = lgb.Dataset(rows(train), y_train, free_raw_data=True)
    val_set = lgb.Dataset(x_val, y_val, reference=train_set)
    booster = lgb.train(
        params.lightgbm(seed),
        train_set,
        num_boost_round=params.max_rounds,
        valid_sets=[val_set],
        callbacks=[lgb.early_stopping(params.early_stopping, verbose=False)],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    raw = np.asarray(booster.predict(x_val, raw_score=True, num_iteration=best), dtype=np.float64)
    temperature = fit_temperature(raw, y_val)
    probabilities = softmax_with_temperature(raw, temperature)
    scored = samples.subset(val).scored(probabilities)
    threshold = choose_threshold(probabilities, scored.long_return, scored.short_return, cost)
    predicted = probabilities.argmax(axis=1)
    validation = {
        "n": int(len(val)),
        "log_loss": float(-np.log(np.clip(probabilities[np.arange(len(val)), y_val], 1e-12, 1)).mean()),
        "sharpness": float(probabilities.max(axis=1).std()),
        "largest_class_share": float(np.bincount(predicted, minlength=3).max() / max(len(predicted), 1)),
        "temperature": temperature,
        "best_iteration": best,
    }
    return GbmFit(booster, temperature, threshold, best, validation, int(len(train)), int(len(val)))


def train_gbm(
    candles: Mapping[str, pd.DataFrame],
    timeframe: str,
    higher: Mapping[str, Mapping[str, pd.DataFrame]] | None = None,
    config: TrainConfig | None = None,
    params: GbmParams | None = None,
) -> GbmTrainingResult:
    """Walk-forward evaluation, then the served fit, of one pooled booster for `timeframe` over `candles`.

    `higher`: higher-timeframe candles (timeframe -> symbol -> frame) for the context's `htf*` columns;
    `config`: the CNN-LSTM's `TrainConfig` (horizon, stop, costs, folds, shares, stride, seed; default: its
    defaults), so both families run one recipe."""
    from signals.models.cnn_lstm.training import TrainConfig

    config = config or TrainConfig()
    params = params or GbmParams()
    timeframe = parse_timeframe(timeframe)
    started = time.perf_counter()
    if config.max_bars is not None:
        candles = {s: c.iloc[-config.max_bars :].reset_index(drop=True) for s, c in candles.items()}
    horizon = config.horizon_for(timeframe)
    samples = build_samples(candles, timeframe, horizon, config.stop_atr, stride=config.stride_for(timeframe))
    stride = config.stride_for(timeframe)
    evaluation = build_samples(candles, timeframe, horizon, config.stop_atr) if stride > 1 else samples
    matrices = pair_matrices(candles, timeframe, higher, params.context)
    rows, eval_rows = Rows(samples, matrices), Rows(evaluation, matrices)
    embargo_ns = LOOKBACK * timeframe_seconds(timeframe) * NS  # the CNN-LSTM's: its window's length
    confirm_start = confirmation_start(evaluation, config.confirm_share)
    if confirm_start is None:
        development, development_eval = np.arange(len(samples)), np.arange(len(evaluation))
    else:
        development = labelled_before(samples, confirm_start, embargo_ns)
        development_eval = labelled_before(evaluation, confirm_start, embargo_ns)
    edges = fold_edges(evaluation.subset(development_eval), folds=config.folds, test_share=config.test_share)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    folds: list[dict[str, Any]] = []
    for number, (test_start, test_end) in enumerate(edges, start=1):
        train, val = split_validation(
            samples, labelled_before(samples, test_start, embargo_ns), config.val_share, embargo_ns
        )
        test = within(evaluation, test_start, test_end)
        if min(len(train), len(val), len(test)) == 0:
            folds.append({"fold": number, "skipped": "too few samples before or inside this block"})
            continue
        fitted = fit_gbm(rows, samples, train, val, params, config.seed, config.cost)
        probabilities = fitted.predict_proba(eval_rows(test))
        calls = calls_of(probabilities, fitted.threshold)
        parts.append((test, probabilities, calls))
        folds.append(
            {
                "fold": number,
                "train": _span(samples, train),
                "test": _span(evaluation, test),
                "best_iteration": fitted.best_iteration,
                "threshold": fitted.threshold,
                "temperature": fitted.temperature,
            }
        )
    walk_forward = _report(evaluation, parts, config.cost)
    train, val = split_validation(samples, development, config.val_share, embargo_ns)
    final = fit_gbm(rows, samples, train, val, params, config.seed, config.cost)
    confirmation = _confirmation(final, evaluation, eval_rows, confirm_start, config.cost)
    names = tabular_names(params.context)
    gains = final.booster.feature_importance("gain", iteration=final.best_iteration)
    total = float(gains.sum()) or 1.0
    importance = {name: float(g) / total for name, g in zip(names, gains, strict=True)}
    break_even = {}
    for p, series in enumerate(samples.pairs):
        risk = series.outcomes.risk[samples.row[train][samples.pair[train] == p]]
        if not len(risk):
            risk = series.outcomes.risk[samples.row[samples.pair == p]]
        break_even[series.symbol] = break_even_hit_rate(float(np.nanmedian(risk)) if len(risk) else np.nan, config.cost)
    return GbmTrainingResult(
        timeframe=timeframe,
        symbols=samples.symbols,
        fit=final,
        params=params,
        train_config=config,
        feature_names=names,
        horizon=horizon,
        walk_forward=walk_forward,
        confirmation=confirmation,
        break_even=break_even,
        health=health_issues(final, walk_forward),
        data_range={"train": _span(samples, train), "val": _span(samples, val), "confirmation": confirmation["span"]},
        importance=importance,
        seconds=time.perf_counter() - started,
        folds=folds,
    )


def health_issues(fitted: GbmFit, walk_forward: Mapping[str, Any]) -> list[str]:
    """Why a fitted booster must not be trusted, in plain words (empty when none applies)."""
    issues = []
    v = fitted.validation
    if v["sharpness"] < FLAT_SHARPNESS:
        issues.append(f"flat probabilities on validation (sharpness {v['sharpness']:.4f})")
    if np.isclose(fitted.temperature, TEMPERATURE_BOUNDS[1], rtol=1e-3):
        issues.append(f"temperature at its bound ({TEMPERATURE_BOUNDS[1]:g}): the scores carry no information")
    if walk_forward.get("pooled", {}).get("n", 0) < 100:
        issues.append(f"only {walk_forward.get('pooled', {}).get('n', 0)} walk-forward test samples")
    return issues


def _report(evaluation: Samples, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cost: float) -> dict[str, Any]:
    """Scores over every out-of-sample test prediction, pooled and per pair; each fold's threshold made its calls."""
    if not parts:
        return {"pooled": {"n": 0}, "pairs": {}}
    index = np.concatenate([p[0] for p in parts])
    probabilities = np.concatenate([p[1] for p in parts])
    calls = np.concatenate([p[2] for p in parts])
    return _scores(evaluation, index, probabilities, calls, cost)


def _scores(
    evaluation: Samples, index: np.ndarray, probabilities: np.ndarray, calls: np.ndarray, cost: float
) -> dict[str, Any]:
    scored = evaluation.subset(index).scored(probabilities)
    report: dict[str, Any] = {"pooled": score(scored, threshold=None, calls=calls, cost=cost), "pairs": {}}
    for p, symbol in enumerate(evaluation.symbols):
        mine = evaluation.pair[index] == p
        if mine.any():
            pair_score = score(scored.subset(mine), threshold=None, calls=calls[mine], cost=cost)
            report["pairs"][symbol] = {**pair_score, "span": _span(evaluation, index[mine])}
    return report


def _confirmation(final: GbmFit, evaluation: Samples, rows: Rows, start_ns: int | None, cost: float) -> dict[str, Any]:
    """The served booster scored once on the confirmation block, with its own threshold."""
    if start_ns is None:
        return {"span": {"first": None, "last": None, "samples": 0}, "pooled": {"n": 0}, "pairs": {}}
    block = np.flatnonzero(evaluation.time_ns >= start_ns)
    span = {**_span(evaluation, block), "start": iso_z(pd.Timestamp(start_ns, tz="UTC"))}
    if len(block) == 0:
        return {"span": span, "pooled": {"n": 0}, "pairs": {}}
    probabilities = final.predict_proba(rows(block))
    return {"span": span, **_scores(evaluation, block, probabilities, calls_of(probabilities, final.threshold), cost)}


def _span(samples: Samples, index: np.ndarray) -> dict[str, Any]:
    if len(index) == 0:
        return {"first": None, "last": None, "samples": 0}
    times = samples.time_ns[index]
    return {
        "first": iso_z(pd.Timestamp(int(times.min()), tz="UTC")),
        "last": iso_z(pd.Timestamp(int(times.max()), tz="UTC")),
        "samples": int(len(index)),
    }
