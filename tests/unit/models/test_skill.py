"""What a set of predictions is worth: intervals, baselines, calls after costs, the threshold, the verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from signals.core.vocab import LONG, NO_TRADE, SHORT
from signals.models.skill import (
    Interval,
    Scored,
    block_bootstrap,
    call_returns,
    calls_of,
    choose_threshold,
    score,
    verdict_of,
    wilson_interval,
)


def scored(probabilities: np.ndarray, labels: np.ndarray, *, risk: float = 0.01, blocks: int | None = None) -> Scored:
    """Samples whose LONG plan earns +risk when the label is LONG, -risk when SHORT, 0 otherwise (and vice versa)."""
    n = len(labels)
    long_return = np.where(labels == LONG, risk, np.where(labels == SHORT, -risk, 0.0))
    return Scored(
        probabilities=probabilities,
        labels=labels,
        block=np.arange(n) // (blocks or 1),
        long_return=long_return,
        short_return=-long_return,
        risk=np.full(n, risk),
        reversal=np.full(n, SHORT),
        persistence=labels.copy(),
    )


def test_wilson_interval_matches_the_textbook_and_stays_inside_zero_one() -> None:
    interval = wilson_interval(81, 263)  # Wilson (1927) example as in Newcombe 1998: 0.2553 .. 0.3662
    assert interval.value == pytest.approx(81 / 263)
    assert interval.low == pytest.approx(0.2553, abs=1e-4) and interval.high == pytest.approx(0.3662, abs=1e-4)
    assert wilson_interval(0, 10).low == 0.0 and wilson_interval(10, 10).high == pytest.approx(1.0)
    assert math.isnan(wilson_interval(0, 0).value)


def test_block_bootstrap_interval_brackets_the_mean_and_widens_with_fewer_blocks() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(0.1, 1.0, 4000)
    fine = block_bootstrap(values, None, np.arange(4000), rng=np.random.default_rng(0))
    coarse = block_bootstrap(values, None, np.arange(4000) // 400, rng=np.random.default_rng(0))
    assert fine.low < values.mean() < fine.high and fine.value == pytest.approx(values.mean())
    assert (coarse.high - coarse.low) > (fine.high - fine.low) * 0.5  # 10 blocks: at least as uncertain
    assert fine.high - fine.low == pytest.approx(2 * 1.96 / math.sqrt(4000), rel=0.2)


def test_calls_are_directional_argmaxes_that_clear_the_threshold() -> None:
    probabilities = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.2, 0.35, 0.45]])
    assert calls_of(probabilities, 0.45).tolist() == [LONG, SHORT, NO_TRADE, LONG]
    assert calls_of(probabilities, 0.6).tolist() == [LONG, NO_TRADE, NO_TRADE, NO_TRADE]
    assert calls_of(probabilities, None).tolist() == [NO_TRADE] * 4
    returns = call_returns(
        np.array([LONG, SHORT, NO_TRADE]), np.array([0.02, 0.02, 0.02]), np.array([-0.02] * 3), 0.003
    )
    np.testing.assert_allclose(returns[:2], [0.017, -0.023])
    assert math.isnan(returns[2])


def test_the_threshold_is_the_lowest_confidence_whose_calls_still_pay() -> None:
    # Confident calls are right, the rest are coin flips that lose their costs: the threshold stops above them.
    n = 400
    confidence = np.linspace(0.9, 0.4, n)
    probabilities = np.column_stack([np.zeros(n), 1 - confidence, confidence])
    gross = np.where(np.arange(n) < 100, 0.02, np.where(np.arange(n) % 2 == 0, 0.01, -0.01))
    threshold = choose_threshold(probabilities, gross, -gross, cost=0.003)
    assert threshold is not None
    kept = confidence >= threshold
    assert (gross[kept] - 0.003).mean() > 0
    assert kept.sum() > 100  # it keeps some coin flips while the good calls still pay for them
    losing = choose_threshold(probabilities, -np.abs(gross), -np.abs(gross), cost=0.003)
    assert losing is None  # nothing pays: no threshold, no actionable call


@pytest.mark.parametrize(
    ("interval", "n", "verdict"),
    [
        (Interval(0.01, 0.002, 0.02), 100, "positive"),
        (Interval(-0.01, -0.02, -0.002), 100, "negative"),
        (Interval(0.0, -0.01, 0.01), 100, "none"),
        (Interval(0.05, 0.01, 0.09), 10, "insufficient_data"),
    ],
)
def test_the_verdict_needs_the_whole_interval_on_one_side(interval: Interval, n: int, verdict: str) -> None:
    assert verdict_of(interval, n) == verdict


def test_score_sets_every_figure_beside_its_baselines() -> None:
    rng = np.random.default_rng(3)
    labels = rng.choice([SHORT, NO_TRADE, LONG], size=3000, p=[0.3, 0.2, 0.5])
    perfect = np.eye(3)[labels] * 0.9 + 0.1 / 3
    report = score(scored(perfect, labels, blocks=10), threshold=0.5, cost=0.002)
    assert report["n"] == 3000
    assert report["accuracy"]["value"] == 1.0 and report["majority_share"] == pytest.approx((labels == LONG).mean())
    assert report["baselines"]["persistence"]["value"] == 1.0  # persistence was given the labels themselves
    assert report["baselines"]["reversal"]["value"] == pytest.approx((labels == SHORT).mean())
    assert report["log_loss_skill"]["value"] > 0.5 and report["brier_skill"]["value"] > 0.5
    calls = report["calls"]
    assert calls["n"] == int((labels != NO_TRADE).sum()) and calls["hit_rate"]["value"] == 1.0
    assert calls["expectancy"]["value"] == pytest.approx(0.01 - 0.002)
    assert calls["break_even_hit_rate"] == pytest.approx((0.01 + 0.002) / 0.02)
    assert report["edge"]["verdict"] == "positive"

    flat = np.tile(np.array([0.3, 0.2, 0.5]), (3000, 1))  # the class frequencies themselves
    report = score(scored(flat, labels, blocks=10), threshold=0.45, cost=0.002)
    assert report["log_loss_skill"]["value"] == pytest.approx(0.0, abs=0.01)  # no better than the frequencies
    assert report["sharpness"] == pytest.approx(0.0)
    assert report["edge"]["verdict"] in {"negative", "none"}  # always LONG: right half the time, minus costs


def test_direction_accuracy_counts_only_directional_labels_and_ranks_the_most_confident_tenth() -> None:
    rng = np.random.default_rng(3)
    labels = rng.choice([SHORT, NO_TRADE, LONG], size=2000)
    margin = rng.uniform(0.0, 0.4, size=2000)  # |P(LONG) - P(SHORT)|
    right = margin > 0.2  # the confident half is right about the direction, the rest wrong
    says_up = np.where(right, labels == LONG, labels != LONG)
    p_long = np.where(says_up, 0.3 + margin / 2, 0.3 - margin / 2)
    p_short = np.where(says_up, 0.3 - margin / 2, 0.3 + margin / 2)
    probabilities = np.column_stack([p_short, 1 - p_long - p_short, p_long])
    result = score(scored(probabilities, labels, blocks=20), threshold=None, cost=0.0)["direction"]

    directional = labels != NO_TRADE
    assert result["n"] == int(directional.sum())  # NO_TRADE outcomes have no direction to be right about
    assert result["accuracy"]["value"] == pytest.approx(right[directional].mean())
    assert result["top_decile_accuracy"]["value"] == 1.0  # the tenth with the widest margin is all right
    assert result["reversal"]["value"] == pytest.approx((labels[directional] == SHORT).mean())  # always SHORT here
    assert result["accuracy"]["ci_low"] < result["accuracy"]["value"] < result["accuracy"]["ci_high"]
    assert result["up_share"] == pytest.approx((labels[directional] == LONG).mean())
