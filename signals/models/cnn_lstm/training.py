"""Training a CNN-LSTM honestly: one network per timeframe over every pair's windows (pooled), walk-forward
evaluation against baselines, calibration and an abstention threshold chosen on validation only.

The recipe, for one timeframe:
1. Samples of every pair (`dataset.build_samples`): windows that span no data gap, labelled by the served trade
   plan (`features.labels`), optionally every k-th bar (`stride`).
2. Confirmation: the newest `confirm_share` of the samples (every pair together, from one instant on) is held
   back. Everything below (folds, threshold, search, the served fit) uses only samples whose label ended before it
   (minus the embargo); the served model is scored on it once, at the end, with its own threshold
   (`models.evidence` reads that score).
3. Walk-forward: the last `test_share` of the calendar span before the confirmation block is cut into `folds`
   consecutive test blocks; for each, a network is fitted on everything whose label ended before the block (minus
   an embargo), with the last `val_share` of that as validation for early stopping, temperature and threshold, and
   then scored on the block. Test blocks are never used to choose anything.
   All blocks are calendar time, the same instants for every pair: a pair with a shorter history simply has no
   samples in the early ones.
4. The served network is fitted the same way on all samples before the confirmation block (validation = the
   newest `val_share` of them).
5. Each pair gets its own temperature (pooled one where its validation is thin), its walk-forward scores, and an
   edge verdict from the after-cost expectancy of its out-of-sample actionable calls; the final verdict comes from
   the universe-wide rule (`models.evidence`), applied by the pipeline across every model of the retrain.

Pure computation on in-memory frames (no store, no CLI), seeded and deterministic.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from signals.core.settings import Settings
from signals.core.timeframes import iso_z, parse_timeframe, timeframe_seconds
from signals.features.labels import break_even_hit_rate, round_trip_cost
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
from signals.models.cnn_lstm.network import CnnLstm, CnnLstmConfig, count_parameters
from signals.models.evidence import Confirmation
from signals.models.scaler import Scaler
from signals.models.skill import Interval, calls_of, choose_threshold, edge_of, score

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, float, float], None]
_SETTINGS: Final = Settings.model_fields  # the plan and its costs default to the server's settings
# Label horizon H (bars) per timeframe: long enough that most plans reach a barrier (NO_TRADE ~20-40 % on the
# 2024 candles), short enough that the plan is still "this candle's call". A stored hyper-parameter.
DEFAULT_HORIZONS: Final[dict[str, int]] = {"15m": 12, "1h": 10, "4h": 8, "1d": 6}
# 15m windows overlap almost entirely from one bar to the next: every 4th bar trains as well, 4x faster.
DEFAULT_STRIDES: Final[dict[str, int]] = {"15m": 4}
MIN_PAIR_VALIDATION: Final = 300  # a pair with fewer validation samples keeps the pooled temperature
# Health: a network whose calibrated probabilities barely move, or that predicts one class, has learned nothing.
FLAT_SHARPNESS: Final = 0.01
SINGLE_CLASS_SHARE: Final = 0.98


class TrainConfig(BaseModel):
    """Data, evaluation and optimisation settings of one training run (stored in the model metadata)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon: int | None = Field(default=None, ge=1, description="Label horizon in bars; None: DEFAULT_HORIZONS.")
    stop_atr: float = Field(default=_SETTINGS["stop_atr"].default, gt=0, description="Stop (= first target), ATRs.")
    fee: float = Field(default=_SETTINGS["fee"].default, ge=0, lt=0.1, description="Fee per side, of notional.")
    slippage: float = Field(default=_SETTINGS["slippage"].default, ge=0, lt=0.1, description="Slippage per side.")
    epochs: int = Field(default=12, ge=1)
    patience: int = Field(default=3, ge=1, description="Epochs without a better validation loss before stopping.")
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    seed: int = 0
    max_bars: int | None = Field(default=None, ge=1, description="Use only each pair's most recent bars.")
    stride: int | None = Field(default=None, ge=1, description="Keep every k-th bar; None: DEFAULT_STRIDES.")
    val_share: float = Field(default=0.15, gt=0, lt=0.5)
    folds: int = Field(default=4, ge=0, le=12, description="Walk-forward test blocks (0: no walk-forward).")
    test_share: float = Field(default=0.5, gt=0, lt=0.9, description="Share of the time span the folds test on.")
    search: bool = Field(default=False, description="Choose network and learning rate on fold 1's validation.")
    confirm_share: float = Field(
        default=0.2,
        ge=0,
        lt=0.5,
        description="Newest share of the time span held back from folds, search and the served fit; the served "
        "model is scored on it once (0: no confirmation block, so no edge can be positive).",
    )

    def horizon_for(self, timeframe: str) -> int:
        return self.horizon or DEFAULT_HORIZONS.get(parse_timeframe(timeframe), 8)

    def stride_for(self, timeframe: str) -> int:
        return self.stride or DEFAULT_STRIDES.get(parse_timeframe(timeframe), 1)

    @property
    def cost(self) -> float:
        return round_trip_cost(self.fee, self.slippage)


# The bounded search: a handful of shapes and rates, chosen by validation log-loss on the first fold only.
SEARCH_SPACE: Final[tuple[tuple[dict[str, Any], dict[str, Any]], ...]] = (
    ({}, {}),
    ({}, {"learning_rate": 3e-3}),
    ({"dropout": 0.4}, {}),
    ({"conv_channels": (32, 64), "lstm_hidden": 64}, {}),
    ({"pool": 1}, {}),
)


@dataclass
class Fit:
    """A network fitted on one training stretch and calibrated on its validation stretch."""

    network: CnnLstm
    scaler: Scaler
    temperature: float  # pooled, fitted on every pair's validation samples
    pair_temperatures: dict[str, float]
    threshold: float | None  # lowest confidence whose calls paid their costs on validation; None: none did
    history: list[dict[str, float]]
    best_epoch: int
    validation: dict[str, Any]  # health figures on validation
    train_samples: int
    val_samples: int

    def temperature_of(self, symbol: str) -> float:
        return self.pair_temperatures.get(symbol, self.temperature)


@dataclass
class TrainingResult:
    """A pooled network for one timeframe and everything the store records about it and about each pair."""

    timeframe: str
    symbols: list[str]
    fit: Fit
    net_config: CnnLstmConfig
    train_config: TrainConfig
    horizon: int
    walk_forward: dict[str, Any]  # {"pooled": score, "pairs": {symbol: score}, "folds": [...]}
    break_even: dict[str, float]  # symbol -> break-even hit rate of its plan
    health: list[str]  # reasons the network must not be trusted, empty when healthy
    data_range: dict[str, Any]
    search: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    # The served model on the held-back newest block: {"span", "pooled": score, "pairs": {symbol: score}}
    confirmation: dict[str, Any] = field(default_factory=dict)

    @property
    def network(self) -> CnnLstm:
        return self.fit.network

    @property
    def n_parameters(self) -> int:
        return count_parameters(self.fit.network)

    def pair_edge(self, symbol: str) -> dict[str, Any]:
        """The pair's edge from walk-forward, demoted when the network failed a health check."""
        scores = self.walk_forward.get("pairs", {}).get(symbol)
        if not scores or scores.get("n", 0) == 0:
            return {**edge_of_nothing(), "reason": "no walk-forward test samples for this pair"}
        edge = dict(scores["edge"])
        if self.health and edge["verdict"] == "positive":
            edge["verdict"] = "none"
        if self.health:
            edge["reason"] = "; ".join(self.health)
        return edge

    @property
    def pooled_verdict(self) -> str:
        """The walk-forward verdict of every pair of the timeframe together (the universe rule's veto)."""
        return str(self.walk_forward.get("pooled", {}).get("edge", {}).get("verdict", "insufficient_data"))

    def pair_confirmation(self, symbol: str) -> Confirmation:
        """The served model's calls on this pair's part of the confirmation block."""
        scores = self.confirmation.get("pairs", {}).get(symbol)
        if not scores or scores.get("n", 0) == 0:
            return Confirmation.of_edge(None, None, None)
        span = scores.get("span", {})
        return Confirmation.of_edge(scores.get("edge"), span.get("first"), span.get("last"))


def edge_of_nothing() -> dict[str, Any]:
    return edge_of(Interval(math.nan, math.nan, math.nan), 0, 0)


# --- fitting --------------------------------------------------------------------------------------------------
@contextmanager
def deterministic(seed: int) -> Iterator[torch.Generator]:
    """Seed numpy and torch and switch on deterministic algorithms; restores the global flag on exit."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.use_deterministic_algorithms(previous)


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights (n / (k * count)), so each class carries the same total loss."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = len(labels) / (n_classes * np.maximum(counts, 1.0))
    return np.where(counts > 0, weights, 0.0)


def predict_logits(
    network: CnnLstm, scaler: Scaler, samples: Samples, index: np.ndarray, chunk: int = 4096
) -> np.ndarray:
    """Raw logits for the samples at `index`, gathered and scaled chunk by chunk (bounded memory)."""
    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(index), chunk):
            windows = scaler.transform(samples.windows(index[start : start + chunk]))
            out.append(network(torch.from_numpy(windows)).float().numpy())
    return np.concatenate(out) if out else np.empty((0, network.config.n_classes), np.float32)


def _fit_network(
    network: CnnLstm,
    scaler: Scaler,
    samples: Samples,
    train: np.ndarray,
    val: np.ndarray,
    config: TrainConfig,
    generator: torch.Generator,
    on_epoch: EpochCallback | None,
) -> tuple[list[dict[str, float]], int]:
    """Class-weighted cross-entropy, AdamW, early stopping on validation loss; keeps the best epoch's weights."""
    y_train = torch.from_numpy(samples.labels[train])
    y_val = torch.from_numpy(samples.labels[val])
    weights = torch.tensor(class_weights(samples.labels[train], network.config.n_classes), dtype=torch.float32)
    criterion = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    best_loss, best_epoch, best_state, stale = float("inf"), 0, copy.deepcopy(network.state_dict()), 0
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        network.train()
        order = torch.randperm(len(train), generator=generator).numpy()
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            x = torch.from_numpy(scaler.transform(samples.windows(train[batch])))
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(network(x), y_train[batch])
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            total += loss.item() * len(batch)
        val_loss = float(criterion(torch.from_numpy(predict_logits(network, scaler, samples, val)), y_val))
        history.append({"epoch": epoch, "train_loss": total / max(len(train), 1), "val_loss": val_loss})
        if on_epoch is not None:
            on_epoch(epoch, total / max(len(train), 1), val_loss)
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch, best_state, stale = val_loss, epoch, copy.deepcopy(network.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                logger.info("early stop at epoch %d (best %d, val loss %.4f)", epoch, best_epoch, best_loss)
                break
    network.load_state_dict(best_state)
    network.eval()
    return history, best_epoch


def fit(
    samples: Samples,
    train: np.ndarray,
    val: np.ndarray,
    config: TrainConfig,
    net_config: CnnLstmConfig,
    on_epoch: EpochCallback | None = None,
) -> Fit:
    """Fit a network on `train`, stop early, then calibrate (pooled and per pair) and pick a threshold on `val`."""
    if len(train) == 0 or len(val) == 0:
        raise ValueError(
            f"{len(train)} training and {len(val)} validation samples: too few for a fit; "
            "give more bars (or fewer folds)"
        )
    scaler = Scaler.fit(samples.subset(train).feature_rows())
    with deterministic(config.seed) as generator:
        network = CnnLstm(net_config)
        history, best_epoch = _fit_network(network, scaler, samples, train, val, config, generator, on_epoch)
    logits = predict_logits(network, scaler, samples, val)
    labels = samples.labels[val]
    temperature = fit_temperature(logits, labels)
    pair_temperatures = {}
    for p, symbol in enumerate(samples.symbols):
        mine = samples.pair[val] == p
        if mine.sum() >= MIN_PAIR_VALIDATION:
            pair_temperatures[symbol] = fit_temperature(logits[mine], labels[mine])
    temperatures = np.array([pair_temperatures.get(samples.symbols[p], temperature) for p in samples.pair[val]])
    probabilities = softmax_with_temperature(logits, temperatures)
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
    return Fit(
        network,
        scaler,
        temperature,
        pair_temperatures,
        threshold,
        history,
        best_epoch,
        validation,
        int(len(train)),
        int(len(val)),
    )


def predict_proba(fitted: Fit, samples: Samples, index: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of the samples at `index`, each with its pair's temperature."""
    logits = predict_logits(fitted.network, fitted.scaler, samples, index)
    temperatures = np.array([fitted.temperature_of(samples.symbols[p]) for p in samples.pair[index]])
    return softmax_with_temperature(logits, temperatures)


def health_issues(fitted: Fit) -> list[str]:
    """Why a fitted network must not be trusted, in plain words (empty when none applies)."""
    issues = []
    v = fitted.validation
    if fitted.best_epoch <= 1 and v["sharpness"] < FLAT_SHARPNESS:
        issues.append(f"best epoch 1 with flat probabilities (sharpness {v['sharpness']:.4f})")
    elif v["sharpness"] < FLAT_SHARPNESS:
        issues.append(f"flat probabilities on validation (sharpness {v['sharpness']:.4f})")
    if np.isclose(fitted.temperature, TEMPERATURE_BOUNDS[1], rtol=1e-3):
        issues.append(f"temperature at its bound ({TEMPERATURE_BOUNDS[1]:g}): the logits carry no information")
    if v["largest_class_share"] >= SINGLE_CLASS_SHARE:
        issues.append(f"predicts one class for {v['largest_class_share']:.0%} of validation samples")
    return issues


# --- the recipe -----------------------------------------------------------------------------------------------
def train_pooled(
    candles: Mapping[str, pd.DataFrame],
    timeframe: str,
    config: TrainConfig | None = None,
    net_config: CnnLstmConfig | None = None,
    *,
    on_epoch: EpochCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Walk-forward evaluation, then the served fit, for one timeframe over the given pairs (see the module doc).

    One pair in `candles` is per-pair training; many pairs is pooled training. Either way the store keeps one
    entry per pair.
    """
    config = config or TrainConfig()
    net_config = net_config or CnnLstmConfig()
    timeframe = parse_timeframe(timeframe)
    started = time.perf_counter()
    if config.max_bars is not None:
        candles = {s: c.iloc[-config.max_bars :].reset_index(drop=True) for s, c in candles.items()}
    horizon = config.horizon_for(timeframe)
    stage = on_stage or (lambda _: None)
    samples = build_samples(candles, timeframe, horizon, config.stop_atr, stride=config.stride_for(timeframe))
    evaluation = (
        build_samples(candles, timeframe, horizon, config.stop_atr) if config.stride_for(timeframe) > 1 else samples
    )
    embargo_ns = net_config.lookback * timeframe_seconds(timeframe) * NS
    confirm_start = confirmation_start(evaluation, config.confirm_share)
    if confirm_start is None:
        development, development_eval = np.arange(len(samples)), np.arange(len(evaluation))
    else:  # only what ended before the held-back block, minus the embargo, is ever learned from or chosen on
        development = labelled_before(samples, confirm_start, embargo_ns)
        development_eval = labelled_before(evaluation, confirm_start, embargo_ns)
    search: list[dict[str, Any]] = []
    edges = fold_edges(evaluation.subset(development_eval), folds=config.folds, test_share=config.test_share)
    if config.search and edges:
        stage("search")
        net_config, config, search = _search(
            samples, labelled_before(samples, edges[0][0], embargo_ns), config, net_config, embargo_ns
        )
    fold_reports: list[dict[str, Any]] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for number, (test_start, test_end) in enumerate(edges, start=1):
        stage(f"fold {number}/{len(edges)}")
        train, val = split_validation(
            samples, labelled_before(samples, test_start, embargo_ns), config.val_share, embargo_ns
        )
        test = within(evaluation, test_start, test_end)
        if min(len(train), len(val), len(test)) == 0:
            fold_reports.append({"fold": number, "skipped": "too few samples before or inside this block"})
            continue
        fitted = fit(samples, train, val, config, net_config)
        probabilities = predict_proba(fitted, evaluation, test)
        calls = calls_of(probabilities, fitted.threshold)
        parts.append((test, probabilities, calls))
        fold_score = score(evaluation.subset(test).scored(probabilities), threshold=None, calls=calls, cost=config.cost)
        fold_reports.append(
            {
                "fold": number,
                "train": _span(samples, train),
                "test": _span(evaluation, test),
                "threshold": fitted.threshold,
                "best_epoch": fitted.best_epoch,
                "accuracy": fold_score["accuracy"],
                "majority_share": fold_score["majority_share"],
                "calls": fold_score["calls"]["n"],
                "expectancy": fold_score["calls"]["expectancy"],
            }
        )
    walk_forward = _walk_forward_report(evaluation, parts, config, fold_reports)
    stage("final fit")
    train, val = split_validation(samples, development, config.val_share, embargo_ns)
    final = fit(samples, train, val, config, net_config, on_epoch)
    confirmation = _confirmation_report(final, evaluation, confirm_start, config)
    break_even = {}
    for p, series in enumerate(samples.pairs):
        risk = _pair_risk(samples, p, train, val)
        break_even[series.symbol] = break_even_hit_rate(float(np.nanmedian(risk)) if len(risk) else np.nan, config.cost)
    health = health_issues(final)
    if walk_forward["pooled"].get("n", 0) < 100:
        health.append(f"only {walk_forward['pooled'].get('n', 0)} walk-forward test samples")
    return TrainingResult(
        timeframe=timeframe,
        symbols=samples.symbols,
        fit=final,
        net_config=net_config,
        train_config=config,
        horizon=horizon,
        walk_forward=walk_forward,
        break_even=break_even,
        health=health,
        data_range={"train": _span(samples, train), "val": _span(samples, val), "confirmation": confirmation["span"]},
        search=search,
        seconds=time.perf_counter() - started,
        confirmation=confirmation,
    )


def _confirmation_report(final: Fit, evaluation: Samples, start_ns: int | None, config: TrainConfig) -> dict[str, Any]:
    """The served model scored once on the confirmation block, with its own threshold, pooled and per pair."""
    if start_ns is None:
        return {"span": {"first": None, "last": None, "samples": 0}, "pooled": {"n": 0}, "pairs": {}}
    block = np.flatnonzero(evaluation.time_ns >= start_ns)
    span = {**_span(evaluation, block), "start": iso_z(pd.Timestamp(start_ns, tz="UTC"))}
    if len(block) == 0:
        return {"span": span, "pooled": {"n": 0}, "pairs": {}}
    probabilities = predict_proba(final, evaluation, block)
    calls = calls_of(probabilities, final.threshold)
    scored = evaluation.subset(block).scored(probabilities)
    report: dict[str, Any] = {
        "span": span,
        "pooled": score(scored, threshold=None, calls=calls, cost=config.cost),
        "pairs": {},
    }
    for p, symbol in enumerate(evaluation.symbols):
        mine = evaluation.pair[block] == p
        if mine.any():
            pair_score = score(scored.subset(mine), threshold=None, calls=calls[mine], cost=config.cost)
            report["pairs"][symbol] = {**pair_score, "span": _span(evaluation, block[mine])}
    return report


def _walk_forward_report(
    evaluation: Samples,
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    config: TrainConfig,
    folds: list[dict[str, Any]],
) -> dict[str, Any]:
    """Scores over every out-of-sample test prediction, pooled over pairs and per pair; each fold's own threshold
    made its calls."""
    if not parts:
        return {"pooled": {"n": 0}, "pairs": {}, "folds": folds}
    index = np.concatenate([p[0] for p in parts])
    probabilities = np.concatenate([p[1] for p in parts])
    calls = np.concatenate([p[2] for p in parts])
    scored = evaluation.subset(index).scored(probabilities)
    report: dict[str, Any] = {
        "pooled": score(scored, threshold=None, calls=calls, cost=config.cost),
        "pairs": {},
        "folds": folds,
    }
    for p, symbol in enumerate(evaluation.symbols):
        mine = evaluation.pair[index] == p
        if mine.any():
            report["pairs"][symbol] = score(scored.subset(mine), threshold=None, calls=calls[mine], cost=config.cost)
    return report


def _span(samples: Samples, index: np.ndarray) -> dict[str, Any]:
    if len(index) == 0:
        return {"first": None, "last": None, "samples": 0}
    times = samples.time_ns[index]
    return {
        "first": iso_z(pd.Timestamp(int(times.min()), tz="UTC")),
        "last": iso_z(pd.Timestamp(int(times.max()), tz="UTC")),
        "samples": int(len(index)),
    }


def _pair_risk(samples: Samples, pair: int, train: np.ndarray, val: np.ndarray) -> np.ndarray:
    """The plan risks (stop distance / entry, known at the bar, not an outcome) of one pair's training samples. A
    pair whose history starts inside the validation stretch or the confirmation block (a 2024 listing pooled with
    pairs traded since 2020) has none there; its validation samples, else all its samples, stand in, so that its
    break-even hit rate is a number, not NaN."""
    series = samples.pairs[pair]
    for index in (train, val, np.arange(len(samples))):
        rows = samples.row[index][samples.pair[index] == pair]
        if len(rows):
            return series.outcomes.risk[rows]
    return np.empty(0)


def _search(
    samples: Samples, train_index: np.ndarray, config: TrainConfig, net_config: CnnLstmConfig, embargo_ns: int
) -> tuple[CnnLstmConfig, TrainConfig, list[dict[str, Any]]]:
    """The bounded search, on the first fold's training stretch and its validation: never on a test block."""
    train, val = split_validation(samples, train_index, config.val_share, embargo_ns)
    rows = []
    best: tuple[float, CnnLstmConfig, TrainConfig] | None = None
    for net_changes, train_changes in SEARCH_SPACE:
        candidate_net = net_config.model_copy(update=net_changes)
        candidate = config.model_copy(update=train_changes)
        fitted = fit(samples, train, val, candidate, candidate_net)
        loss = fitted.validation["log_loss"]
        rows.append(
            {"network": net_changes, "training": train_changes, "val_log_loss": loss, "best_epoch": fitted.best_epoch}
        )
        if best is None or loss < best[0]:
            best = (loss, candidate_net, candidate)
    assert best is not None
    return best[1], best[2], rows
