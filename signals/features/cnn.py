"""CNN-LSTM features: 15 named, ordered, scale-free columns and the (60, 15) float32 window.

Scale-free means no raw price level enters a feature: every price quantity is divided by the close (or is
a ratio of prices), so one network shape fits PEPE at 1e-5 and BTC at 6e4. Training computes features over
the whole history; serving over the last `SERVING_TAIL` candles. The tail is long enough for the
infinite-memory indicators (RSI, MACD, ATR) to converge to the training values within 1e-6, and the
finite-memory columns are bit-identical (see `features.indicators`); `tests/test_features_parity.py`
checks both on every pair of ../shared/data.
"""

from __future__ import annotations

import hashlib
from typing import Final

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from signals.core.errors import NotEnoughCandles
from signals.features.indicators import atr, log_return, macd, rolling_mean_std, rsi, safe_ratio

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "log_return_1",
    "log_return_4",
    "log_return_16",
    "range_hl",
    "body",
    "upper_wick",
    "lower_wick",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_percent_b",
    "bb_width",
    "natr_14",
    "volume_z_20",
)
# Columns computed over a finite window of bars (no recursion): a serving tail reproduces them bit for bit.
FINITE_MEMORY_FEATURES: Final[tuple[str, ...]] = (
    "log_return_1",
    "log_return_4",
    "log_return_16",
    "range_hl",
    "body",
    "upper_wick",
    "lower_wick",
    "bb_percent_b",
    "bb_width",
    "volume_z_20",
)
FEATURE_HASH: Final[str] = hashlib.sha256("\n".join(FEATURE_NAMES).encode()).hexdigest()
N_FEATURES: Final = len(FEATURE_NAMES)
LOOKBACK: Final = 60
BOLLINGER_PERIOD: Final = 20
VOLUME_PERIOD: Final = 20
# First row where every column is defined: MACD(12, 26, 9) needs 26 + 9 - 1 bars.
FIRST_VALID_ROW: Final = 33
MIN_CANDLES: Final = FIRST_VALID_ROW + LOOKBACK
# Candles a serving window is computed from. 400 bars of warm-up shrink the start-up error of the slowest
# indicators (RSI and ATR: Wilder smoothing, decay 13/14 a bar) below float32 resolution; measured on all 34
# pairs at 15m and 1h, the worst difference is 3e-11 (tests/test_features_parity.py), ~1e5 below tolerance.
SERVING_TAIL: Final = LOOKBACK + 400


def compute_features(candles: pd.DataFrame) -> pd.DataFrame:
    """Feature frame aligned with `candles` (same length, indexed by bar open time; NaN warm-up rows).

    Pure: reads only the OHLCV columns, does no I/O, and row t depends only on candles <= t.
    """
    index = pd.DatetimeIndex(candles["timestamp"], name="timestamp")
    return pd.DataFrame(feature_matrix(candles), index=index, columns=list(FEATURE_NAMES))


def feature_matrix(candles: pd.DataFrame, rows: int | None = None) -> np.ndarray:
    """The features as a float64 (n_bars, N_FEATURES) array, columns in FEATURE_NAMES order; with `rows`, only
    the last `rows` bars (serving needs a window, not the whole tail: the same bits, a fraction of the work).

    The one implementation behind training and serving; plain numpy because at serving size (460 bars)
    building a DataFrame cost more than every indicator together.
    """
    if rows is not None and len(candles) < rows:  # fewer bars than rows: NaN in front, as in a longer history
        return np.vstack([np.full((rows - len(candles), N_FEATURES), np.nan), feature_matrix(candles)])
    o, h, lo, c, v = (candles[col].to_numpy(dtype=np.float64) for col in ("open", "high", "low", "close", "volume"))
    macd_line, macd_signal, macd_hist = macd(c)  # infinite memory: over the whole input, then cut
    rsi_column, atr_column = rsi(c), atr(h, lo, c)
    log_volume = np.log1p(v)
    bb_percent_b, bb_width = bollinger(c, rows)  # finite memory: only the rows asked for
    vol_mean, vol_std = rolling_mean_std(log_volume, VOLUME_PERIOD, rows)
    if rows is not None:
        keep = slice(len(c) - rows, None)
        returns = [log_return(c[-(rows + lag) :], lag)[-rows:] for lag in (1, 4, 16)]
        o, h, lo, c, log_volume = o[keep], h[keep], lo[keep], c[keep], log_volume[keep]
        macd_line, macd_signal, macd_hist = macd_line[keep], macd_signal[keep], macd_hist[keep]
        rsi_column, atr_column = rsi_column[keep], atr_column[keep]
    else:
        returns = [log_return(c, lag) for lag in (1, 4, 16)]
    body_top, body_bottom = np.maximum(o, c), np.minimum(o, c)
    columns = (
        returns[0],  # log_return_1
        returns[1],  # log_return_4
        returns[2],  # log_return_16
        (h - lo) / c,  # range_hl
        (c - o) / c,  # body
        (h - body_top) / c,  # upper_wick
        (body_bottom - lo) / c,  # lower_wick
        rsi_column / 100.0 - 0.5,  # rsi_14
        macd_line / c,  # macd
        macd_signal / c,  # macd_signal
        macd_hist / c,  # macd_hist
        bb_percent_b,
        bb_width,
        atr_column / c,  # natr_14
        safe_ratio(log_volume - vol_mean, vol_std),  # volume_z_20
    )
    return np.column_stack(columns)


def bollinger(close: np.ndarray, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`bb_percent_b` and `bb_width` over `close` (with `rows`: of its last `rows` bars only, the same bits); also
    the market context's higher-timeframe state (`features.context`), which needs no other column."""
    mean, std = rolling_mean_std(close, BOLLINGER_PERIOD, rows)
    close = close if rows is None else close[len(close) - rows :]
    return safe_ratio(close - (mean - 2 * std), 4 * std, where_zero=0.5), 4 * std / mean


def training_windows(candles: pd.DataFrame) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Every complete (LOOKBACK, N_FEATURES) float32 window of the history, and the bar each one ends at.

    Window i covers feature rows [FIRST_VALID_ROW + i, FIRST_VALID_ROW + i + LOOKBACK).
    """
    features = compute_features(candles)
    valid = features.to_numpy(dtype=np.float32)[FIRST_VALID_ROW:]
    if len(valid) < LOOKBACK:
        return np.empty((0, LOOKBACK, N_FEATURES), np.float32), pd.DatetimeIndex([], tz="UTC")
    windows = sliding_window_view(valid, (LOOKBACK, N_FEATURES))[:, 0]
    ends = pd.DatetimeIndex(features.index[FIRST_VALID_ROW + LOOKBACK - 1 :])
    return np.ascontiguousarray(windows), ends


def serving_window(candles: pd.DataFrame) -> np.ndarray:
    """The (LOOKBACK, N_FEATURES) float32 window ending at the last candle, from its last SERVING_TAIL bars."""
    if len(candles) < MIN_CANDLES:
        raise NotEnoughCandles(
            f"found {len(candles)} closed candles, need at least {MIN_CANDLES} "
            f"({LOOKBACK} for the window + {FIRST_VALID_ROW} for indicator warm-up)"
        )
    window = feature_matrix(candles.iloc[-SERVING_TAIL:], rows=LOOKBACK).astype(np.float32)
    if not np.isfinite(window).all():
        raise NotEnoughCandles("the feature window holds non-finite values; the candles contain NaN or zeros")
    return window
