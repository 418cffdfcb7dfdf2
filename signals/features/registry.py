"""The features a model family may read, by name: the one registry a family's declared inputs are checked against.

Three kinds, all computed at the last closed candle by the one code path training, evaluation, serving and replay
share (a window per sample):
- the CNN-LSTM's 15 columns (`features.cnn`), one value per bar;
- the market context's 15 columns (`features.context`: returns against BTC and the universe, cross-sectional
  ranks, volatility regime, the higher timeframes' last closed candles), one value per bar, NaN where unknown (a
  rank among too few pairs, a timeframe with no higher one); a family that reads one gets windows of both kinds,
  (LOOKBACK, 30), built over the universe it was trained on;
- summaries of the window (`<feature>_mean_60`: a CNN column's mean over the LOOKBACK bars), one value per row.
A family's row is the newest `lookback` bars of its per-bar features (oldest bar first), then its summaries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import numpy as np

from signals.features.cnn import FEATURE_NAMES, LOOKBACK, N_FEATURES
from signals.features.context import CONTEXT_NAMES

WINDOW_FEATURES: Final[tuple[str, ...]] = (*FEATURE_NAMES, *CONTEXT_NAMES)  # a window's columns, in order
SUMMARY_FEATURES: Final[tuple[str, ...]] = tuple(f"{name}_mean_{LOOKBACK}" for name in FEATURE_NAMES)
KNOWN_FEATURES: Final[tuple[str, ...]] = (*WINDOW_FEATURES, *SUMMARY_FEATURES)
CONTEXT_WIDTH: Final = len(WINDOW_FEATURES)  # the width of a window with the context
MAX_LOOKBACK: Final = LOOKBACK


class UnknownFeature(ValueError):
    """A family declared a feature the registry does not know, or a lookback it cannot give."""


def check_inputs(names: Sequence[str], lookback: int) -> None:
    """Raise `UnknownFeature` naming what is wrong and what is accepted."""
    unknown = [name for name in names if name not in KNOWN_FEATURES]
    if unknown or not names:
        raise UnknownFeature(f"unknown feature(s) {unknown or '(none declared)'}; known: {', '.join(KNOWN_FEATURES)}")
    if len(set(names)) != len(names):
        raise UnknownFeature(f"features declared twice: {sorted({n for n in names if list(names).count(n) > 1})}")
    if not isinstance(lookback, int) or not 1 <= lookback <= MAX_LOOKBACK:
        raise UnknownFeature(f"lookback must be an integer from 1 to {MAX_LOOKBACK}, got {lookback!r}")


def needs_context(names: Sequence[str]) -> bool:
    """Whether the features read the market context (then windows carry its columns: `CONTEXT_WIDTH` wide)."""
    return any(name in CONTEXT_NAMES for name in names)


def window_width(names: Sequence[str]) -> int:
    """The columns of the windows a family with these features is given."""
    return CONTEXT_WIDTH if needs_context(names) else N_FEATURES


def inputs_hash(names: Sequence[str], lookback: int) -> str:
    """What a stored model records of its inputs and is checked against at load."""
    return hashlib.sha256(("\n".join(names) + f"\nlookback={lookback}").encode()).hexdigest()


def select(windows: np.ndarray, names: Sequence[str], lookback: int) -> np.ndarray:
    """(n, LOOKBACK, columns) windows -> (n, lookback * per-bar + summaries) float64 rows: the newest `lookback`
    bars of the named per-bar columns, oldest bar first, flattened, then the named summaries of the whole window
    (the input a family's learner sees in training, evaluation and serving)."""
    windows = np.asarray(windows, dtype=np.float64)
    bars = [WINDOW_FEATURES.index(name) for name in names if name in WINDOW_FEATURES]
    if bars and max(bars) >= windows.shape[2]:
        raise ValueError(f"windows of {windows.shape[2]} columns lack the market context the features read")
    cut = windows[:, -lookback:, :][:, :, bars].reshape(len(windows), lookback * len(bars))
    summaries = [FEATURE_NAMES.index(name.rsplit("_mean_", 1)[0]) for name in names if name in SUMMARY_FEATURES]
    if not summaries:
        return cut
    # each row's mean over its own contiguous 60 values: the same bits however many rows a batch holds
    means = np.ascontiguousarray(windows[:, :, summaries].transpose(0, 2, 1)).mean(axis=2)
    return np.hstack([cut, means])
