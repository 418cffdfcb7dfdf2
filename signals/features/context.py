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
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from signals.core.timeframes import parse_timeframe, timeframe_seconds
from signals.features.cnn import bollinger
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
HTF_STATE: Final[tuple[str, ...]] = ("log_return_1", "log_return_4", "bb_percent_b", "bb_width")  # `_htf_state`
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
_NS: Final = 1_000_000_000
_UTC_NS: Final = pd.DatetimeTZDtype("ns", "UTC")


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
    timestamps = candles["timestamp"]
    if timestamps.dtype == _UTC_NS:  # the store's and the exchange's (validated): the int64 view, no conversion
        return np.asarray(timestamps.array.asi8)
    return timestamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _htf_state(higher: pd.DataFrame) -> np.ndarray:
    """(n, len(HTF_STATE)): the CNN features `HTF_STATE` names, by the functions `features.cnn.feature_matrix` computes
    them with (the same bits as its columns), without the columns the state does not read."""
    close = higher["close"].to_numpy(dtype=np.float64)
    return np.column_stack([log_return(close, 1), log_return(close, 4), *bollinger(close)])


def own_columns(candles: pd.DataFrame) -> dict[str, np.ndarray]:
    """One pair's inputs to the cross-section: log returns over RETURN_LAGS and realised volatility."""
    close = candles["close"].to_numpy(dtype=np.float64)
    columns = {f"return_{lag}": log_return(close, lag) for lag in RETURN_LAGS}
    _, std = rolling_mean_std(log_return(close, 1), VOLATILITY_PERIOD)
    columns["volatility"] = std
    return columns


OWN_MEMORY: Final = max(*RETURN_LAGS, VOLATILITY_PERIOD)  # closes before a row that its `own_columns` read


class OwnColumnsMemo:
    """`own_columns` of each pair's tail, reusing the rows of the pair's previous tail (serving: the next refresh's
    tail is the last one moved on by the new candles).

    Why it is the same bits: each row reads its close and the OWN_MEMORY closes before it, by the same operations
    on those numbers alone (finite memory, as the module docstring says of every column). So a row whose closes
    are the previous tail's, at the same bar times, has the value it had there. The first OWN_MEMORY rows (which
    read fewer closes in a tail that starts later) and the new rows are computed by `own_columns` itself; a tail
    whose overlap differs in any bar time or close is computed whole. Safe across threads: a pair's entry is
    replaced in one step, and a stale one only computes more."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = {}

    def of(self, symbol: str, candles: pd.DataFrame) -> dict[str, np.ndarray]:
        times, close = _times_ns(candles), candles["close"].to_numpy(dtype=np.float64)
        previous = self._last.get(symbol)
        columns = _moved_on(previous, times, close, candles) if previous is not None else None
        if columns is None:
            columns = own_columns(candles)
        self._last[symbol] = (times, close, columns)
        return columns


def _moved_on(
    previous: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]],
    times: np.ndarray,
    close: np.ndarray,
    candles: pd.DataFrame,
) -> dict[str, np.ndarray] | None:
    """`own_columns(candles)` from the previous tail's rows where it holds the same candles (`OwnColumnsMemo`), or
    None when it does not hold enough of them."""
    old_times, old_close, old = previous
    start = int(np.searchsorted(old_times, times[0])) if len(times) else len(old_times)
    overlap = min(len(old_times) - start, len(times))
    if overlap <= 2 * OWN_MEMORY:
        return None
    held = slice(start, start + overlap)
    if not (np.array_equal(old_times[held], times[:overlap]) and np.array_equal(old_close[held], close[:overlap])):
        return None
    head = own_columns(candles.iloc[:OWN_MEMORY])
    new = own_columns(candles.iloc[overlap - OWN_MEMORY :])
    return {
        name: np.concatenate([head[name], old[name][start + OWN_MEMORY : start + overlap], new[name][OWN_MEMORY:]])
        for name in old
    }


def percentile_in_window(values: np.ndarray, window: int, chunk: int = 512) -> np.ndarray:
    """Share of the last `window` values (the current one included) at or below the current one; NaN until half
    the window is known. Finite memory: a value depends on its own window only. `values`: one series (n,) or
    several side by side (n, k), each ranked within its own column (the same bits as one at a time).

    Counted, not compared value by value: for a run of `chunk` consecutive outputs, their windows' union is sorted
    once per column; each output's count at or below it is a binary search in the union less the few values of
    the union outside its own window. The same integers as comparing every window (NaN is never at or below a
    value, -inf always is), so the same shares, bit for bit, at a fraction of the cost on a long window."""
    out = np.full(values.shape, np.nan)
    n = len(values)
    if n < window:
        return out
    columns = values.reshape(n, -1)
    result = out.reshape(n, -1)
    for start in range(window - 1, n, chunk):
        stop = min(start + chunk, n)
        size = stop - start
        span = columns[start - window + 1 : stop]  # (window + size - 1, k): every window of this run
        current = columns[start:stop]  # (size, k)
        finite = np.concatenate([np.zeros((1, span.shape[1]), np.int64), np.cumsum(np.isfinite(span), axis=0)])
        known = finite[window : window + size] - finite[:size]  # finite values in each output's window
        at_or_below = np.empty((size, span.shape[1]), np.int64)
        for column in range(span.shape[1]):
            at_or_below[:, column] = np.searchsorted(np.sort(span[:, column]), current[:, column], side="right")
        own = np.arange(size)
        before = np.arange(size - 1)[None, :] < own[:, None]  # union rows before output i's window: span[: i]
        after = np.arange(size - 1)[None, :] >= own[:, None]  # after it: span[window + j] for j >= i
        head, tail = span[: size - 1], span[window : window + size - 1]
        at_or_below -= ((head[None, :, :] <= current[:, None, :]) & before[:, :, None]).sum(axis=1)
        at_or_below -= ((tail[None, :, :] <= current[:, None, :]) & after[:, :, None]).sum(axis=1)
        share = at_or_below / np.maximum(known, 1)
        ok = (known >= window // 2) & np.isfinite(current)
        result[start:stop] = np.where(ok, share, np.nan)
    return out


@dataclass(frozen=True)
class CrossSection:
    """The universe's cross-section at every bar, computed once for all its pairs (training: the whole history;
    serving: the tails at one closed candle): per input column a (bar open time x pair) frame over the union of
    every pair's bars (pairs sorted), and what every pair reads of it, the universe averages and the ranks. Each
    value is computed row-wise by the same operations as one pair at a time would: the same bits."""

    returns: dict[int, pd.DataFrame]  # lag -> log returns
    volatility: pd.DataFrame
    mean_returns: dict[int, pd.Series]  # lag -> the universe average at each bar
    rank_return: pd.DataFrame  # RANK_LAG's return ranks in [0, 1]
    rank_volatility: pd.DataFrame


def cross_section_of(
    universe: Mapping[str, pd.DataFrame], rows: int | None = None, memo: OwnColumnsMemo | None = None
) -> CrossSection:
    """The cross-section of `universe` (symbol -> candles of one timeframe), computed once for every pair; with
    `rows`, the ranks at each pair's last `rows` bars only (all a serving window reads; NaN before: a rank is a
    row's own, so the same bits where computed); `memo`: the pairs' previous tails' rows, reused (serving)."""
    own = memo.of if memo is not None else lambda _, frame: own_columns(frame)
    per_pair = {symbol: (own(symbol, frame), _times_ns(frame)) for symbol, frame in sorted(universe.items())}
    since = None
    if rows is not None:
        firsts = [times[-min(rows, len(times))] for _, times in per_pair.values() if len(times)]
        since = min(firsts) if firsts else None

    shared = _shared_times([times for _, times in per_pair.values()])

    def frame(name: str) -> pd.DataFrame:
        if shared is not None:  # every pair has the same bars (the common case): nothing to align
            return pd.DataFrame({symbol: cols[name] for symbol, (cols, _) in per_pair.items()}, index=shared)
        return pd.DataFrame({symbol: pd.Series(cols[name], index=times) for symbol, (cols, times) in per_pair.items()})

    returns = {lag: frame(f"return_{lag}") for lag in RETURN_LAGS}
    volatility = frame("volatility")
    return CrossSection(
        returns=returns,
        volatility=volatility,
        mean_returns={lag: returns[lag].mean(axis=1) for lag in RETURN_LAGS},
        rank_return=_ranks(returns[RANK_LAG], since),
        rank_volatility=_ranks(volatility, since),
    )


def _shared_times(times: list[np.ndarray]) -> pd.Index | None:
    """The bars' index when every pair has exactly the same bars (the frame pandas would align them to), else None."""
    if not times or any(not np.array_equal(other, times[0]) for other in times[1:]):
        return None
    return pd.Index(times[0])


def _ranks(frame: pd.DataFrame, since: int | None = None) -> pd.DataFrame:
    """Each pair's percentile rank in [0, 1] among the pairs with a value at each bar (NaN with fewer than
    MIN_PAIRS); `since`: of the bars opened then or later only."""
    if since is not None:
        frame = frame[frame.index >= since]
    count = frame.notna().sum(axis=1)
    ranks = (frame.rank(axis=1) - 1.0).div(count - 1.0, axis=0)
    return ranks.where(count >= MIN_PAIRS, axis=0)


def higher_state(candles: pd.DataFrame, timeframe: str, higher: pd.DataFrame, higher_timeframe: str) -> np.ndarray:
    """(n, len(HTF_STATE)): for each bar of `candles`, the state of the newest `higher` candle closed by the bar's
    close; NaN when that candle is missing (the newest one that should have closed is not in `higher`)."""
    out = np.full((len(candles), len(HTF_STATE)), np.nan)
    if len(candles) == 0 or len(higher) == 0:
        return out
    step, big = timeframe_seconds(timeframe) * _NS, timeframe_seconds(higher_timeframe) * _NS
    closes = _times_ns(candles) + step
    higher_closes = _times_ns(higher) + big
    state = _htf_state(higher)
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
    cross_section: CrossSection | None = None,
) -> np.ndarray:
    """The (n, N_CONTEXT) float64 context of every bar of `universe[symbol]`, columns in CONTEXT_NAMES order.

    `universe`: every pair's candles of `timeframe` (symbol -> frame; the pair itself and BTC among them where
    available); `higher`: this pair's candles of its higher timeframes (timeframe -> frame). `cross_section`: the
    result of `cross_section_of(universe)` when the caller computes many pairs of one universe (training).
    """
    timeframe = parse_timeframe(timeframe)
    candles = universe[symbol]
    times = _times_ns(candles)
    cross = cross_section if cross_section is not None else cross_section_of(universe)
    columns: list[np.ndarray] = []
    for lag in RETURN_LAGS:
        frame = cross.returns[lag]
        own = frame[symbol].reindex(times).to_numpy()
        benchmark = frame[BENCHMARK].reindex(times).to_numpy() if BENCHMARK in frame else np.full(len(times), np.nan)
        columns.append(own - benchmark)
    for lag in RETURN_LAGS:
        own = cross.returns[lag][symbol].reindex(times).to_numpy()
        columns.append(own - cross.mean_returns[lag].reindex(times).to_numpy())
    columns.append(cross.rank_return[symbol].reindex(times).to_numpy())
    columns.append(cross.rank_volatility[symbol].reindex(times).to_numpy())
    volatility = cross.volatility[symbol].reindex(times).to_numpy()
    columns.append(percentile_in_window(volatility, regime_window(timeframe)))
    levels = HIGHER_TIMEFRAMES.get(timeframe, ())
    for slot in range(HTF_SLOTS):
        if slot < len(levels) and higher is not None and levels[slot] in higher:
            state = higher_state(candles, timeframe, higher[levels[slot]], levels[slot])
        else:
            state = np.full((len(candles), len(HTF_STATE)), np.nan)
        columns.extend(state.T)
    return np.column_stack(columns).astype(np.float64)


def window_tail(timeframe: str, rows: int) -> int:
    """Candles of each pair a serving call needs for `rows` bit-identical rows (the oldest row's own history)."""
    return context_tail(timeframe) + rows


def window_universe(
    universe: Mapping[str, pd.DataFrame], last: pd.Timestamp, timeframe: str, rows: int
) -> dict[str, pd.DataFrame]:
    """Each pair's last `window_tail` candles up to the bar opened at `last` (a pair synced later is cut there):
    what a window's context is computed from, the same for every pair whose last closed candle is `last`."""
    tail, last_ns = window_tail(timeframe, rows), pd.Timestamp(last).value
    out = {}
    for symbol, frame in universe.items():  # bars sorted (validated candles): those up to `last` are a prefix
        end = int(np.searchsorted(_times_ns(frame), last_ns, side="right"))
        out[symbol] = frame.iloc[max(0, end - tail) : end]
    return out


def context_window(
    symbol: str,
    timeframe: str,
    universe: Mapping[str, pd.DataFrame],
    higher: Mapping[str, pd.DataFrame] | None = None,
    *,
    rows: int,
    cross_section: CrossSection | None = None,
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
    close_ns = pd.Timestamp(close).value
    higher_tails = {tf: _closed_tail(frame, tf, close_ns, rows) for tf, frame in (higher or {}).items()}
    out = context_matrix(symbol, timeframe, tails, higher_tails, cross_section=cross_section)[-rows:]
    if len(out) < rows:  # a short history: NaN in front, as in a longer one before the columns are known
        out = np.vstack([np.full((rows - len(out), N_CONTEXT), np.nan), out])
    return out


def _closed_tail(frame: pd.DataFrame, timeframe: str, close_ns: int, rows: int) -> pd.DataFrame:
    """The last `HTF_TAIL + rows` candles of `frame` (of `timeframe`) closed by `close_ns`: what a window's higher
    timeframe state reads (bars sorted: the closed ones are a prefix)."""
    closed = int(np.searchsorted(_times_ns(frame) + timeframe_seconds(timeframe) * _NS, close_ns, side="right"))
    return frame.iloc[max(0, closed - (HTF_TAIL + rows)) : closed]


def context_windows(
    timeframe: str,
    universe: Mapping[str, pd.DataFrame],
    higher: Mapping[str, Mapping[str, pd.DataFrame]],
    *,
    rows: int,
    cross_section: CrossSection,
) -> dict[str, np.ndarray]:
    """`context_window` of every pair of `universe` at one closed candle, in one pass (the serving refresh: every
    pair of a timeframe at its close), equal bit for bit to one pair at a time.

    `universe`: every pair's tail up to the candle (`window_universe`), `cross_section` its `cross_section_of`;
    `higher`: symbol -> that pair's higher timeframes' candles (timeframe -> frame). The pairs whose tails hold the
    same bars (the common case) read the cross-section as one (bar x pair) block each column; a pair with a gap or a
    short history is computed on its own (`context_window`)."""
    timeframe = parse_timeframe(timeframe)
    groups: dict[bytes, list[str]] = {}
    for symbol, frame in universe.items():
        groups.setdefault(_times_ns(frame).tobytes(), []).append(symbol)
    out: dict[str, np.ndarray] = {}
    for symbols in groups.values():
        times = _times_ns(universe[symbols[0]])
        if len(symbols) == 1 or len(times) < rows:
            for symbol in symbols:
                out[symbol] = context_window(
                    symbol, timeframe, universe, higher.get(symbol), rows=rows, cross_section=cross_section
                )
            continue
        blocks = _context_block(timeframe, universe, higher, symbols, times, rows, cross_section)
        out.update(zip(symbols, blocks, strict=True))
    return out


def _context_block(
    timeframe: str,
    universe: Mapping[str, pd.DataFrame],
    higher: Mapping[str, Mapping[str, pd.DataFrame]],
    symbols: list[str],
    times: np.ndarray,
    rows: int,
    cross: CrossSection,
) -> np.ndarray:
    """(pairs, rows, N_CONTEXT): the last `rows` context rows of `symbols`, whose tails all hold the bars `times`;
    each column by `context_matrix`'s operations on the same values, a (rows x pairs) block at a time."""
    recent = times[-rows:]

    def block(frame: pd.DataFrame, at: np.ndarray = recent) -> np.ndarray:  # (len(at), pairs)
        return frame.reindex(index=at, columns=symbols).to_numpy()

    def column(series: pd.Series) -> np.ndarray:  # (rows, 1)
        return series.reindex(recent).to_numpy()[:, None]

    out = np.empty((len(symbols), rows, N_CONTEXT))
    nothing = np.full((rows, 1), np.nan)
    index = 0
    for lag in RETURN_LAGS:
        frame = cross.returns[lag]
        out[:, :, index] = (block(frame) - (column(frame[BENCHMARK]) if BENCHMARK in frame else nothing)).T
        index += 1
    for lag in RETURN_LAGS:
        out[:, :, index] = (block(cross.returns[lag]) - column(cross.mean_returns[lag])).T
        index += 1
    out[:, :, index] = block(cross.rank_return).T
    out[:, :, index + 1] = block(cross.rank_volatility).T
    window = regime_window(timeframe)
    history = times[-(window + rows - 1) :]  # each of the last `rows` values ranks within its own window only
    out[:, :, index + 2] = percentile_in_window(block(cross.volatility, history), window)[-rows:].T
    index += 3
    close = int(recent[-1]) + timeframe_seconds(timeframe) * _NS
    levels = HIGHER_TIMEFRAMES.get(timeframe, ())
    for p, symbol in enumerate(symbols):
        candles = universe[symbol].iloc[-rows:]
        mine = higher.get(symbol) or {}
        for slot in range(HTF_SLOTS):
            at = slice(index + slot * len(HTF_STATE), index + (slot + 1) * len(HTF_STATE))
            if slot < len(levels) and levels[slot] in mine:
                tf = levels[slot]
                out[p, :, at] = higher_state(candles, timeframe, _closed_tail(mine[tf], tf, close, rows), tf)
            else:
                out[p, :, at] = np.nan
    return out
