"""Training an installed model family (`models.plugin`) with the project's recipe: the family only fits.

The same samples, labels, walk-forward blocks, purge and embargo, confirmation block, calibration and health checks
as the CNN-LSTM (`models.cnn_lstm.training`, whose helpers this reuses), for one timeframe pooled over its pairs:
1. samples of every pair (`dataset.build_samples`), the family's rows cut from the same windows
   (`features.registry.select`);
2. the newest `confirm_share` held back; folds, threshold and the served fit use only what ended before it;
3. per walk-forward block: `plugin.fit` on everything labelled before it (minus the embargo), a temperature and an
   abstention threshold chosen on its validation stretch, then scored once on the block;
4. the served fit on everything before the confirmation block, scored once on it.
The universe-wide rule and the store are the pipeline's (`pipelines.train_family_models`, `save_family_models`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import pandas as pd

from signals.core.timeframes import iso_z, parse_timeframe, timeframe_seconds
from signals.core.vocab import CLASS_NAMES
from signals.features.cnn import LOOKBACK
from signals.features.labels import break_even_hit_rate
from signals.features.registry import select
from signals.models.cnn_lstm.dataset import NS, Samples, build_samples, fold_edges, labelled_before, split_validation
from signals.models.cnn_lstm.dataset import within as within_block
from signals.models.cnn_lstm.training import (
    FLAT_SHARPNESS,
    SINGLE_CLASS_SHARE,
    TrainConfig,
    TrainingResult,
    _pair_risk,
    _span,
    _walk_forward_report,
    confirmation_start,
    fit_temperature,
)
from signals.models.evidence import Confirmation
from signals.models.plugin import (
    CALIBRATION_FILE,
    FamilyPlugin,
    Learner,
    TrainingData,
    calibrated,
    input_contract,
    reads_context,
)
from signals.models.plugin import model_name as family_model_name
from signals.models.registry import StoredModel, library_versions, save_model
from signals.models.skill import calls_of, choose_threshold, score


@dataclass
class FamilyFit:
    """A learner fitted on one training stretch, calibrated and thresholded on its validation stretch."""

    learner: Learner
    temperature: float
    threshold: float | None
    validation: dict[str, Any]
    train_samples: int
    val_samples: int


@dataclass
class FamilyTrainingResult:
    """One timeframe of an installed family as trained: what the rule reads and what the store keeps."""

    family: str
    timeframe: str
    symbols: list[str]
    fit: FamilyFit
    train_config: TrainConfig
    horizon: int
    walk_forward: dict[str, Any]
    break_even: dict[str, float]
    health: list[str]
    data_range: dict[str, Any]
    confirmation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    # the universe rule reads a family's result exactly as it reads a CNN-LSTM's (the same three answers)
    def pair_edge(self, symbol: str) -> dict[str, Any]:
        return TrainingResult.pair_edge(cast(TrainingResult, self), symbol)

    @property
    def pooled_verdict(self) -> str:
        return TrainingResult.pooled_verdict.fget(cast(TrainingResult, self))  # type: ignore[attr-defined]

    def pair_confirmation(self, symbol: str) -> Confirmation:
        return TrainingResult.pair_confirmation(cast(TrainingResult, self), symbol)


ROWS_CHUNK: Final = 20_000  # samples whose windows are cut at once: a pooled timeframe's windows would not fit memory


def rows_of(plugin: FamilyPlugin, samples: Samples, index: np.ndarray) -> np.ndarray:
    """The family's rows of the samples at `index` (`features.registry.select`), cut from their windows a chunk at
    a time (each row is computed from its own window alone: the same bits as one batch)."""
    names = list(plugin.features)
    parts = [
        select(samples.windows(index[at : at + ROWS_CHUNK]), names, plugin.lookback)
        for at in range(0, len(index), ROWS_CHUNK)
    ]
    return np.concatenate(parts) if parts else select(samples.windows(index), names, plugin.lookback)


def _data(plugin: FamilyPlugin, samples: Samples, index: np.ndarray) -> TrainingData:
    names = tuple(plugin.features)
    return TrainingData(rows_of(plugin, samples, index), samples.labels[index], names, plugin.lookback)


def predict(fitted: FamilyFit, plugin: FamilyPlugin, samples: Samples, index: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of the samples at `index` (float32 rounding, as served)."""
    if len(index) == 0:
        return np.empty((0, len(CLASS_NAMES)), np.float32)
    return calibrated(fitted.learner.predict_proba(rows_of(plugin, samples, index)), fitted.temperature)


def fit_family(
    plugin: FamilyPlugin, samples: Samples, train: np.ndarray, val: np.ndarray, config: TrainConfig
) -> FamilyFit:
    """`plugin.fit` on `train`, then a temperature and an abstention threshold on `val` only."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"{len(train)} training and {len(val)} validation samples: too few; give more bars")
    val_data = _data(plugin, samples, val)
    learner = plugin.fit(_data(plugin, samples, train), val_data, seed=config.seed)
    raw = np.asarray(learner.predict_proba(val_data.x), dtype=np.float64)
    labels = samples.labels[val]
    temperature = fit_temperature(np.log(np.clip(raw, 1e-12, 1.0)), labels)
    probabilities = calibrated(raw, temperature).astype(np.float64)
    scored = samples.subset(val).scored(probabilities)
    threshold = choose_threshold(probabilities, scored.long_return, scored.short_return, config.cost)
    predicted = probabilities.argmax(axis=1)
    validation = {
        "n": int(len(val)),
        "log_loss": float(-np.log(np.clip(probabilities[np.arange(len(val)), labels], 1e-12, 1)).mean()),
        "sharpness": float(probabilities.max(axis=1).std()),
        "largest_class_share": float(np.bincount(predicted, minlength=3).max() / max(len(predicted), 1)),
        "temperature": temperature,
    }
    return FamilyFit(learner, temperature, threshold, validation, int(len(train)), int(len(val)))


def health_issues(fitted: FamilyFit) -> list[str]:
    issues = []
    if fitted.validation["sharpness"] < FLAT_SHARPNESS:
        issues.append(f"flat probabilities on validation (sharpness {fitted.validation['sharpness']:.4f})")
    if fitted.validation["largest_class_share"] >= SINGLE_CLASS_SHARE:
        issues.append(f"predicts one class for {fitted.validation['largest_class_share']:.0%} of validation samples")
    return issues


def train_family(
    plugin: FamilyPlugin,
    candles: Mapping[str, pd.DataFrame],
    timeframe: str,
    config: TrainConfig | None = None,
    *,
    higher: Mapping[str, Mapping[str, pd.DataFrame]] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> FamilyTrainingResult:
    """Walk-forward evaluation, then the served fit, of `plugin` for one timeframe over the given pairs (pooled).
    A family that reads the market context gets it over these pairs and `higher` (timeframe -> symbol -> candles:
    `features.context.HIGHER_TIMEFRAMES`)."""
    config = config or TrainConfig()
    timeframe = parse_timeframe(timeframe)
    started = time.perf_counter()
    stage = on_stage or (lambda _: None)
    if config.max_bars is not None:
        candles = {s: c.iloc[-config.max_bars :].reset_index(drop=True) for s, c in candles.items()}
    horizon = config.horizon_for(timeframe)
    context = reads_context(plugin)
    stride = config.stride_for(timeframe)
    samples = build_samples(candles, timeframe, horizon, config.stop_atr, stride=stride, context=context, higher=higher)
    evaluation = (
        build_samples(candles, timeframe, horizon, config.stop_atr, context=context, higher=higher)
        if config.stride_for(timeframe) > 1
        else samples
    )
    embargo_ns = LOOKBACK * timeframe_seconds(timeframe) * NS  # the CNN-LSTM's: a window's length
    confirm_start = confirmation_start(evaluation, config.confirm_share)
    if confirm_start is None:
        development, development_eval = np.arange(len(samples)), np.arange(len(evaluation))
    else:
        development = labelled_before(samples, confirm_start, embargo_ns)
        development_eval = labelled_before(evaluation, confirm_start, embargo_ns)
    edges = fold_edges(evaluation.subset(development_eval), folds=config.folds, test_share=config.test_share)
    folds: list[dict[str, Any]] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for number, (test_start, test_end) in enumerate(edges, start=1):
        stage(f"fold {number}/{len(edges)}")
        train, val = split_validation(
            samples, labelled_before(samples, test_start, embargo_ns), config.val_share, embargo_ns
        )
        test = within_block(evaluation, test_start, test_end)
        if min(len(train), len(val), len(test)) == 0:
            folds.append({"fold": number, "skipped": "too few samples before or inside this block"})
            continue
        fitted = fit_family(plugin, samples, train, val, config)
        probabilities = predict(fitted, plugin, evaluation, test).astype(np.float64)
        calls = calls_of(probabilities, fitted.threshold)
        parts.append((test, probabilities, calls))
        fold_score = score(evaluation.subset(test).scored(probabilities), threshold=None, calls=calls, cost=config.cost)
        folds.append(
            {
                "fold": number,
                "train": _span(samples, train),
                "test": _span(evaluation, test),
                "threshold": fitted.threshold,
                "accuracy": fold_score["accuracy"],
                "majority_share": fold_score["majority_share"],
                "calls": fold_score["calls"]["n"],
                "expectancy": fold_score["calls"]["expectancy"],
            }
        )
    walk_forward = _walk_forward_report(evaluation, parts, config, folds)
    stage("final fit")
    train, val = split_validation(samples, development, config.val_share, embargo_ns)
    final = fit_family(plugin, samples, train, val, config)
    confirmation = _confirmation(plugin, final, evaluation, confirm_start, config)
    break_even = {}
    for p, series in enumerate(samples.pairs):
        risk = _pair_risk(samples, p, train, val)
        break_even[series.symbol] = break_even_hit_rate(float(np.nanmedian(risk)) if len(risk) else np.nan, config.cost)
    health = health_issues(final)
    if walk_forward["pooled"].get("n", 0) < 100:
        health.append(f"only {walk_forward['pooled'].get('n', 0)} walk-forward test samples")
    return FamilyTrainingResult(
        family=plugin.name,
        timeframe=timeframe,
        symbols=samples.symbols,
        fit=final,
        train_config=config,
        horizon=horizon,
        walk_forward=walk_forward,
        break_even=break_even,
        health=health,
        data_range={"train": _span(samples, train), "val": _span(samples, val), "confirmation": confirmation["span"]},
        confirmation=confirmation,
        seconds=time.perf_counter() - started,
    )


def _confirmation(
    plugin: FamilyPlugin, final: FamilyFit, evaluation: Samples, start_ns: int | None, config: TrainConfig
) -> dict[str, Any]:
    """The served fit scored once on the confirmation block, with its own threshold, pooled and per pair."""
    block = np.empty(0, np.int64) if start_ns is None else np.flatnonzero(evaluation.time_ns >= start_ns)
    if len(block) == 0:
        span: dict[str, Any] = {"first": None, "last": None, "samples": 0}
        if start_ns is not None:
            span["start"] = iso_z(pd.Timestamp(start_ns, tz="UTC"))
        return {"span": span, "pooled": {"n": 0}, "pairs": {}}
    probabilities = predict(final, plugin, evaluation, block).astype(np.float64)
    calls = calls_of(probabilities, final.threshold)
    scored = evaluation.subset(block).scored(probabilities)
    report: dict[str, Any] = {
        "span": {**_span(evaluation, block), "start": iso_z(pd.Timestamp(int(start_ns or 0), tz="UTC"))},
        "pooled": score(scored, threshold=None, calls=calls, cost=config.cost),
        "pairs": {},
    }
    for p, symbol in enumerate(evaluation.symbols):
        mine = evaluation.pair[block] == p
        if mine.any():
            pair_score = score(scored.subset(mine), threshold=None, calls=calls[mine], cost=config.cost)
            report["pairs"][symbol] = {**pair_score, "span": _span(evaluation, block[mine])}
    return report


def _compact(scores: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in scores.items() if key not in ("reliability", "coverage")}


def save_family_models(
    plugin: FamilyPlugin,
    result: FamilyTrainingResult,
    *,
    exchange: str,
    edges: Mapping[str, dict[str, Any]],
) -> list[StoredModel]:
    """One new store version per pair (`<family>-<base>-<quote>-<tf>`): the family's files plus the calibration,
    hashed (and signed with a key) by `registry.save_model`; `edges` are the universe rule's final verdicts."""
    files = dict(plugin.save(result.fit.learner))
    if CALIBRATION_FILE in files:
        raise ValueError(f"family {plugin.name!r} wrote {CALIBRATION_FILE!r}: that name is the server's")
    calibration = {"temperature": result.fit.temperature, "threshold": result.fit.threshold}
    config = result.train_config
    writers = {name: _writer(data) for name, data in files.items()}
    writers[CALIBRATION_FILE] = _writer(json.dumps(calibration, indent=2, sort_keys=True).encode())
    stored = []
    for symbol in result.symbols:
        metadata: dict[str, Any] = {
            "family": plugin.name,
            "symbol": symbol,
            "timeframe": result.timeframe,
            "class_names": list(CLASS_NAMES),
            **input_contract(plugin),
            "horizon": result.horizon,
            "stop_atr": config.stop_atr,
            "target_r": 1.0,
            "costs": {"fee": config.fee, "slippage": config.slippage, "round_trip": config.cost},
            "card": json.loads(json.dumps(dict(plugin.card()))),
            "training": {
                **config.model_dump(mode="json"),
                "horizon": result.horizon,
                "pooled_symbols": result.symbols,
                "train_samples": result.fit.train_samples,
                "val_samples": result.fit.val_samples,
                "seconds": round(result.seconds, 2),
                "validation": result.fit.validation,
            },
            "data_source": {"exchange": exchange, "kind": "candle-store"},
            "data_range": result.data_range,
            **calibration,
            "break_even_hit_rate": result.break_even.get(symbol),
            "edge": edges[symbol],
            "health": result.health,
            "metrics": _compact(result.walk_forward.get("pairs", {}).get(symbol, {"n": 0})),
            "walk_forward": {
                "pooled": _compact(result.walk_forward.get("pooled", {})),
                "folds": result.walk_forward.get("folds", []),
            },
            "confirmation": {
                "span": result.confirmation.get("span", {}),
                "pooled": _compact(result.confirmation.get("pooled", {"n": 0})),
                "pair": _compact(result.confirmation.get("pairs", {}).get(symbol, {"n": 0})),
            },
            "library_versions": library_versions(),
        }
        stored.append(
            save_model(
                family_model_name(plugin.name, symbol, result.timeframe),
                labels={"family": plugin.name, "symbol": symbol, "timeframe": result.timeframe},
                files=writers,
                metadata=metadata,
            )
        )
    return stored


def _writer(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write
