"""PPO observation: a (50, 10) float32 window of 9 market features plus the caller's position.

The market columns are a fixed subset of the CNN-LSTM features (one code path), multiplied by fixed
constants so that each is O(1) for the policy's MLP, and clipped: the policy stores no scaler.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from signals.core.errors import NotEnoughCandles
from signals.features.cnn import FEATURE_NAMES, FIRST_VALID_ROW, SERVING_TAIL, feature_matrix

PPO_LOOKBACK: Final = 50
# feature name -> fixed multiplier that brings it to O(1)
PPO_MARKET_FEATURES: Final[dict[str, float]] = {
    "log_return_1": 100.0,
    "log_return_4": 50.0,
    "log_return_16": 25.0,
    "range_hl": 100.0,
    "rsi_14": 4.0,
    "macd_hist": 1000.0,
    "bb_percent_b": 1.0,
    "natr_14": 100.0,
    "volume_z_20": 1.0,
}
PPO_FEATURE_NAMES: Final[tuple[str, ...]] = (*PPO_MARKET_FEATURES, "position")
PPO_OBS_SHAPE: Final = (PPO_LOOKBACK, len(PPO_FEATURE_NAMES))
PPO_MIN_CANDLES: Final = FIRST_VALID_ROW + PPO_LOOKBACK
CLIP: Final = 10.0
_MARKET_COLUMNS: Final = [FEATURE_NAMES.index(name) for name in PPO_MARKET_FEATURES]
_MARKET_SCALES: Final = np.array(list(PPO_MARKET_FEATURES.values()))
FLAT: Final = 0.0
LONG_POSITION: Final = 1.0


def market_features(candles: pd.DataFrame, rows: int | None = None) -> np.ndarray:
    """(n_bars, 9) float32 scaled market features (NaN in warm-up rows); with `rows`, the last `rows` bars only."""
    features = feature_matrix(candles, rows)[:, _MARKET_COLUMNS]
    scaled = features * _MARKET_SCALES
    return np.clip(scaled, -CLIP, CLIP).astype(np.float32)


def observation(market_window: np.ndarray, position: float) -> np.ndarray:
    """Append the position column (0 flat, 1 long) to a (50, 9) market window."""
    column = np.full((market_window.shape[0], 1), position, dtype=np.float32)
    return np.concatenate([market_window, column], axis=1)


def market_windows(candles: pd.DataFrame) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Every complete (50, 9) market window of a history (for the training environment), and its end bar."""
    valid = market_features(candles)[FIRST_VALID_ROW:]
    n_market = len(PPO_MARKET_FEATURES)
    if len(valid) < PPO_LOOKBACK:
        return np.empty((0, PPO_LOOKBACK, n_market), np.float32), pd.DatetimeIndex([], tz="UTC")
    windows = sliding_window_view(valid, (PPO_LOOKBACK, n_market))[:, 0]
    ends = pd.DatetimeIndex(candles["timestamp"]).to_series().iloc[FIRST_VALID_ROW + PPO_LOOKBACK - 1 :]
    return np.ascontiguousarray(windows), pd.DatetimeIndex(ends)


def serving_market_window(candles: pd.DataFrame) -> np.ndarray:
    """The (50, 9) market part of the observation ending at the last candle, from its last SERVING_TAIL bars."""
    if len(candles) < PPO_MIN_CANDLES:
        raise NotEnoughCandles(f"found {len(candles)} closed candles, need at least {PPO_MIN_CANDLES}")
    window = market_features(candles.iloc[-SERVING_TAIL:], rows=PPO_LOOKBACK)
    if not np.isfinite(window).all():
        raise NotEnoughCandles("the observation holds non-finite values; the candles contain NaN or zeros")
    return window


def serving_observation(candles: pd.DataFrame, position: float) -> np.ndarray:
    """The (50, 10) observation ending at the last candle, for a caller holding `position`."""
    return observation(serving_market_window(candles), position)
