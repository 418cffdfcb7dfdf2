"""The feature registry a family's declared inputs are cut by: per-bar columns, then window summaries."""

from __future__ import annotations

import numpy as np
import pytest

from signals.features.cnn import LOOKBACK, N_FEATURES
from signals.features.registry import (
    CONTEXT_WIDTH,
    KNOWN_FEATURES,
    UnknownFeature,
    check_inputs,
    needs_context,
    select,
    window_width,
)


def test_a_row_is_the_newest_bars_then_the_summaries() -> None:
    windows = np.random.default_rng(0).normal(size=(5, LOOKBACK, CONTEXT_WIDTH)).astype(np.float32)
    names = ["log_return_1", "rank_return_16", "rsi_14_mean_60"]
    rows = select(windows, names, 2)
    rsi = KNOWN_FEATURES.index("rsi_14")
    rank = KNOWN_FEATURES.index("rank_return_16")
    assert rows.shape == (5, 2 * 2 + 1)
    np.testing.assert_array_equal(rows[:, :4], windows[:, -2:, [0, rank]].astype(np.float64).reshape(5, 4))
    np.testing.assert_allclose(rows[:, 4], windows[:, :, rsi].astype(np.float64).mean(axis=1), rtol=1e-12)
    for i in range(5):  # a row's bits do not depend on the batch it came in
        np.testing.assert_array_equal(select(windows[i : i + 1], names, 2)[0], rows[i])


def test_context_needs_the_wide_window() -> None:
    assert needs_context(["volatility_regime"]) and window_width(["volatility_regime"]) == CONTEXT_WIDTH
    assert not needs_context(["rsi_14", "rsi_14_mean_60"]) and window_width(["rsi_14"]) == N_FEATURES
    with pytest.raises(ValueError, match="lack the market context"):
        select(np.zeros((1, LOOKBACK, N_FEATURES)), ["volatility_regime"], 1)
    with pytest.raises(UnknownFeature, match="moon_phase"):
        check_inputs(["rsi_14", "moon_phase"], 1)
