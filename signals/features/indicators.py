"""Indicator primitives shared by the feature sets.

Infinite-memory indicators (RSI, MACD, ATR) come from TA-Lib. Finite-memory rolling statistics are
computed here on explicit windows instead of TA-Lib's SMA/STDDEV: those keep running sums, so their last
bits depend on where the series starts, and a serving tail would then differ from the training history.
A window-local mean/std gives the same bits for a bar whatever came before its window.
"""

from __future__ import annotations

import numpy as np
import talib
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = np.ndarray


def rolling_mean_std(values: FloatArray, period: int, rows: int | None = None) -> tuple[FloatArray, FloatArray]:
    """Mean and population std of the last `period` values at each bar (NaN before the first full window); with
    `rows`, of the last `rows` bars only (the same bits: each value depends on its own window alone).

    A window of identical values gets exactly that value as its mean and exactly 0 as its std. Summing rounds
    (20 x 0.1 / 20 != 0.1), and the tiny nonzero std that rounding leaves would turn a flat market's z-score or %B
    into noise (1.0, 0.25 / 0.75) instead of the neutral value `safe_ratio` gives for a zero std.
    """
    if rows is not None:
        values = values[-(rows + period - 1) :]
        mean, std = rolling_mean_std(values, period)
        return _last(mean, rows), _last(std, rows)
    mean = np.full(values.shape, np.nan)
    std = np.full(values.shape, np.nan)
    if len(values) >= period:
        windows = sliding_window_view(values, period)
        flat = windows.min(axis=1) == windows.max(axis=1)
        mean[period - 1 :] = np.where(flat, windows[:, 0], windows.mean(axis=1))
        std[period - 1 :] = np.where(flat, 0.0, windows.std(axis=1))
    return mean, std


def _last(values: FloatArray, rows: int) -> FloatArray:
    """The last `rows` values, NaN-padded at the front when there are fewer."""
    if len(values) >= rows:
        return values[-rows:]
    return np.concatenate([np.full(rows - len(values), np.nan), values])


def log_return(close: FloatArray, lag: int) -> FloatArray:
    out = np.full(close.shape, np.nan)
    out[lag:] = np.log(close[lag:] / close[:-lag])
    return out


def safe_ratio(numerator: FloatArray, denominator: FloatArray, where_zero: float = 0.0) -> FloatArray:
    """numerator / denominator, with `where_zero` where the denominator is 0 (flat markets) and NaN kept."""
    out = np.full(np.broadcast(numerator, denominator).shape, where_zero, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return np.where(np.isnan(numerator) | np.isnan(denominator), np.nan, out)


def atr(high: FloatArray, low: FloatArray, close: FloatArray, period: int = 14) -> FloatArray:
    """Wilder's average true range in price units (TA-Lib)."""
    return np.asarray(talib.ATR(high, low, close, timeperiod=period), dtype=np.float64)


def rsi(close: FloatArray, period: int = 14) -> FloatArray:
    return np.asarray(talib.RSI(close, timeperiod=period), dtype=np.float64)


def macd(close: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    line, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    return np.asarray(line, np.float64), np.asarray(signal, np.float64), np.asarray(hist, np.float64)
