"""CNN-LSTM features, direction labels and the PPO observation, specified on tiny synthetic candle frames.

Every frame here is built in this file from a seed, so each test documents the exact input it reasons
about. The real-data counterpart (serving vs training parity on every pair) is `test_features_parity.py`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from signals.core.errors import NotEnoughCandles
from signals.core.vocab import LONG, NO_TRADE, SHORT
from signals.data.candles import PRICE_COLUMNS, empty_candles, validate_candles
from signals.features.cnn import (
    FEATURE_HASH,
    FEATURE_NAMES,
    FINITE_MEMORY_FEATURES,
    FIRST_VALID_ROW,
    LOOKBACK,
    MIN_CANDLES,
    N_FEATURES,
    SERVING_TAIL,
    compute_features,
    feature_matrix,
    serving_window,
    training_windows,
)
from signals.features.indicators import atr
from signals.features.labels import (
    break_even_hit_rate,
    round_trip_cost,
    trade_plan_labels,
    trade_plan_outcomes,
)
from signals.features.ppo import (
    CLIP,
    FLAT,
    LONG_POSITION,
    PPO_FEATURE_NAMES,
    PPO_LOOKBACK,
    PPO_MARKET_FEATURES,
    PPO_MIN_CANDLES,
    PPO_OBS_SHAPE,
    market_features,
    market_windows,
    observation,
    serving_observation,
)

FINITE_MEMORY_PPO = tuple(name for name in PPO_MARKET_FEATURES if name in FINITE_MEMORY_FEATURES)
PARITY_TOLERANCE = 1e-6
FIRST_WINDOW_END = MIN_CANDLES - 1  # the first bar a (60, 15) window can end at
FIRST_PPO_WINDOW_END = PPO_MIN_CANDLES - 1
ATR_PERIOD = 14  # TA-Lib's ATR(14) has its first value at row 14


def random_walk(n: int, seed: int, start_price: float = 100.0, start: str = "2024-01-01") -> pd.DataFrame:
    """A valid 15m candle frame: geometric random-walk closes, open = previous close, wicks, log-normal volume."""
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(0.0, 0.005, n)))
    open_ = np.concatenate([[start_price], close[:-1]])
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.002, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.002, n)))
    volume = rng.lognormal(5.0, 1.0, n)
    timestamps = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n, freq="15min")
    frame = pd.DataFrame(
        {"timestamp": timestamps, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )
    return validate_candles(frame, "15m")


def with_garbage_after(candles: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """`candles` with every bar after row t replaced by an unrelated (but valid) market at another price level."""
    garbage = random_walk(len(candles), seed=seed, start_price=3 * candles["close"].iloc[t])
    garbage["volume"] *= 50.0
    out = candles.copy()
    columns = [*PRICE_COLUMNS, "volume"]
    out.loc[t + 1 :, columns] = garbage.loc[t + 1 :, columns].to_numpy()
    return validate_candles(out, "15m")


def feature_array(candles: pd.DataFrame) -> np.ndarray:
    return compute_features(candles).to_numpy()


def window_index(end_row: int) -> int:
    """Index into `training_windows(...)` of the window that ends at candle row `end_row`."""
    return end_row - FIRST_WINDOW_END


def assert_serving_matches_training(served: np.ndarray, trained: np.ndarray, *, exact: bool) -> None:
    """Parity contract: within 1e-6 everywhere, bit-identical on the finite-memory columns (and all if `exact`)."""
    columns = FEATURE_NAMES if exact else FINITE_MEMORY_FEATURES
    for name in columns:
        j = FEATURE_NAMES.index(name)
        np.testing.assert_array_equal(served[:, j], trained[:, j], err_msg=f"column {name}")
    np.testing.assert_allclose(served, trained, rtol=0, atol=PARITY_TOLERANCE)


# --- names, hash, shapes ---------------------------------------------------------------------------------


def test_feature_names_are_the_15_documented_columns_in_training_order() -> None:
    """The order is the tensor layout a stored model was trained on: reordering silently scrambles its inputs."""
    assert FEATURE_NAMES == (
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
    assert N_FEATURES == len(set(FEATURE_NAMES)) == 15
    assert LOOKBACK == 60


def _names_hash(names: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def test_feature_hash_is_stable_across_runs_and_versions() -> None:
    """Models store this hash and are checked against it at load; it must never drift on its own."""
    assert FEATURE_HASH == _names_hash(FEATURE_NAMES)
    assert FEATURE_HASH == "aa8c573d4165714d90d8b55a14c2fd5bc0f34290885f1a137ff64aa7d1dc6217"


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(FEATURE_NAMES[1:] + FEATURE_NAMES[:1], id="reordered"),
        pytest.param(("log_return_2", *FEATURE_NAMES[1:]), id="renamed"),
        pytest.param(FEATURE_NAMES[:-1], id="dropped"),
        pytest.param((*FEATURE_NAMES, "obv"), id="appended"),
        pytest.param(("log_return_1log_return_4", *FEATURE_NAMES[2:]), id="two-names-merged"),
    ],
)
def test_feature_hash_changes_when_the_names_change(changed: tuple[str, ...]) -> None:
    assert _names_hash(changed) != FEATURE_HASH


def test_compute_features_is_aligned_with_the_candles() -> None:
    candles = random_walk(150, seed=1)
    features = compute_features(candles)
    assert list(features.columns) == list(FEATURE_NAMES)
    assert len(features) == len(candles)
    assert (features.index == pd.DatetimeIndex(candles["timestamp"])).all()


def test_first_valid_row_is_the_first_row_where_every_column_is_defined() -> None:
    """MACD(12, 26, 9) is the last column to start; a row earlier would feed NaN into the first window."""
    values = feature_array(random_walk(150, seed=2))
    assert np.isfinite(values[FIRST_VALID_ROW:]).all()
    assert np.isnan(values[FIRST_VALID_ROW - 1]).any()
    assert MIN_CANDLES == FIRST_VALID_ROW + LOOKBACK


def test_training_windows_are_every_complete_60_by_15_float32_window() -> None:
    candles = random_walk(200, seed=3)
    windows, ends = training_windows(candles)
    values = feature_array(candles)

    assert windows.shape == (len(candles) - MIN_CANDLES + 1, LOOKBACK, N_FEATURES)
    assert windows.dtype == np.float32
    assert len(ends) == len(windows)
    for i in (0, 57, len(windows) - 1):
        end = FIRST_WINDOW_END + i
        assert ends[i] == candles["timestamp"].iloc[end]
        np.testing.assert_array_equal(windows[i], values[end - LOOKBACK + 1 : end + 1].astype(np.float32))


def test_training_windows_of_a_too_short_history_are_empty() -> None:
    windows, ends = training_windows(random_walk(MIN_CANDLES - 1, seed=4))
    assert windows.shape == (0, LOOKBACK, N_FEATURES)
    assert windows.dtype == np.float32
    assert len(ends) == 0


def test_serving_window_is_60_by_15_float32_ending_at_the_last_candle() -> None:
    candles = random_walk(MIN_CANDLES, seed=5)
    window = serving_window(candles)
    assert window.shape == (LOOKBACK, N_FEATURES)
    assert window.dtype == np.float32
    np.testing.assert_array_equal(window[-1], feature_array(candles)[-1].astype(np.float32))


@pytest.mark.parametrize("n", [0, 1, MIN_CANDLES - 1])
def test_serving_window_with_too_few_candles_says_how_many_were_found_and_needed(n: int) -> None:
    candles = empty_candles() if n == 0 else random_walk(n, seed=6)
    with pytest.raises(NotEnoughCandles, match=rf"found {n} closed candles, need at least {MIN_CANDLES}\b"):
        serving_window(candles)


@pytest.mark.parametrize("t", [FIRST_WINDOW_END, 250, SERVING_TAIL - 1, SERVING_TAIL, 699])
def test_serving_window_equals_the_training_window_ending_at_the_same_bar(t: int) -> None:
    """Serving sees only the last SERVING_TAIL candles; training saw the whole history. While the history is
    shorter than the tail both compute the very same thing; past it the recursive indicators (RSI, MACD, ATR)
    may differ in their last bits, never by more than 1e-6."""
    candles = random_walk(700, seed=7)
    windows, _ = training_windows(candles)
    served = serving_window(candles.iloc[: t + 1])
    assert_serving_matches_training(served, windows[window_index(t)], exact=t < SERVING_TAIL)


# --- scale-free --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1e-6, 1e6])
@pytest.mark.parametrize("start_price", [60_000.0, 1e-5], ids=["btc-level", "pepe-level"])
def test_features_do_not_depend_on_the_price_level(factor: float, start_price: float) -> None:
    """PEPE trades at 1e-5 and BTC at 6e4: one network must see the same inputs for the same relative moves.
    Every price quantity is divided by the close or is a ratio of prices; RSI is a ratio of price changes."""
    candles = random_walk(300, seed=8, start_price=start_price)
    rescaled = candles.copy()
    rescaled[list(PRICE_COLUMNS)] *= factor

    original, scaled = feature_array(candles), feature_array(rescaled)
    np.testing.assert_array_equal(np.isnan(original), np.isnan(scaled))
    np.testing.assert_allclose(scaled[FIRST_VALID_ROW:], original[FIRST_VALID_ROW:], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(serving_window(rescaled), serving_window(candles), rtol=1e-6, atol=1e-9)


# --- flat market ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("price", [0.1, 1 / 3, 61_234.57, 1.234e-5, 7.0])
def test_flat_market_gives_finite_neutral_features(price: float) -> None:
    """Constant prices and volume make every std, range and ATR zero. No column may divide by that zero, and the
    ones with a declared flat-market value must give it exactly, whatever rounding the price level brings
    (20 x 0.1 / 20 is not 0.1 in floating point): %B 0.5, widths and z-score 0.

    RSI is only required to be finite: TA-Lib defines the RSI of a market that does not move as 0."""
    n = 150
    candles = validate_candles(
        pd.DataFrame(
            {
                "timestamp": pd.date_range(pd.Timestamp("2024-01-01", tz="UTC"), periods=n, freq="15min"),
                **{column: np.full(n, price) for column in PRICE_COLUMNS},
                "volume": np.full(n, 1000 / 3),
            }
        ),
        "15m",
    )
    features = compute_features(candles).iloc[FIRST_VALID_ROW:]

    assert np.isfinite(features.to_numpy()).all()
    for name in ("log_return_1", "log_return_4", "log_return_16", "range_hl", "body", "upper_wick", "lower_wick"):
        assert (features[name] == 0.0).all(), name
    for name in ("macd", "macd_signal", "macd_hist"):
        assert (features[name].abs() <= 1e-12).all(), name
    assert (features["natr_14"] == 0.0).all()
    assert (features["bb_width"] == 0.0).all()
    assert (features["bb_percent_b"] == 0.5).all()
    assert (features["volume_z_20"] == 0.0).all()
    assert np.isfinite(serving_window(candles)).all()
    assert np.isfinite(serving_observation(candles, FLAT)).all()


# --- no look-ahead -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [FIRST_VALID_ROW, FIRST_WINDOW_END, 150, 298])
def test_features_at_t_do_not_change_when_every_later_candle_is_garbage(t: int) -> None:
    """Row t may only use candles <= t: the future is unknown when the bar at t closes. The garbage is an
    unrelated valid market at 3x the price and 50x the volume, so any peek ahead shows."""
    candles = random_walk(300, seed=9)
    garbled = with_garbage_after(candles, t, seed=99)

    original, changed = feature_array(candles), feature_array(garbled)
    np.testing.assert_array_equal(changed[: t + 1], original[: t + 1])
    if t + 1 < len(candles):  # the garbage really is different, so the check above could have failed
        assert not np.allclose(changed[t + 1 :], original[t + 1 :], equal_nan=True)


@pytest.mark.parametrize("t", [FIRST_WINDOW_END, 150, 298])
def test_windows_ending_at_t_do_not_change_when_every_later_candle_is_garbage(t: int) -> None:
    """The training window, the PPO market window and the serving window that end at t are all blind to the
    future; and the serving window a server computes at t is the window training used for that bar."""
    candles = random_walk(300, seed=10)
    garbled = with_garbage_after(candles, t, seed=98)

    windows, _ = training_windows(candles)
    garbled_windows, _ = training_windows(garbled)
    np.testing.assert_array_equal(garbled_windows[window_index(t)], windows[window_index(t)])

    ppo_windows, _ = market_windows(candles)
    garbled_ppo_windows, _ = market_windows(garbled)
    ppo_index = t - FIRST_PPO_WINDOW_END
    np.testing.assert_array_equal(garbled_ppo_windows[ppo_index], ppo_windows[ppo_index])

    np.testing.assert_array_equal(serving_window(garbled.iloc[: t + 1]), garbled_windows[window_index(t)])


# --- labels ----------------------------------------------------------------------------------------------------


def quiet_market(n: int = 60) -> pd.DataFrame:
    """Close 100 on every bar, high 101, low 99: the true range is 2 on every bar, so ATR(14) is exactly 2."""
    return validate_candles(
        pd.DataFrame(
            {
                "timestamp": pd.date_range(pd.Timestamp("2024-01-01", tz="UTC"), periods=n, freq="15min"),
                "open": 100.0,
                "high": 101.0,
                "low": 99.0,
                "close": 100.0,
                "volume": 10.0,
            }
        ),
        "15m",
    )


def with_close(candles: pd.DataFrame, row: int, close: float) -> pd.DataFrame:
    """`candles` with bar `row` closing at `close`, its high/low widened to contain it."""
    out = candles.copy()
    out.loc[row, "close"] = close
    out.loc[row, "high"] = max(out.loc[row, "high"], close)
    out.loc[row, "low"] = min(out.loc[row, "low"], close)
    return validate_candles(out, "15m")


def with_bar(candles: pd.DataFrame, row: int, *, high: float | None = None, low: float | None = None) -> pd.DataFrame:
    """`candles` with bar `row` reaching `high` and/or `low` (its open and close stay at 100)."""
    out = candles.copy()
    if high is not None:
        out.loc[row, "high"] = high
    if low is not None:
        out.loc[row, "low"] = low
    return validate_candles(out, "15m")


T, HORIZON = 30, 4  # the plan opens at the close of bar 30 (100.0); ATR is 2, so R = 1.5 x 2 = 3: 103 / 97


@pytest.mark.parametrize(
    ("bars", "expected"),
    [
        pytest.param({2: {"high": 103.0}}, LONG, id="target +1R reached first: LONG"),
        pytest.param({1: {"low": 97.0}}, SHORT, id="-1R reached first: SHORT"),
        pytest.param({1: {"high": 104.0, "low": 96.0}}, NO_TRADE, id="both in one candle: both plans stopped"),
        pytest.param({3: {"low": 96.0}, 1: {"high": 103.5}}, LONG, id="the earlier barrier decides"),
        pytest.param({2: {"low": 96.5}, 3: {"high": 110.0}}, SHORT, id="a later target does not undo a stop"),
        pytest.param({}, NO_TRADE, id="neither within the horizon: NO_TRADE"),
        pytest.param({HORIZON + 1: {"high": 110.0}}, NO_TRADE, id="after the horizon does not count"),
        pytest.param({HORIZON: {"high": 102.99}}, NO_TRADE, id="just short of the target"),
    ],
)
def test_the_label_is_what_the_served_plan_would_have_done(bars: dict[int, dict[str, float]], expected: int) -> None:
    candles = quiet_market()
    for offset, extremes in bars.items():
        candles = with_bar(candles, T + offset, **extremes)
    assert atr(*(candles[c].to_numpy() for c in ("high", "low", "close")))[T] == 2.0  # precondition: R = 3
    assert trade_plan_labels(candles, HORIZON, stop_atr=1.5).iloc[T] == expected


@pytest.mark.parametrize(
    ("bars", "long_r", "short_r", "exit_bars"),
    [
        pytest.param({2: {"high": 103.0}}, 1.0, -1.0, 2, id="target: the long earns 1R, the short loses 1R"),
        pytest.param({1: {"high": 104.0, "low": 96.0}}, -1.0, -1.0, 1, id="both touched: both plans lose 1R"),
        pytest.param({}, 0.0, 0.0, HORIZON, id="timeout: each leaves at the horizon's close"),
    ],
)
def test_plan_outcomes_give_each_plan_its_return_in_r_and_price(
    bars: dict[int, dict[str, float]], long_r: float, short_r: float, exit_bars: int
) -> None:
    candles = quiet_market()
    for offset, extremes in bars.items():
        candles = with_bar(candles, T + offset, **extremes)
    outcomes = trade_plan_outcomes(candles, HORIZON, stop_atr=1.5)
    assert outcomes.risk[T] == pytest.approx(0.03)  # R = 3 on an entry of 100
    assert outcomes.long_r[T] == pytest.approx(long_r) and outcomes.short_r[T] == pytest.approx(short_r)
    assert outcomes.long_return[T] == pytest.approx(0.03 * long_r)
    assert outcomes.bars_to_exit[T] == exit_bars


def test_a_timed_out_plan_earns_the_move_to_the_horizons_close() -> None:
    candles = with_close(quiet_market(), T + HORIZON, 101.5)  # +1.5 % at the horizon, no barrier touched
    outcomes = trade_plan_outcomes(candles, HORIZON, stop_atr=1.5)
    assert outcomes.label[T] == NO_TRADE
    assert outcomes.long_return[T] == pytest.approx(0.015) and outcomes.short_return[T] == pytest.approx(-0.015)


def test_class_codes_are_short_no_trade_long() -> None:
    assert (SHORT, NO_TRADE, LONG) == (0, 1, 2)


@pytest.mark.parametrize("horizon", [1, 5, 12])
def test_last_horizon_labels_and_the_atr_warm_up_are_nan(horizon: int) -> None:
    candles = random_walk(200, seed=11)
    labels = trade_plan_labels(candles, horizon=horizon, stop_atr=1.0)

    assert len(labels) == len(candles)
    assert (labels.index == pd.DatetimeIndex(candles["timestamp"])).all()
    assert labels.iloc[-horizon:].isna().all()
    assert labels.iloc[:ATR_PERIOD].isna().all()
    defined = labels.iloc[ATR_PERIOD:-horizon]
    assert defined.notna().all()
    assert set(defined.unique()) <= {SHORT, NO_TRADE, LONG}
    if horizon == 5:
        assert len(set(defined.unique())) == 3  # a random walk reaches either barrier, or neither


def test_labels_up_to_t_ignore_candles_after_t_plus_horizon() -> None:
    t, horizon = 100, 6
    candles = random_walk(200, seed=12)
    garbled = with_garbage_after(candles, t + horizon, seed=97)

    original = trade_plan_outcomes(candles, horizon, 1.5)
    changed = trade_plan_outcomes(garbled, horizon, 1.5)
    for name in ("label", "touched", "bars_to_exit", "risk", "long_return", "short_return"):
        np.testing.assert_array_equal(getattr(changed, name)[: t + 1], getattr(original, name)[: t + 1], err_msg=name)


@pytest.mark.parametrize(("horizon", "stop_atr"), [(0, 1.5), (-1, 1.5), (4, 0.0), (4, -1.0)])
def test_labels_reject_a_non_positive_horizon_or_stop(horizon: int, stop_atr: float) -> None:
    with pytest.raises(ValueError, match="horizon >= 1 and stop_atr > 0"):
        trade_plan_outcomes(random_walk(50, seed=15), horizon, stop_atr)


@pytest.mark.parametrize(("risk", "cost", "expected"), [(0.01, 0.0, 0.5), (0.01, 0.003, 0.65), (0.03, 0.003, 0.55)])
def test_the_break_even_hit_rate_pays_the_round_trip(risk: float, cost: float, expected: float) -> None:
    """p (R - c) = (1 - p)(R + c): at 1 % risk and 0.3 % round trip, 65 % of plans must reach their target."""
    p = break_even_hit_rate(risk, cost)
    assert p == pytest.approx(expected)
    assert p * (risk - cost) - (1 - p) * (risk + cost) == pytest.approx(0.0, abs=1e-15)
    assert round_trip_cost(0.001, 0.0005) == pytest.approx(0.003)


# --- PPO observation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [FLAT, LONG_POSITION])
def test_ppo_observation_is_50_by_10_float32_with_the_position_last(position: float) -> None:
    obs = serving_observation(random_walk(200, seed=16), position)

    assert PPO_OBS_SHAPE == (PPO_LOOKBACK, 10) == (50, 10)
    assert PPO_FEATURE_NAMES[-1] == "position"
    assert obs.shape == PPO_OBS_SHAPE
    assert obs.dtype == np.float32
    assert (obs[:, -1] == position).all()
    assert (FLAT, LONG_POSITION) == (0.0, 1.0)


def test_ppo_market_columns_are_the_named_cnn_features_times_fixed_constants() -> None:
    candles = random_walk(200, seed=17)
    features = compute_features(candles)
    market = market_features(candles)

    assert market.shape == (len(candles), len(PPO_MARKET_FEATURES)) == (200, 9)
    for j, (name, multiplier) in enumerate(PPO_MARKET_FEATURES.items()):
        expected = np.clip(features[name].to_numpy() * multiplier, -CLIP, CLIP).astype(np.float32)
        np.testing.assert_array_equal(market[:, j], expected, err_msg=name)


def test_ppo_market_columns_are_finite_and_clipped_to_plus_minus_10() -> None:
    """A 40% crash bar pushes 100 x log return far past 10: the policy, which has no scaler, still sees 10."""
    candles = random_walk(200, seed=18)
    crash = len(candles) - 5
    candles.loc[crash:, list(PRICE_COLUMNS)] *= 0.6
    candles.loc[crash, "open"] = candles.loc[crash - 1, "close"]
    candles.loc[crash, "high"] = candles.loc[crash, "open"]
    candles = validate_candles(candles, "15m")

    windows, _ = market_windows(candles)
    obs = serving_observation(candles, LONG_POSITION)
    for market in (windows, obs[:, :-1]):
        assert np.isfinite(market).all()
        assert (np.abs(market) <= CLIP).all()
    assert obs[:, :-1].min() == -CLIP  # the clip was exercised, not just never reached


@pytest.mark.parametrize("n", [PPO_MIN_CANDLES, 300, SERVING_TAIL + 240])
@pytest.mark.parametrize("position", [FLAT, LONG_POSITION])
def test_serving_observation_is_the_last_market_window_plus_the_position(n: int, position: float) -> None:
    candles = random_walk(n, seed=19)
    windows, ends = market_windows(candles)
    assert ends[-1] == candles["timestamp"].iloc[-1]

    served = serving_observation(candles, position)
    expected = observation(windows[-1], position)
    if n <= SERVING_TAIL:
        np.testing.assert_array_equal(served, expected)
    else:
        np.testing.assert_allclose(served, expected, rtol=0, atol=PARITY_TOLERANCE)
        for name in FINITE_MEMORY_PPO:
            j = PPO_FEATURE_NAMES.index(name)
            np.testing.assert_array_equal(served[:, j], expected[:, j], err_msg=name)


def test_serving_observation_with_too_few_candles_says_how_many_were_found_and_needed() -> None:
    n = PPO_MIN_CANDLES - 1
    with pytest.raises(NotEnoughCandles, match=rf"found {n} closed candles, need at least {PPO_MIN_CANDLES}\b"):
        serving_observation(random_walk(n, seed=20), FLAT)


@pytest.mark.parametrize(("bars", "rows"), [(460, 60), (200, 60), (93, 60), (40, 60), (460, 1)])
def test_computing_only_the_last_rows_gives_the_same_bits(bars: int, rows: int) -> None:
    """Serving computes the window's rows only; the values are those of the full computation, bit for bit."""
    candles = random_walk(bars, seed=21)
    full = feature_matrix(candles)
    last = feature_matrix(candles, rows=rows)
    expected = full[-rows:] if bars >= rows else np.vstack([np.full((rows - bars, full.shape[1]), np.nan), full])
    np.testing.assert_array_equal(last, expected)
