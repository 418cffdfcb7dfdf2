"""Market context: where a pair stands against BTC, the universe and its own higher timeframes, at a closed candle.

A pair's own candles say little about a market that moves together; the published cross-sectional results come
from features like these. Every column at bar t reads only candles that had closed by t's close:
- cross-section (`rel_*`, `rank_*`): the pair's recent log return against BTC's and the universe average's at the
  same bar open time, and its percentile rank of return and of realised volatility among the pairs that have that
  bar (NaN with fewer than `MIN_PAIRS`);
- `volatility_regime`: the percentile of its realised volatility among its own last `REGIME_WINDOW[tf]` bars;
- `htf1_*`, `htf2_*`: the state of the last **closed** candle of each higher timeframe (`HIGHER_TIMEFRAMES`): a 4h
  candle opened at 08:00 closes at 12:00 and is seen by the 1h bars closing at or after 12:00 (opened >= 11:00).
  NaN where the timeframe has no higher one, or its newest closed candle is missing (a data gap).

Every column has finite memory (no recursion), so the serving path (`context_window` over each pair's last
`window_tail` candles) gives the training value bit for bit. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from signals.core.timeframes import parse_timeframe, timeframe_seconds
from signals.features.cnn import FEATURE_NAMES as CNN_FEATURE_NAMES
from signals.features.cnn import feature_matrix
from signals.features.indicators import log_return, rolling_mean_std

BENCHMARK: Final = "BTC/USDT"
RETURN_LAGS: Final = (4, 16)
RANK_LAG: Final = 16
VOLATILITY_PERIOD: Final = 20
MIN_PAIRS: Final = 3  # a rank among fewer pairs says nothing
# Bars of its own history a pair's volatility is ranked within: about a month intraday, half a year daily.
REGIME_WINDOW: Final[dict[str, int]] = {"15m": 2880, "1h": 720, "4h": 540, "1d": 180}
DEFAULT_REGIME_WINDOW: Final = 500
# The two higher timeframes each timeframe sees (fewer: their columns are NaN).
HIGHER_TIMEFRAMES: Final[dict[str, tuple[str, ...]]] = {
    "15m": ("1h", "4h"),
    "1h": ("4h", "1d"),
    "4h": ("1d",),
    "1d": (),
}
HTF_SLOTS: Final = 2
# Finite-memory columns of the CNN features, read on the higher timeframe's candles.
HTF_STATE: Final[tuple[str, ...]] = ("log_return_1", "log_return_4", "bb_percent_b", "bb_width")
HTF_TAIL: Final = 64  # higher-timeframe candles a serving call needs (bb_width: 20; log_return_4: 5)

CONTEXT_NAMES: Final[tuple[str, ...]] = (
    *(f"rel_btc_return_{lag}" for lag in RETURN_LAGS),
    *(f"rel_universe_return_{lag}" for lag in RETURN_LAGS),
    f"rank_return_{RANK_LAG}",
    f"rank_volatility_{VOLATILITY_PERIOD}",
    "volatility_regime",
    *(f"htf{slot}_{name}" for slot in range(1, HTF_SLOTS + 1) for name in HTF_STATE),
)
CONTEXT_HASH: Final[str] = hashlib.sha256("\n".join(CONTEXT_NAMES).encode()).hexdigest()
N_CONTEXT: Final = len(CONTEXT_NAMES)
_HTF_COLUMNS: Final = [CNN_FEATURE_NAMES.index(name) for name in HTF_STATE]
_NS: Final = 1_000_000_000


def higher_candles(
    read: Callable[[str, str], pd.DataFrame], symbols: Iterable[str], timeframe: str
) -> dict[str, dict[str, pd.DataFrame]]:
    """The pairs' candles of the higher timeframes the context reads for `timeframe` (timeframe -> symbol ->
    candles, from `read(symbol, timeframe)`; a pair without them is left out: NaN in those columns)."""
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for higher in HIGHER_TIMEFRAMES.get(parse_timeframe(timeframe), ()):
        frames = {symbol: read(symbol, higher) for symbol in symbols}
        out[higher] = {symbol: frame for symbol, frame in frames.items() if len(frame)}
    return out


def regime_window(timeframe: str) -> int:
    return REGIME_WINDOW.get(parse_timeframe(timeframe), DEFAULT_REGIME_WINDOW)


def context_tail(timeframe: str) -> int:
    """Candles of each pair a serving call needs for bit-identical columns: the regime window and its volatility."""
    return regime_window(timeframe) + VOLATILITY_PERIOD + max(RETURN_LAGS)


def _times_ns(candles: pd.DataFrame) -> np.ndarray:
    return candles["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)


def own_columns(candles: pd.DataFrame) -> dict[str, np.ndarray]:
    """One pair's inputs to the cross-section: log returns over RETURN_LAGS and realised volatility."""
    close = candles["close"].to_numpy(dtype=np.float64)
    columns = {f"return_{lag}": log_return(close, lag) for lag in RETURN_LAGS}
    _, std = rolling_mean_std(log_return(close, 1), VOLATILITY_PERIOD)
    columns["volatility"] = std
    return columns


def percentile_in_window(values: np.ndarray, window: int, chunk: int = 4096) -> np.ndarray:
    """Share of the last `window` values (the current one included) at or below the current one; NaN until half
    the window is known. Finite memory: a value depends on its own window only."""
    out = np.full(len(values), np.nan)
    if len(values) < window:
        return out
    views = sliding_window_view(values, window)
    for start in range(0, len(views), chunk):
        block = views[start : start + chunk]
        current = block[:, -1:]
        known = np.isfinite(block).sum(axis=1)
        share = (block <= current).sum(axis=1) / np.maximum(known, 1)
        ok = (known >= window // 2) & np.isfinite(current[:, 0])
        out[window - 1 + start : window - 1 + start + len(block)] = np.where(ok, share, np.nan)
    return out


def _cross_section(universe: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Per input column, a (bar open time x pair) frame over the union of every pair's bars, pairs sorted."""
    per_pair = {symbol: (own_columns(frame), _times_ns(frame)) for symbol, frame in sorted(universe.items())}
    names = [f"return_{lag}" for lag in RETURN_LAGS] + ["volatility"]
    return {
        name: pd.DataFrame({symbol: pd.Series(cols[name], index=times) for symbol, (cols, times) in per_pair.items()})
        for name in names
    }


def _rank(frame: pd.DataFrame, symbol: str) -> pd.Series:
    """The pair's percentile rank in [0, 1] among the pairs with a value at each bar (NaN with fewer than
    MIN_PAIRS)."""
    count = frame.notna().sum(axis=1)
    rank = (frame.rank(axis=1)[symbol] - 1.0) / (count - 1.0)
    return rank.where(count >= MIN_PAIRS)


def higher_state(candles: pd.DataFrame, timeframe: str, higher: pd.DataFrame, higher_timeframe: str) -> np.ndarray:
    """(n, len(HTF_STATE)): for each bar of `candles`, the state of the newest `higher` candle closed by the bar's
    close; NaN when that candle is missing (the newest one that should have closed is not in `higher`)."""
    out = np.full((len(candles), len(HTF_STATE)), np.nan)
    if len(candles) == 0 or len(higher) == 0:
        return out
    step, big = timeframe_seconds(timeframe) * _NS, timeframe_seconds(higher_timeframe) * _NS
    closes = _times_ns(candles) + step
    higher_closes = _times_ns(higher) + big
    state = feature_matrix(higher)[:, _HTF_COLUMNS]
    newest = np.searchsorted(higher_closes, closes, side="right") - 1
    seen = newest >= 0
    fresh = np.zeros(len(closes), dtype=bool)
    fresh[seen] = closes[seen] - higher_closes[newest[seen]] < big
    out[fresh] = state[newest[fresh]]
    return out


def context_matrix(
    symbol: str,
    timeframe: str,
    universe: Mapping[str, pd.DataFrame],
    higher: Mapping[str, pd.DataFrame] | None = None,
    *,
    cross_section: Mapping[str, pd.DataFrame] | None = None,
) -> np.ndarray:
    """The (n, N_CONTEXT) float64 context of every bar of `universe[symbol]`, columns in CONTEXT_NAMES order.

    `universe`: every pair's candles of `timeframe` (symbol -> frame; the pair itself and BTC among them where
    available); `higher`: this pair's candles of its higher timeframes (timeframe -> frame). `cross_section`: the
    result of `cross_section_of(universe)` when the caller computes many pairs of one universe (training).
    """
    timeframe = parse_timeframe(timeframe)
    candles = universe[symbol]
    times = _times_ns(candles)
    frames = cross_section if cross_section is not None else cross_section_of(universe)
    columns: list[np.ndarray] = []
    for lag in RETURN_LAGS:
        frame = frames[f"return_{lag}"]
        own = frame[symbol].reindex(times).to_numpy()
        benchmark = frame[BENCHMARK].reindex(times).to_numpy() if BENCHMARK in frame else np.full(len(times), np.nan)
        columns.append(own - benchmark)
    for lag in RETURN_LAGS:
        frame = frames[f"return_{lag}"]
        columns.append(frame[symbol].reindex(times).to_numpy() - frame.mean(axis=1).reindex(times).to_numpy())
    columns.append(_rank(frames[f"return_{RANK_LAG}"], symbol).reindex(times).to_numpy())
    columns.append(_rank(frames["volatility"], symbol).reindex(times).to_numpy())
    volatility = frames["volatility"][symbol].reindex(times).to_numpy()
    columns.append(percentile_in_window(volatility, regime_window(timeframe)))
    levels = HIGHER_TIMEFRAMES.get(timeframe, ())
    for slot in range(HTF_SLOTS):
        if slot < len(levels) and higher is not None and levels[slot] in higher:
            state = higher_state(candles, timeframe, higher[levels[slot]], levels[slot])
        else:
            state = np.full((len(candles), len(HTF_STATE)), np.nan)
        columns.extend(state.T)
    return np.column_stack(columns).astype(np.float64)


def cross_section_of(universe: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The universe's cross-section frames, computed once for every pair of a training run."""
    return _cross_section(universe)


def window_tail(timeframe: str, rows: int) -> int:
    """Candles of each pair a serving call needs for `rows` bit-identical rows (the oldest row's own history)."""
    return context_tail(timeframe) + rows


def window_universe(
    universe: Mapping[str, pd.DataFrame], last: pd.Timestamp, timeframe: str, rows: int
) -> dict[str, pd.DataFrame]:
    """Each pair's last `window_tail` candles up to the bar opened at `last` (a pair synced later is cut there):
    what a window's context is computed from, the same for every pair whose last closed candle is `last`."""
    tail = window_tail(timeframe, rows)
    return {s: frame[frame["timestamp"] <= last].iloc[-tail:] for s, frame in universe.items()}


def context_window(
    symbol: str,
    timeframe: str,
    universe: Mapping[str, pd.DataFrame],
    higher: Mapping[str, pd.DataFrame] | None = None,
    *,
    rows: int,
    cross_section: Mapping[str, pd.DataFrame] | None = None,
) -> np.ndarray:
    """The serving path of a window: the (rows, N_CONTEXT) context of `symbol`'s last `rows` closed candles, from
    each pair's last `window_tail` candles up to it and the higher timeframes' candles closed by then (the same
    `context_matrix` as training, so equal bit for bit to the training rows). `cross_section`:
    `cross_section_of(window_universe(...))`, when the caller serves many pairs at one candle."""
    last = universe[symbol]["timestamp"].iloc[-1]
    if cross_section is None:
        tails = window_universe(universe, last, timeframe, rows)
    else:  # the cross-section is given: only the pair's own candles are read (cutting every pair cost half the call)
        tails = window_universe({symbol: universe[symbol]}, last, timeframe, rows)
    close = last + pd.Timedelta(seconds=timeframe_seconds(timeframe))
    higher_tails = {
        tf: frame[frame["timestamp"] + pd.Timedelta(seconds=timeframe_seconds(tf)) <= close].iloc[-(HTF_TAIL + rows) :]
        for tf, frame in (higher or {}).items()
    }
    out = context_matrix(symbol, timeframe, tails, higher_tails, cross_section=cross_section)[-rows:]
    if len(out) < rows:  # a short history: NaN in front, as in a longer one before the columns are known
        out = np.vstack([np.full((rows - len(out), N_CONTEXT), np.nan), out])
    return out
