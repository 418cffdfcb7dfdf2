"""Serving computes the same features as training, on every real pair of ../shared/data (15m and 1h).

Training computes features over a pair's whole history; serving over the last SERVING_TAIL candles only.
The finite-memory columns must come out bit-identical and the recursive ones (RSI, MACD, ATR) within 1e-6,
for windows ending anywhere in the history: a model must never see at serving time inputs it was not
trained on. Also checks that the real features are finite and not degenerate.

Run with `-s` to print the worst serving-vs-training difference seen per column.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from signals.features.cnn import (
    FEATURE_NAMES,
    FINITE_MEMORY_FEATURES,
    FIRST_VALID_ROW,
    LOOKBACK,
    MIN_CANDLES,
    SERVING_TAIL,
    compute_features,
    serving_window,
    training_windows,
)
from signals.features.ppo import (
    LONG_POSITION,
    PPO_FEATURE_NAMES,
    PPO_MARKET_FEATURES,
    PPO_MIN_CANDLES,
    market_windows,
    observation,
    serving_observation,
)
from tests.support.paths import SHARED_OHLCV, shared_candles

pytestmark = pytest.mark.realdata

TIMEFRAMES = ("15m", "1h")
EXPECTED_PAIRS = 34
PARITY_TOLERANCE = 1e-6
NON_NEGATIVE_FEATURES = ("range_hl", "upper_wick", "lower_wick", "bb_width", "natr_14")
SPREAD_ENDS = 25  # windows checked per history past the serving tail (fewer for PPO: same feature code path)
PPO_SPREAD_ENDS = 6
FIRST_WINDOW_END = MIN_CANDLES - 1
FIRST_PPO_WINDOW_END = PPO_MIN_CANDLES - 1

# Worst |serving - training| seen per column over every checked window: printed at the end of the module.
WORST_WINDOW_DIFF: dict[str, float] = dict.fromkeys(FEATURE_NAMES, 0.0)
WORST_PPO_DIFF: dict[str, float] = dict.fromkeys(PPO_MARKET_FEATURES, 0.0)


def _shared_files() -> list[tuple[str, str]]:
    if not SHARED_OHLCV.is_dir():
        return []
    return [
        (path.name.removesuffix(f"-{tf}.parquet"), tf)
        for tf in TIMEFRAMES
        for path in sorted(SHARED_OHLCV.glob(f"*-{tf}.parquet"))
    ]


SHARED_FILES = _shared_files()
NO_DATA = f"real data not available: {SHARED_OHLCV} is absent (set SIGNALS_SHARED_DATA to ../shared/data)"
HISTORY_PARAMS = [pytest.param(pair, id=f"{pair[0]}-{pair[1]}") for pair in SHARED_FILES] or [
    pytest.param(("none", "15m"), id="no-shared-data", marks=pytest.mark.skip(reason=NO_DATA))
]


@pytest.fixture(scope="module", params=HISTORY_PARAMS)
def history(request: pytest.FixtureRequest) -> pd.DataFrame:
    """One validated real history; module-scoped so each file is read once for all the tests below."""
    stem, timeframe = request.param
    return shared_candles(stem, timeframe)


@pytest.fixture(scope="module", autouse=True)
def report_worst_differences() -> Iterator[None]:
    yield
    lines = [f"worst |serving - training| per column over {len(SHARED_FILES)} files (SERVING_TAIL={SERVING_TAIL}):"]
    lines.append(f"  {'column':<16}{'cnn window':>12}{'ppo (scaled)':>14}")
    for name in FEATURE_NAMES:
        ppo = f"{WORST_PPO_DIFF[name]:.2e}" if name in WORST_PPO_DIFF else "-"
        lines.append(f"  {name:<16}{WORST_WINDOW_DIFF[name]:>12.2e}{ppo:>14}")
    print("\n" + "\n".join(lines))


def sample_window_ends(n_candles: int, n_spread: int) -> list[int]:
    """Bars to serve at: the first possible one and others whose serving tail is the whole history, then
    `n_spread` bars from the first whose tail drops a candle to the very last bar of the history."""
    whole_history = [FIRST_WINDOW_END, FIRST_WINDOW_END + 1, SERVING_TAIL // 2, SERVING_TAIL - 1]
    spread = np.linspace(SERVING_TAIL, n_candles - 1, n_spread).round().astype(int).tolist()
    return sorted({t for t in [*whole_history, *spread, n_candles - 1] if t < n_candles})


def _record(worst: dict[str, float], names: tuple[str, ...], diff: np.ndarray) -> None:
    for name, value in zip(names, diff.max(axis=0), strict=True):
        worst[name] = max(worst[name], float(value))


def test_shared_data_holds_all_34_pairs_on_each_timeframe() -> None:
    """Guards the parity tests below against silently checking fewer pairs than the data set has."""
    if not SHARED_FILES:
        pytest.skip(NO_DATA)
    for tf in TIMEFRAMES:
        assert sum(1 for _, file_tf in SHARED_FILES if file_tf == tf) == EXPECTED_PAIRS, tf


def test_serving_window_matches_the_training_window_ending_at_the_same_bar(history: pd.DataFrame) -> None:
    assert len(history) > SERVING_TAIL + LOOKBACK
    windows, ends = training_windows(history)
    finite_memory = [FEATURE_NAMES.index(name) for name in FINITE_MEMORY_FEATURES]

    for t in sample_window_ends(len(history), SPREAD_ENDS):
        i = t - FIRST_WINDOW_END
        assert ends[i] == history["timestamp"].iloc[t]
        served, trained = serving_window(history.iloc[: t + 1]), windows[i]
        _record(WORST_WINDOW_DIFF, FEATURE_NAMES, np.abs(served.astype(np.float64) - trained))

        at = f"window ending at row {t} ({ends[i].isoformat()})"
        if t < SERVING_TAIL:  # the tail is the whole history: the very same computation
            np.testing.assert_array_equal(served, trained, err_msg=at)
        else:
            np.testing.assert_array_equal(
                served[:, finite_memory], trained[:, finite_memory], err_msg=f"{FINITE_MEMORY_FEATURES}, {at}"
            )
            np.testing.assert_allclose(served, trained, rtol=0, atol=PARITY_TOLERANCE, err_msg=at)


def test_serving_observation_matches_the_training_market_window(history: pd.DataFrame) -> None:
    windows, ends = market_windows(history)
    market_names = tuple(PPO_MARKET_FEATURES)
    exact_ppo = [PPO_FEATURE_NAMES.index(name) for name in market_names if name in FINITE_MEMORY_FEATURES]

    for t in sample_window_ends(len(history), PPO_SPREAD_ENDS):
        i = t - FIRST_PPO_WINDOW_END
        assert ends[i] == history["timestamp"].iloc[t]
        served = serving_observation(history.iloc[: t + 1], LONG_POSITION)
        trained = observation(windows[i], LONG_POSITION)
        _record(WORST_PPO_DIFF, market_names, np.abs(served[:, :-1].astype(np.float64) - trained[:, :-1]))

        at = f"observation ending at row {t} ({ends[i].isoformat()})"
        if t < SERVING_TAIL:
            np.testing.assert_array_equal(served, trained, err_msg=at)
        else:
            np.testing.assert_array_equal(served[:, exact_ppo], trained[:, exact_ppo], err_msg=at)
            np.testing.assert_allclose(served, trained, rtol=0, atol=PARITY_TOLERANCE, err_msg=at)


def test_real_features_are_finite_and_not_degenerate(history: pd.DataFrame) -> None:
    """After the warm-up every value is finite and no column is constant (a constant column carries no
    information and usually means a broken indicator); price-range columns are never negative, RSI stays in
    its [0, 100] band."""
    features = compute_features(history).iloc[FIRST_VALID_ROW:]

    not_finite = features.columns[~np.isfinite(features.to_numpy()).all(axis=0)].tolist()
    assert not not_finite, f"non-finite values after row {FIRST_VALID_ROW} in {not_finite}"
    constant = features.columns[features.std().to_numpy() == 0].tolist()
    assert not constant, f"constant columns {constant}"
    assert (features.loc[:, list(NON_NEGATIVE_FEATURES)] >= 0).all().all()
    assert features["rsi_14"].between(-0.5, 0.5).all()
