"""Pooled training over pairs of different history lengths: four pairs traded since 2020-09 beside pairs listed in
2024 (../shared/data's `ohlcv_2020/` + `ohlcv/`).

Folds are cut on calendar time over every pair's samples, so a fold before 2024 tests the long pairs only and a
young pair is scored from the fold where its samples begin; with four years of 1d bars the walk-forward runs,
where 2024's 250 bars alone leave every fold without training data. With the confirmation block (the newest 20 %
of the span, held back), a pair listed in 2024 is scored there on 1d, not in the walk-forward.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from signals.features.cnn import LOOKBACK
from signals.models.cnn_lstm.dataset import NS, build_samples, fold_edges, labelled_before, within
from signals.models.cnn_lstm.training import TrainConfig, TrainingResult, train_pooled
from tests.support.factories import random_walk_candles
from tests.support.models import TINY

LONG, YOUNG = "BTC/USDT", "SUI/USDT"
CONFIG = TrainConfig(epochs=1, batch_size=64, seed=0)  # the default 4 folds on the last half of the time span


def uneven_pairs() -> dict[str, pd.DataFrame]:
    """1d bars as the shared data holds them: one pair from 2020-09-20 (1,447 bars), one from 2024-01-01 (249)."""
    return {
        LONG: random_walk_candles(1447, timeframe="1d", seed=1, start="2020-09-20"),
        YOUNG: random_walk_candles(249, timeframe="1d", seed=2, start="2024-01-01"),
    }


@pytest.fixture(scope="module")
def pooled() -> TrainingResult:
    return train_pooled(uneven_pairs(), "1d", CONFIG, TINY)


def test_folds_are_cut_on_calendar_time_and_a_young_pair_appears_from_the_fold_where_its_samples_begin() -> None:
    samples = build_samples(uneven_pairs(), "1d", horizon=6, stop_atr=1.5)
    young = samples.pair == samples.symbols.index(YOUNG)
    edges = fold_edges(samples, folds=4, test_share=0.5)
    assert edges[0][0] > pd.Timestamp("2022-09-01", tz="UTC").value  # the last half of four years, not of 2024
    embargo = LOOKBACK * 86400 * NS
    seen_young = 0
    for start, end in edges:
        test = within(samples, start, end)
        assert (~young[test]).any()  # every fold tests the long pair
        if end <= samples.time_ns[young].min():
            assert not young[test].any()  # a fold before the young pair's first sample: none of it, and that is fine
        seen_young += int(young[test].sum())
        assert len(labelled_before(samples, start, embargo)) > 300  # every fold has years to learn from
    assert seen_young == int(young.sum())  # every sample of the young pair is tested once, the newest included


def test_four_years_of_1d_bars_give_walk_forward_folds_that_2024_alone_cannot(pooled: TrainingResult) -> None:
    no_confirmation = CONFIG.model_copy(update={"confirm_share": 0.0})  # the most 2024 alone could give the folds
    alone = train_pooled({YOUNG: uneven_pairs()[YOUNG]}, "1d", no_confirmation, TINY)
    skipped = [fold.get("skipped") for fold in alone.walk_forward["folds"]]
    assert skipped == ["too few samples before or inside this block"] * 4
    folds = pooled.walk_forward["folds"]
    assert [fold["fold"] for fold in folds] == [1, 2, 3, 4] and not any("skipped" in fold for fold in folds)
    confirmation_start = pooled.confirmation["span"]["start"]
    for fold in folds:
        assert fold["train"]["last"] < fold["test"]["first"] <= fold["test"]["last"] < confirmation_start
    assert pooled.walk_forward["pooled"]["n"] == pooled.walk_forward["pairs"][LONG]["n"] > 500


def test_a_pair_listed_in_2024_is_scored_on_the_confirmation_block_and_gets_a_break_even_hit_rate(
    pooled: TrainingResult,
) -> None:
    """The confirmation block holds back the newest 20 % of four years (from about 2023-12): the 2024 pair's daily
    samples (from 2024-04, after the indicators' warm-up and the lookback) all fall in it, so it has no walk-forward
    score and no training sample; the served model is scored on it there, and its break-even hit rate comes from
    its own bars rather than being NaN."""
    assert YOUNG not in pooled.walk_forward["pairs"]
    assert pooled.confirmation["pairs"][YOUNG]["n"] > 100 and pooled.confirmation["pairs"][LONG]["n"] > 100
    assert pooled.data_range["val"]["last"] < pooled.confirmation["span"]["start"]
    for symbol in (LONG, YOUNG):
        rate = pooled.break_even[symbol]
        assert not math.isnan(rate) and 0.5 < rate < 1.0
    assert np.isfinite(pooled.fit.temperature_of(YOUNG))
