"""Per-feature standardisation, fitted on training rows only and stored as JSON beside the weights.

Its own module because training writes it and serving reads it: the serving path must not import training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from signals.features.cnn import FEATURE_NAMES

_MIN_STD = 1e-8


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardisation fitted on training rows; stored as JSON beside the weights."""

    mean: np.ndarray
    std: np.ndarray
    feature_names: tuple[str, ...] = FEATURE_NAMES

    @classmethod
    def fit(cls, rows: np.ndarray, feature_names: tuple[str, ...] = FEATURE_NAMES) -> Scaler:
        finite = np.where(np.isfinite(rows), rows, np.nan)
        mean = np.nanmean(finite, axis=0)
        std = np.nanstd(finite, axis=0)
        std = np.where(np.isfinite(std) & (std > _MIN_STD), std, 1.0)
        return cls(mean=np.nan_to_num(mean), std=std, feature_names=tuple(feature_names))

    def transform(self, windows: np.ndarray) -> np.ndarray:
        return ((windows - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"feature_names": list(self.feature_names), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            std=np.asarray(data["std"], dtype=np.float64),
            feature_names=tuple(data["feature_names"]),
        )
