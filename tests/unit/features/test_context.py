"""Market context (`features.context`): higher-timeframe alignment to the bar, no look-ahead, and train/serve
parity (`context_window`, what the server computes), on small seeded random-walk universes built here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from signals.features.cnn import FEATURE_NAMES, feature_matrix
from signals.features.context import (
    CONTEXT_NAMES,
    HTF_STATE,
    N_CONTEXT,
    OwnColumnsMemo,
    context_matrix,
    context_tail,
    context_window,
    context_windows,
    cross_section_of,
    higher_state,
    own_columns,
    percentile_in_window,
    window_universe,
)
from tests.support.factories import random_walk_candles
from tests.support.paths import SHARED_OHLCV, shared_candles

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
BARS_1H = 1100
HTF_COLUMNS = [FEATURE_NAMES.index(name) for name in HTF_STATE]


def resample(candles: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Higher-timeframe candles from lower ones (bar open time labels, as the exchange names them)."""
    frame = candles.set_index("timestamp")
    out = frame.resample(rule, label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    return out.dropna().reset_index()


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    return {
        s: random_walk_candles(BARS_1H, timeframe="1h", seed=i, price=10.0 * (i + 1)) for i, s in enumerate(SYMBOLS)
    }


@pytest.fixture(scope="module")
def higher(universe: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {"4h": resample(universe["SOL/USDT"], "4h"), "1d": resample(universe["SOL/USDT"], "1D")}


def test_a_1h_bar_sees_the_4h_candle_that_closed_at_or_before_its_own_close() -> None:
    hours = random_walk_candles(48, timeframe="1h", seed=3)
    four = resample(hours, "4h")
    state = higher_state(hours, "1h", four, "4h")
    expected = feature_matrix(four)[:, HTF_COLUMNS]
    by_open = {ts: i for i, ts in enumerate(four["timestamp"])}
    day = pd.Timestamp("2024-01-01", tz="UTC")
    row = {ts: i for i, ts in enumerate(hours["timestamp"])}
    # 1h bars opened 08:00, 09:00, 10:00 close by 11:00 at the latest: the newest closed 4h candle opened at 04:00
    for hour in (8, 9, 10):
        np.testing.assert_array_equal(
            state[row[day + pd.Timedelta(hours=hour)]], expected[by_open[day + pd.Timedelta(hours=4)]]
        )
    # the 1h bar opened at 11:00 closes at 12:00, when the 08:00 4h candle closes: it is seen
    np.testing.assert_array_equal(
        state[row[day + pd.Timedelta(hours=11)]], expected[by_open[day + pd.Timedelta(hours=8)]]
    )
    # before the first 4h candle closes (bars opened 00:00-02:00) there is nothing to see
    assert np.isnan(state[:3]).all()


def test_a_1h_bar_sees_the_day_only_from_the_bar_that_closes_at_midnight() -> None:
    hours = random_walk_candles(72, timeframe="1h", seed=4)
    days = resample(hours, "1D")
    state = higher_state(hours, "1h", days, "1d")
    expected = feature_matrix(days)[:, HTF_COLUMNS]
    assert np.isnan(state[:23]).all()  # day 0 closes at 24:00: the bar opened 23:00 is the first to see it
    np.testing.assert_array_equal(state[23], expected[0])
    np.testing.assert_array_equal(state[46], expected[0])
    np.testing.assert_array_equal(state[47], expected[1])


def test_a_higher_candle_not_yet_closed_is_never_read() -> None:
    hours = random_walk_candles(60, timeframe="1h", seed=5)
    four = resample(hours, "4h")
    before = higher_state(hours, "1h", four, "4h")
    forming = four.iloc[[-1]].assign(timestamp=four["timestamp"].iloc[-1] + pd.Timedelta(hours=4), close=1e9)
    after = higher_state(hours, "1h", pd.concat([four, forming], ignore_index=True), "4h")
    np.testing.assert_array_equal(before, after)


def test_a_missing_higher_candle_is_nan_not_an_older_one() -> None:
    hours = random_walk_candles(48, timeframe="1h", seed=6)
    four = resample(hours, "4h")
    gap = four.drop(index=3).reset_index(drop=True)  # the 12:00 candle (closes 16:00) is missing
    state = higher_state(hours, "1h", gap, "4h")
    assert np.isnan(state[15:19]).all()  # bars closing 16:00 .. 19:00 would have read it
    assert np.isfinite(state[19, 0])  # the 16:00 candle closes at 20:00


def test_changing_future_candles_changes_no_past_context(universe: dict[str, pd.DataFrame], higher: dict) -> None:
    full = context_matrix("SOL/USDT", "1h", universe, higher)
    cut = 900
    changed = {s: f.copy() for s, f in universe.items()}
    for frame in changed.values():
        frame.loc[cut:, ["open", "high", "low", "close"]] *= 3.0
    changed_higher = {tf: f.copy() for tf, f in higher.items()}
    stamp = universe["SOL/USDT"]["timestamp"].iloc[cut]
    for frame in changed_higher.values():
        frame.loc[frame["timestamp"] >= stamp - pd.Timedelta(hours=1), ["high", "close"]] *= 3.0
    again = context_matrix("SOL/USDT", "1h", changed, changed_higher)
    np.testing.assert_array_equal(full[:cut], again[:cut])
    assert not np.allclose(full[cut:], again[cut:], equal_nan=True)


def test_the_serving_row_is_the_training_row_bit_for_bit(universe: dict[str, pd.DataFrame], higher: dict) -> None:
    full = context_matrix("SOL/USDT", "1h", universe, higher)
    assert full.shape == (BARS_1H, N_CONTEXT)
    assert np.isfinite(full[-1]).all()  # every column is defined once warm (1h has two higher timeframes)
    for end in (context_tail("1h") + 10, 1000, BARS_1H - 1):
        # the server holds the universe up to now (other pairs may already have a newer candle) and closed HTFs
        held = {s: f.iloc[: end + 1 + (s == "BTC/USDT")] for s, f in universe.items()}
        row = context_window("SOL/USDT", "1h", held, higher, rows=1)[-1]
        np.testing.assert_array_equal(row, full[end])


def test_cross_section_columns_mean_what_they_say(universe: dict[str, pd.DataFrame]) -> None:
    btc = context_matrix("BTC/USDT", "1h", universe)
    names = list(CONTEXT_NAMES)
    assert np.nanmax(np.abs(btc[:, names.index("rel_btc_return_4")])) == 0.0
    ranks = np.column_stack([context_matrix(s, "1h", universe)[:, names.index("rank_return_16")] for s in SYMBOLS])
    finite = np.isfinite(ranks).all(axis=1)
    np.testing.assert_array_equal(np.sort(ranks[finite], axis=1)[0], [0.0, 1 / 3, 2 / 3, 1.0])
    assert np.isnan(btc[:, names.index("htf1_log_return_1")]).all()  # no higher candles given: NaN, not zeros


def test_percentile_in_window_counts_its_own_window_only() -> None:
    values = np.array([1.0, 2.0, 3.0, 0.5, 5.0, np.nan, 4.0])
    out = percentile_in_window(values, 4)
    np.testing.assert_array_equal(out[:3], [np.nan] * 3)
    assert out[3] == 0.25 and out[4] == 1.0 and np.isnan(out[5])
    assert out[6] == 2 / 3  # window [3, 0.5, 5, nan, 4] -> last 4: [0.5, 5, nan, 4]: 2 of 3 known <= 4


def test_percentile_in_window_of_columns_side_by_side_is_each_column_alone() -> None:
    values = np.random.default_rng(2).normal(size=(300, 3))
    values[40:90, 1] = np.nan
    together = percentile_in_window(values, 50)
    for column in range(3):
        np.testing.assert_array_equal(together[:, column], percentile_in_window(values[:, column], 50))


def _every_window_compared(values: np.ndarray, window: int) -> np.ndarray:
    """The definition, value by value: each output compares its whole window (what the counting must equal)."""
    out = np.full(values.shape, np.nan)
    for t in range(window - 1, len(values)):
        block, current = values[t - window + 1 : t + 1], values[t]
        known = np.isfinite(block).sum(axis=0)
        share = (block <= current).sum(axis=0) / np.maximum(known, 1)
        out[t] = np.where((known >= window // 2) & np.isfinite(current), share, np.nan)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_percentile_in_window_counts_the_same_integers_as_comparing_every_window(seed: int) -> None:
    """Ties, NaN, +-inf, -0.0, runs shorter and longer than a chunk: the same bits as the definition."""
    rng = np.random.default_rng(seed)
    n, window, chunk = int(rng.integers(40, 400)), int(rng.integers(1, 60)), int(rng.integers(1, 90))
    values = np.round(rng.normal(size=(n, 3)), seed % 3)
    values[rng.random(values.shape) < 0.15] = np.nan
    values[rng.random(values.shape) < 0.02] = np.inf
    values[rng.random(values.shape) < 0.02] = -np.inf
    values[rng.random(values.shape) < 0.02] = -0.0
    got = percentile_in_window(values, window, chunk)
    assert got.tobytes() == _every_window_compared(values, window).tobytes()
    assert percentile_in_window(values[:, 0], window, chunk).tobytes() == got[:, 0].tobytes()


def test_the_universe_context_in_one_pass_is_each_pair_alone_bit_for_bit(universe: dict[str, pd.DataFrame]) -> None:
    """The refresh computes every pair's window context at one candle in one pass (`context_windows`); each equals
    the pair's own `context_window` (the training function over its tails), with the pairs that do not share the
    universe's bars among them: a gap, a short history, one a candle behind."""
    held = {s: f.iloc[:-3] for s, f in universe.items()}
    held["GAP/USDT"] = universe["XRP/USDT"].drop(index=range(1000, 1010)).iloc[:-3].reset_index(drop=True)
    held["NEW/USDT"] = universe["ETH/USDT"].iloc[-200:-3].reset_index(drop=True)  # fewer bars than a full tail
    held["LATE/USDT"] = universe["SOL/USDT"].iloc[:-4]  # its newest candle is not stored yet
    tails = window_universe(held, held["BTC/USDT"]["timestamp"].iloc[-1], "1h", 60)
    cross = cross_section_of(tails)
    higher = {s: {"4h": resample(f, "4h"), "1d": resample(f, "1D")} for s, f in held.items() if s != "ETH/USDT"}
    batched = context_windows("1h", tails, higher, rows=60, cross_section=cross)
    assert sorted(batched) == sorted(tails)
    for symbol in tails:
        alone = context_window(symbol, "1h", tails, higher.get(symbol), rows=60, cross_section=cross)
        assert alone.shape == (60, N_CONTEXT)
        np.testing.assert_array_equal(batched[symbol], alone, err_msg=symbol)
        assert batched[symbol].tobytes() == alone.tobytes()  # the same bits, NaN included
    assert np.isfinite(batched["SOL/USDT"][-1]).all()  # the shared block is computed, not all NaN
    # and the one-pass value is the training value: the whole history's context at the same bar
    full = context_matrix("SOL/USDT", "1h", held, higher["SOL/USDT"])
    np.testing.assert_array_equal(batched["SOL/USDT"], full[-60:])


@pytest.mark.realdata
def test_on_the_real_universe_the_serving_context_is_the_training_context() -> None:
    """34 real pairs on 1h with SOL's 4h and 1d candles: the context served at a bar (from tails of what a server
    holds) equals the training row bit for bit, at bars spread over the history; a warm row is finite."""
    if not SHARED_OHLCV.is_dir():
        pytest.skip(f"real data not available: {SHARED_OHLCV} is absent")
    stems = sorted(path.name.removesuffix("-1h.parquet") for path in SHARED_OHLCV.glob("*-1h.parquet"))
    universe = {stem.replace("_", "/"): shared_candles(stem, "1h") for stem in stems}
    higher = {tf: shared_candles("SOL_USDT", tf) for tf in ("4h", "1d")}
    full = context_matrix("SOL/USDT", "1h", universe, higher)
    n = len(universe["SOL/USDT"])
    for end in np.linspace(context_tail("1h") + 30, n - 1, 4).round().astype(int):
        stamp = universe["SOL/USDT"]["timestamp"].iloc[end]
        held = {s: f[f["timestamp"] <= stamp] for s, f in universe.items()}
        np.testing.assert_array_equal(context_window("SOL/USDT", "1h", held, higher, rows=1)[-1], full[end])
    assert np.isfinite(full[n // 2]).all()  # BTC's file ends before SOL's: the newest rows' rel_btc are NaN, rightly


@pytest.mark.parametrize("gaps", [False, True], ids=["every pair with the same bars", "a gap, a short and a late pair"])
def test_the_serving_cross_section_holds_the_same_bits_where_the_windows_read_it(
    universe: dict[str, pd.DataFrame], gaps: bool
) -> None:
    """The refresh computes the cross-section's ranks at each pair's last window rows only (`rows`), and builds its
    frames without aligning pairs that share their bars: every value a window reads is the whole computation's."""
    held = {s: f.iloc[:-3] for s, f in universe.items()}
    if gaps:
        held["GAP/USDT"] = universe["XRP/USDT"].drop(index=range(1000, 1010)).iloc[:-3].reset_index(drop=True)
        held["NEW/USDT"] = universe["ETH/USDT"].iloc[-200:-3].reset_index(drop=True)
        held["LATE/USDT"] = universe["SOL/USDT"].iloc[:-4]
    tails = window_universe(held, held["BTC/USDT"]["timestamp"].iloc[-1], "1h", 60)
    whole, served = cross_section_of(tails), cross_section_of(tails, 60)
    for lag in whole.returns:
        pd.testing.assert_frame_equal(served.returns[lag], whole.returns[lag], check_exact=True)
        pd.testing.assert_series_equal(served.mean_returns[lag], whole.mean_returns[lag], check_exact=True)
    pd.testing.assert_frame_equal(served.volatility, whole.volatility, check_exact=True)
    for name in ("rank_return", "rank_volatility"):
        mine, all_bars = getattr(served, name), getattr(whole, name)
        assert len(mine) < len(all_bars) / 4  # only the bars the windows read
        for symbol, frame in tails.items():
            bars = frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)[-60:]
            np.testing.assert_array_equal(mine[symbol].reindex(bars), all_bars[symbol].reindex(bars), err_msg=symbol)
    higher = {s: {"4h": resample(f, "4h"), "1d": resample(f, "1D")} for s, f in held.items()}
    one_pass = context_windows("1h", tails, higher, rows=60, cross_section=served)
    for symbol in tails:
        alone = context_window(symbol, "1h", tails, higher[symbol], rows=60, cross_section=whole)
        assert one_pass[symbol].tobytes() == alone.tobytes(), symbol


def test_a_pairs_next_tail_reuses_its_last_tails_rows_with_the_same_bits() -> None:
    """The refresh's cross-section inputs (`OwnColumnsMemo`): the tail moved on by one or several candles, the
    same tail again, one whose overlap has a corrected close, one with a gap, one from elsewhere: each equals
    `own_columns` of that tail, NaN and all."""
    candles = random_walk_candles(900, timeframe="1h", seed=7)
    corrected = candles.copy()
    corrected.loc[650, "close"] *= 1.001
    gap = candles.drop(index=range(700, 705)).reset_index(drop=True)
    tails = [
        candles.iloc[100:600],
        candles.iloc[101:601],  # moved on by one candle
        candles.iloc[101:601],  # the same tail again
        candles.iloc[110:610],  # by ten
        candles.iloc[115:610],  # shorter, same end
        corrected.iloc[200:700],  # a close in the overlap differs
        gap.iloc[300:795],  # bars missing inside the overlap
        candles.iloc[800:900],  # no overlap
        candles.iloc[805:830],  # too little overlap
    ]
    memo = OwnColumnsMemo()
    for tail in tails:
        served, whole = memo.of("SOL/USDT", tail), own_columns(tail)
        assert served.keys() == whole.keys()
        for name in whole:
            assert served[name].tobytes() == whole[name].tobytes(), (tail.index[0], name)
