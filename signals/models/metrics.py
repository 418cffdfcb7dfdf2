"""Classification and calibration metrics for 3-class direction models, under stable metadata keys.

sklearn computes what it has (accuracy, balanced accuracy, precision/recall, confusion, log-loss); the
expected calibration error is ours (sklearn has no top-label ECE). Every value is a plain float / list so
it can go straight into the model metadata (YAML).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
)

from signals.core.vocab import CLASS_NAMES

ECE_BINS = 15


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy - mean confidence| per equal-width confidence bin, weighted by bin size."""
    if len(y_true) == 0:
        return float("nan")
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    # Bin edges (0, 1/n], (1/n, 2/n], ...: confidence 1.0 lands in the last bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    error = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            error += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(error)


def class_shares(labels: np.ndarray, class_names: Sequence[str] = CLASS_NAMES) -> dict[str, float]:
    counts = np.bincount(labels.astype(int), minlength=len(class_names))
    total = max(int(counts.sum()), 1)
    return {name: round(float(count) / total, 4) for name, count in zip(class_names, counts, strict=True)}


def majority_class(labels: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> int:
    return int(np.bincount(labels.astype(int), minlength=n_classes).argmax())


def classification_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    *,
    baseline_class: int,
    class_names: Sequence[str] = CLASS_NAMES,
) -> dict[str, Any]:
    """Scores of `proba` against `y_true`; the baseline always predicts `baseline_class` (train majority)."""
    labels = list(range(len(class_names)))
    y_true = y_true.astype(int)
    predicted = proba.argmax(axis=1)
    precision, recall, _, support = precision_recall_fscore_support(y_true, predicted, labels=labels, zero_division=0)
    test_majority = majority_class(y_true, len(class_names)) if len(y_true) else baseline_class
    clipped = np.clip(proba, 1e-12, 1.0)
    return {
        "samples": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "baseline_accuracy": float(np.mean(y_true == baseline_class)),
        "baseline_class": class_names[baseline_class],
        "own_majority_share": float(np.mean(y_true == test_majority)),
        "own_majority_class": class_names[test_majority],
        "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted)),
        "precision": {name: float(p) for name, p in zip(class_names, precision, strict=True)},
        "recall": {name: float(r) for name, r in zip(class_names, recall, strict=True)},
        "support": {name: int(s) for name, s in zip(class_names, support, strict=True)},
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=labels).tolist(),
        "log_loss": float(log_loss(y_true, clipped / clipped.sum(axis=1, keepdims=True), labels=labels)),
        "ece": expected_calibration_error(y_true, proba),
    }
