"""The features a model family may read, by name: the one registry a family's declared inputs are checked against.

Today every known feature is a column of the CNN-LSTM's window (`features.cnn.FEATURE_NAMES`), computed at the last
closed candle by the one code path training and serving share. A family reads a subset of those columns over its own
lookback (at most `LOOKBACK` rows), so its input is cut from the same window: no second feature path. More features
(market context) join here and in that window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import numpy as np

from signals.features.cnn import FEATURE_NAMES, LOOKBACK

KNOWN_FEATURES: Final[tuple[str, ...]] = FEATURE_NAMES
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


def inputs_hash(names: Sequence[str], lookback: int) -> str:
    """What a stored model records of its inputs and is checked against at load."""
    return hashlib.sha256(("\n".join(names) + f"\nlookback={lookback}").encode()).hexdigest()


def select(windows: np.ndarray, names: Sequence[str], lookback: int) -> np.ndarray:
    """(n, LOOKBACK, N_FEATURES) windows -> (n, lookback * len(names)) float64 rows: the newest `lookback` bars of
    the named columns, oldest bar first, flattened (the input a family's learner sees in training and serving)."""
    columns = [KNOWN_FEATURES.index(name) for name in names]
    cut = np.asarray(windows, dtype=np.float64)[:, -lookback:, :][:, :, columns]
    return cut.reshape(len(cut), lookback * len(columns))
