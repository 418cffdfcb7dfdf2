"""Direction labels: where the close is `horizon` bars later, measured in ATRs of the label bar."""

from __future__ import annotations

import numpy as np
import pandas as pd

from signals.core.vocab import LONG, NO_TRADE, SHORT
from signals.features.indicators import atr


def make_labels(candles: pd.DataFrame, horizon: int, threshold_atr: float) -> pd.Series:
    """LONG if close[t+h] - close[t] > k * ATR[t], SHORT if < -k * ATR[t], else NO_TRADE.

    Uses candles <= t for the ATR and close[t], and only close[t+h] from the future. The last
    `horizon` bars and the ATR warm-up have no label (NaN).
    """
    if horizon < 1 or threshold_atr < 0:
        raise ValueError(f"need horizon >= 1 and threshold_atr >= 0, got {horizon}, {threshold_atr}")
    close = candles["close"].to_numpy(dtype=np.float64)
    band = threshold_atr * atr(
        candles["high"].to_numpy(dtype=np.float64), candles["low"].to_numpy(dtype=np.float64), close
    )
    future = np.full(close.shape, np.nan)
    future[:-horizon] = close[horizon:]
    move = future - close
    labels = np.where(move > band, LONG, np.where(move < -band, SHORT, NO_TRADE)).astype(np.float64)
    labels[np.isnan(move) | np.isnan(band)] = np.nan
    return pd.Series(labels, index=pd.DatetimeIndex(candles["timestamp"], name="timestamp"), name="label")
