"""The gradient-boosted family's inputs: one row per bar, from the CNN-LSTM's feature code path plus the context.

A tree model reads a row, not a window: the CNN-LSTM's 15 features at the bar, their mean over its LOOKBACK-bar
window (the window summarised), and, with `context`, the market context (`features.context`). Every column has
finite memory except the CNN-LSTM's recursive ones (RSI, MACD, ATR), which serve within 1e-6 of training over
`cnn.SERVING_TAIL` candles as they do for the CNN-LSTM. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from signals.core.errors import NotEnoughCandles
from signals.features.cnn import FEATURE_NAMES, LOOKBACK, MIN_CANDLES, SERVING_TAIL, feature_matrix
from signals.features.context import CONTEXT_NAMES, context_row
from signals.features.indicators import rolling_mean_std

BASE_NAMES: tuple[str, ...] = (*FEATURE_NAMES, *(f"{name}_mean_{LOOKBACK}" for name in FEATURE_NAMES))


def tabular_names(context: bool) -> tuple[str, ...]:
    """The ordered column names of a row, with or without the market context."""
    return (*BASE_NAMES, *CONTEXT_NAMES) if context else BASE_NAMES


def names_hash(names: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def base_matrix(candles: pd.DataFrame) -> np.ndarray:
    """(n, len(BASE_NAMES)) float64: each bar's CNN-LSTM features and their LOOKBACK-bar means."""
    features = feature_matrix(candles)
    means = np.column_stack([rolling_mean_std(features[:, k], LOOKBACK)[0] for k in range(features.shape[1])])
    return np.hstack([features, means])


def serving_row(
    symbol: str,
    timeframe: str,
    universe: Mapping[str, pd.DataFrame],
    higher: Mapping[str, pd.DataFrame] | None = None,
    *,
    context: bool = True,
) -> np.ndarray:
    """The (n_features,) float64 row at `symbol`'s last closed candle, as the GBM was trained on it: the serving
    side's one call (the same functions as training, over the candles' tails)."""
    candles = universe[symbol]
    if len(candles) < MIN_CANDLES:
        raise NotEnoughCandles(f"found {len(candles)} closed candles, need at least {MIN_CANDLES}")
    base = base_matrix(candles.iloc[-SERVING_TAIL:])[-1]
    if not np.isfinite(base).all():
        raise NotEnoughCandles("the feature row holds non-finite values; the candles contain NaN or zeros")
    if not context:
        return base
    return np.concatenate([base, context_row(symbol, timeframe, universe, higher)])
