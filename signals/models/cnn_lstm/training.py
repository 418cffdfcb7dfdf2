"""Training of one CNN-LSTM from a candle frame: windows + labels, chronological purged split, train-only
scaler, class-weighted training with early stopping, temperature scaling on validation, test metrics.

Everything here is pure computation on in-memory frames (no model store, no CLI), seeded and deterministic,
so tests can train a tiny model in a second and `models.cnn_store` can import the result.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn

from signals.core.timeframes import iso_z
from signals.core.vocab import CLASS_NAMES
from signals.features.cnn import FIRST_VALID_ROW, LOOKBACK, compute_features, training_windows
from signals.features.labels import make_labels
from signals.models.cnn_lstm.network import CnnLstm, CnnLstmConfig, count_parameters
from signals.models.metrics import class_shares, classification_metrics, majority_class
from signals.models.scaler import Scaler

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, float, float], None]
TEMPERATURE_BOUNDS = (0.05, 20.0)


class TrainConfig(BaseModel):
    """Data and optimisation settings of one training run (stored in the model metadata)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon: int = Field(default=4, ge=1, description="Label horizon in bars.")
    threshold_atr: float = Field(default=0.5, ge=0.0, description="Move threshold in ATRs for LONG / SHORT.")
    epochs: int = Field(default=15, ge=1)
    patience: int = Field(default=3, ge=1, description="Epochs without a better validation loss before stopping.")
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    seed: int = 0
    max_bars: int | None = Field(default=None, ge=1, description="Use only the most recent bars.")
    train_fraction: float = Field(default=0.70, gt=0, lt=1)
    val_fraction: float = Field(default=0.15, gt=0, lt=1)


@dataclass(frozen=True)
class LabelledWindows:
    """Every window with a known label. `bars[i]` is the candle row window i ends at (its label bar)."""

    windows: np.ndarray  # (n, LOOKBACK, N_FEATURES) float32, unscaled
    labels: np.ndarray  # (n,) int64
    bars: np.ndarray  # (n,) int64 row positions in the candle frame
    timestamps: pd.DatetimeIndex  # (n,) open time of each window's last bar
    features: np.ndarray  # (n_candles, N_FEATURES) float64, the frame the windows were cut from
    candle_times: pd.DatetimeIndex  # (n_candles,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Split:
    """Sample indices of each part, chronological, with purged gaps between the parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    purge: int = 0

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass
class TrainingResult:
    """A trained, calibrated network and everything the model store records about it."""

    network: CnnLstm
    scaler: Scaler
    temperature: float
    net_config: CnnLstmConfig
    train_config: TrainConfig
    metrics: dict[str, Any]
    data_range: dict[str, dict[str, Any]]
    class_shares: dict[str, dict[str, float]]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0

    @property
    def n_parameters(self) -> int:
        return count_parameters(self.network)


def build_windows(candles: pd.DataFrame, horizon: int, threshold_atr: float) -> LabelledWindows:
    """Windows aligned with their labels through the window end timestamps; unlabelled/non-finite dropped."""
    windows, ends = training_windows(candles)
    labels = make_labels(candles, horizon, threshold_atr).reindex(ends).to_numpy()
    bars = np.arange(len(ends), dtype=np.int64) + FIRST_VALID_ROW + LOOKBACK - 1
    keep = np.isfinite(labels)
    if len(windows):
        keep &= np.isfinite(windows).all(axis=(1, 2))
    features = compute_features(candles)
    return LabelledWindows(
        windows=windows[keep],
        labels=labels[keep].astype(np.int64),
        bars=bars[keep],
        timestamps=ends[keep],
        features=features.to_numpy(dtype=np.float64),
        candle_times=pd.DatetimeIndex(features.index),
    )


def chronological_split(
    bars: np.ndarray,
    *,
    horizon: int,
    lookback: int = LOOKBACK,
    train_fraction: float = 0.70,
    val_fraction: float = 0.15,
) -> Split:
    """Split samples (ordered by their end bar) into train / val / test, purging at each boundary.

    A sample touches bars [end - lookback + 1, end + horizon]: its window and its label. Samples of the
    later part are dropped until its first window starts after the last label bar of the earlier part,
    so no label crosses a boundary (a gap of `horizon` bars) and no later window contains a bar that an
    earlier label was computed from (`lookback - 1` bars more).
    """
    n = len(bars)
    train_end = int(round(n * train_fraction))
    val_end = int(round(n * (train_fraction + val_fraction)))
    train = np.arange(0, train_end)
    val = _purged(bars, train, np.arange(train_end, val_end), horizon, lookback)
    test = _purged(bars, val if len(val) else train, np.arange(val_end, n), horizon, lookback)
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(f"{n} samples are too few for a train / validation / test split with purge gaps")
    return Split(train=train, val=val, test=test, purge=horizon + lookback - 1)


def _purged(bars: np.ndarray, before: np.ndarray, after: np.ndarray, horizon: int, lookback: int) -> np.ndarray:
    if len(before) == 0:
        return after
    last_label_bar = bars[before[-1]] + horizon
    return after[bars[after] - lookback + 1 > last_label_bar]


def fit_scaler(data: LabelledWindows, split: Split) -> Scaler:
    """Fit on the feature rows the training windows cover, and on nothing later."""
    first = int(data.bars[split.train[0]]) - LOOKBACK + 1
    last = int(data.bars[split.train[-1]])
    return Scaler.fit(data.features[first : last + 1])


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights (n / (k * count)), so each class carries the same total loss."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = len(labels) / (n_classes * np.maximum(counts, 1.0))
    return np.where(counts > 0, weights, 0.0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The scalar T > 0 minimising the NLL of softmax(logits / T): a bounded search over log T."""

    def nll(log_t: float) -> float:
        log_p = log_softmax(logits.astype(np.float64) / np.exp(log_t), axis=1)
        return float(-log_p[np.arange(len(labels)), labels].mean())

    bounds = (float(np.log(TEMPERATURE_BOUNDS[0])), float(np.log(TEMPERATURE_BOUNDS[1])))
    result = minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-5})
    temperature = float(np.exp(result.x))
    return temperature if nll(float(result.x)) <= nll(0.0) else 1.0


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    return np.exp(log_softmax(logits.astype(np.float64) / temperature, axis=1))


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


def predict_logits(network: nn.Module, windows: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Logits for scaled windows, in eval mode under inference_mode, batch by batch."""
    network.eval()
    device = next(network.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch_size])).to(device)
            out.append(network(batch).float().cpu().numpy())
    n_classes = network.config.n_classes if isinstance(network, CnnLstm) else 0
    return np.concatenate(out) if out else np.empty((0, n_classes), np.float32)


def _fit_network(
    network: CnnLstm,
    config: TrainConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    generator: torch.Generator,
    on_epoch: EpochCallback | None,
) -> tuple[list[dict[str, float]], int]:
    """Class-weighted cross-entropy, Adam, early stopping on validation loss; keeps the best epoch's weights."""
    x_train, y_train = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    x_val, y_val = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    weights = torch.tensor(class_weights(train[1], network.config.n_classes), dtype=torch.float32)
    criterion = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    best_loss, best_epoch, best_state, stale = float("inf"), 0, copy.deepcopy(network.state_dict()), 0
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        network.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(network(x_train[index]), y_train[index])
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            total += loss.item() * len(index)
        val_loss = float(criterion(torch.from_numpy(predict_logits(network, x_val.numpy())), y_val))
        history.append({"epoch": epoch, "train_loss": total / len(x_train), "val_loss": val_loss})
        if on_epoch is not None:
            on_epoch(epoch, total / len(x_train), val_loss)
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


def _data_range(data: LabelledWindows, split: Split) -> dict[str, dict[str, Any]]:
    """First bar of the first window and last (label) bar of each part, with its sample count."""
    out = {}
    for name, index in split.parts().items():
        first_bar = int(data.bars[index[0]]) - LOOKBACK + 1
        out[name] = {
            "first": iso_z(data.candle_times[first_bar]),
            "last": iso_z(data.timestamps[index[-1]]),
            "samples": int(len(index)),
        }
    return out


def train_cnn_lstm(
    candles: pd.DataFrame,
    config: TrainConfig | None = None,
    net_config: CnnLstmConfig | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainingResult:
    """Train, calibrate and score one model on `candles` (one symbol and timeframe)."""
    config = config or TrainConfig()
    net_config = net_config or CnnLstmConfig()
    started = time.perf_counter()
    if config.max_bars is not None:
        candles = candles.iloc[-config.max_bars :].reset_index(drop=True)
    data = build_windows(candles, config.horizon, config.threshold_atr)
    split = chronological_split(
        data.bars,
        horizon=config.horizon,
        train_fraction=config.train_fraction,
        val_fraction=config.val_fraction,
    )
    scaler = fit_scaler(data, split)
    x = {name: scaler.transform(data.windows[index]) for name, index in split.parts().items()}
    y = {name: data.labels[index] for name, index in split.parts().items()}
    with deterministic(config.seed) as generator:
        network = CnnLstm(net_config)
        history, best_epoch = _fit_network(
            network, config, (x["train"], y["train"]), (x["val"], y["val"]), generator, on_epoch
        )
    temperature = fit_temperature(predict_logits(network, x["val"]), y["val"])
    test_logits = predict_logits(network, x["test"])
    baseline = majority_class(y["train"], net_config.n_classes)
    raw = classification_metrics(y["test"], softmax_with_temperature(test_logits, 1.0), baseline_class=baseline)
    calibrated = classification_metrics(
        y["test"], softmax_with_temperature(test_logits, temperature), baseline_class=baseline
    )
    test_majority_share = calibrated.pop("own_majority_share")
    test_majority_class = calibrated.pop("own_majority_class")
    metrics = {
        **calibrated,
        "baseline": f"train-majority class ({CLASS_NAMES[baseline]}) predicted for every test sample",
        "test_majority_share": test_majority_share,
        "test_majority_class": test_majority_class,
        "log_loss_uncalibrated": raw["log_loss"],
        "ece_uncalibrated": raw["ece"],
        "temperature": temperature,
        "best_val_loss": min(h["val_loss"] for h in history),
    }
    return TrainingResult(
        network=network,
        scaler=scaler,
        temperature=temperature,
        net_config=net_config,
        train_config=config,
        metrics=metrics,
        data_range=_data_range(data, split),
        class_shares={name: class_shares(labels) for name, labels in y.items()},
        history=history,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - started,
    )
