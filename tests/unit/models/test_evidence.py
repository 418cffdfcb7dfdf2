"""The universe-wide rule: Benjamini-Hochberg over the retrain with m from the served universe, the pooled veto,
the confirmation veto, a pass, every input stored, and an edge stored before the rule never read as positive."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from signals.contract import schemas
from signals.models.evidence import (
    CONFIRM_ALPHA,
    FDR_Q,
    RULE_TEXT,
    RULE_VERSION,
    STORED_BEFORE_RULE,
    Candidate,
    Confirmation,
    apply_rule,
    benjamini_hochberg,
    edge_at_load,
    family_size,
)
from signals.models.skill import MIN_CALLS, block_bootstrap, one_sided_p
from signals.serving.catalog import ModelEntry
from signals.serving.gate import edge_reason

CONFIRMED = Confirmation("2024-11-01T00:00:00Z", "2024-12-31T23:00:00Z", 80, 0.002, 0.0008, 0.0032, 0.001)


def walk_forward(p: float | None, verdict: str = "positive") -> dict[str, Any]:
    return {
        "verdict": verdict,
        "metric": "expectancy_after_costs_pct",
        "value": 0.003,
        "ci_low": 0.001,
        "ci_high": 0.005,
        "n": 240,
        "source": "walk_forward",
        "p_value": p,
    }


def candidate(p: float | None, *, pooled: str = "positive", confirmation: Confirmation = CONFIRMED) -> Candidate:
    return Candidate(walk_forward(p), pooled, confirmation)


# --- Benjamini-Hochberg ----------------------------------------------------------------------------------------
def test_bh_matches_a_hand_worked_example() -> None:
    """Ten p-values at q = 0.05: critical values k * 0.005. p(1) = 0.001 <= 0.005 and p(2) = 0.008 <= 0.010 pass;
    p(3) = 0.039 > 0.015 and no later p(k) is under k * 0.005, so the step-up stops at rank 2."""
    p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
    result = benjamini_hochberg({f"m{i}": v for i, v in enumerate(p)}, m=10)
    assert [result[f"m{i}"].passed for i in range(10)] == [True, True] + [False] * 8
    assert [result[f"m{i}"].rank for i in range(10)] == list(range(1, 11))
    assert result["m2"].critical == pytest.approx(3 * 0.05 / 10)


def test_bh_steps_up_a_p_value_that_misses_its_own_critical_value() -> None:
    """p = 0.03 misses 1 * 0.05 / 2 = 0.025, but 0.031 <= 2 * 0.05 / 2: both are discoveries (step-up)."""
    result = benjamini_hochberg({"a": 0.03, "b": 0.031}, m=2)
    assert result["a"].passed and result["b"].passed and result["a"].p > result["a"].critical


def test_m_comes_from_the_served_universe_when_fewer_were_tested() -> None:
    """3 pair-models retrained out of 34 x 4 served: m = 136, so rank 1 needs p <= 0.05 / 136 = 0.00037."""
    assert family_size(3, 136) == 136 and family_size(200, 136) == 200 and family_size(0, 0) == 1
    result = benjamini_hochberg({"a": 0.0003, "b": 0.0008, "c": 0.04}, m=family_size(3, 136))
    assert result["a"].m == 136 and result["a"].critical == pytest.approx(0.05 / 136)
    assert result["a"].passed and not result["b"].passed and not result["c"].passed
    uncorrected = benjamini_hochberg({"a": 0.0003, "b": 0.0008, "c": 0.04}, m=3)  # what m = tested would allow
    assert all(r.passed for r in uncorrected.values())


def test_a_missing_p_value_counts_as_one() -> None:
    result = benjamini_hochberg({"a": None, "b": math.nan, "c": 0.0001}, m=3)
    assert result["a"].p == 1.0 and result["b"].p == 1.0 and result["c"].passed and not result["a"].passed


# --- the rule ------------------------------------------------------------------------------------------------
def test_a_pair_model_that_passes_every_part_is_positive_with_every_input_stored() -> None:
    edge = apply_rule({"BTC/USDT 1h": candidate(0.0001)}, universe=136)["BTC/USDT 1h"]
    assert edge["verdict"] == "positive" and edge["walk_forward_verdict"] == "positive" and "reason" not in edge
    rule = edge["rule"]
    assert rule["p"] == 0.0001 and rule["rank"] == 1 and rule["m"] == 136 and rule["q"] == FDR_Q
    assert rule["bh_critical"] == pytest.approx(0.05 / 136) and rule["passed_bh"] and rule["passed"]
    assert rule["pooled_verdict"] == "positive" and rule["tested"] == 1 and rule["universe"] == 136
    assert rule["version"] == RULE_VERSION and rule["text"] == RULE_TEXT and rule["reason"] is None
    confirmation = rule["confirmation"]
    assert {"first", "last", "n_calls", "expectancy", "ci_low", "ci_high", "p", "passed"} <= set(confirmation)
    assert confirmation["passed"] and confirmation["n_calls"] == 80
    assert edge["value"] == 0.003 and edge["n"] == 240  # the walk-forward figures stay as they were


def test_a_p_value_that_does_not_survive_the_correction_is_demoted_to_none_saying_why() -> None:
    edge = apply_rule({"SOL/USDT 1h": candidate(0.012)}, universe=136)["SOL/USDT 1h"]
    assert edge["verdict"] == "none" and edge["walk_forward_verdict"] == "positive"
    assert edge["reason"] == (
        "walk-forward p = 0.012 does not survive Benjamini-Hochberg at q = 0.05 over 136 pair-models "
        "(needed <= 0.00037 at rank 1)"
    )
    assert not edge["rule"]["passed_bh"] and not edge["rule"]["passed"]


def test_a_negative_pooled_verdict_vetoes_a_positive_pair() -> None:
    edge = apply_rule({"XRP/USDT 4h": candidate(0.00001, pooled="negative")}, universe=136)["XRP/USDT 4h"]
    assert edge["verdict"] == "none" and edge["rule"]["passed_bh"] and not edge["rule"]["passed_pooled"]
    assert edge["reason"] == "the pooled walk-forward verdict of its timeframe is negative"
    not_negative = apply_rule({"XRP/USDT 4h": candidate(0.00001, pooled="none")}, universe=136)["XRP/USDT 4h"]
    assert not_negative["verdict"] == "positive"  # the pooled verdict may be none: only negative vetoes


@pytest.mark.parametrize(
    ("confirmation", "needle"),
    [
        (Confirmation("2024-11-01T00:00:00Z", "2024-12-31T23:00:00Z", MIN_CALLS - 1, 0.01, 0.0, 0.02, 0.0001), "only"),
        (Confirmation("2024-11-01T00:00:00Z", "2024-12-31T23:00:00Z", 90, 0.0004, -0.001, 0.002, 0.2), "p = 0.2"),
        (Confirmation("2024-11-01T00:00:00Z", "2024-12-31T23:00:00Z", 90, None, None, None, None), "p = n/a"),
        (Confirmation(None, None, 0, None, None, None, None), "no confirmation block"),
    ],
)
def test_the_confirmation_block_vetoes_a_positive_pair(confirmation: Confirmation, needle: str) -> None:
    edge = apply_rule({"ETH/USDT 15m": candidate(0.00001, confirmation=confirmation)}, universe=136)["ETH/USDT 15m"]
    assert edge["verdict"] == "none" and edge["rule"]["passed_bh"] and not edge["rule"]["confirmation"]["passed"]
    assert needle in edge["reason"]


def test_confirmation_needs_min_calls_and_a_one_sided_p_below_alpha() -> None:
    at = Confirmation("a", "b", MIN_CALLS, 0.001, 0.0, 0.002, CONFIRM_ALPHA - 1e-9)
    assert at.passed and at.failure() is None
    assert not Confirmation("a", "b", MIN_CALLS, 0.001, 0.0, 0.002, CONFIRM_ALPHA).passed


def test_a_walk_forward_verdict_that_is_not_positive_keeps_its_verdict_and_reason() -> None:
    edges = apply_rule(
        {
            "a": Candidate({**walk_forward(0.9, "negative"), "reason": None}, "positive", CONFIRMED),
            "b": Candidate(walk_forward(None, "insufficient_data"), "positive", CONFIRMED),
        },
        universe=136,
    )
    assert edges["a"]["verdict"] == "negative" and edges["a"]["reason"] is None
    assert edges["b"]["verdict"] == "insufficient_data" and edges["b"]["rule"]["p"] == 1.0
    assert edges["a"]["rule"]["reason"] == "walk-forward verdict is negative, not positive"


def test_the_retrain_is_corrected_together() -> None:
    """Three tested with universe 3: BH over the three; the weakest positive is demoted, the strong ones stay."""
    edges = apply_rule({"a": candidate(0.001), "b": candidate(0.04), "c": candidate(0.2)}, universe=3)
    assert [edges[k]["verdict"] for k in "abc"] == ["positive", "none", "none"]
    assert [edges[k]["rule"]["rank"] for k in "abc"] == [1, 2, 3] and edges["b"]["rule"]["m"] == 3


# --- p-values ------------------------------------------------------------------------------------------------
def test_the_one_sided_p_value_is_the_normal_tail_of_value_over_its_standard_error() -> None:
    assert one_sided_p(1.959963984540054, 1.0) == pytest.approx(0.025)
    assert one_sided_p(0.0, 1.0) == pytest.approx(0.5) and one_sided_p(-3.0, 1.0) > 0.99
    assert math.isnan(one_sided_p(0.1, math.nan)) and one_sided_p(0.1, 0.0) == 0.0
    values = np.random.default_rng(3).normal(0.05, 1.0, 4000)
    interval = block_bootstrap(values, None, np.arange(4000), rng=np.random.default_rng(0))
    assert interval.se == pytest.approx(1 / math.sqrt(4000), rel=0.1)  # the bootstrap standard error of a mean
    assert interval.p_above_zero == pytest.approx(one_sided_p(interval.value, interval.se))


# --- at load ---------------------------------------------------------------------------------------------------
def test_a_positive_stored_before_the_rule_is_a_named_state_never_positive() -> None:
    old = {k: v for k, v in walk_forward(None).items() if k != "p_value"}
    edge = edge_at_load(old)
    assert edge["verdict"] == "none" and edge["reason"] == STORED_BEFORE_RULE
    assert edge["rule_status"] == "stored_before_rule" and edge["walk_forward_verdict"] == "positive"
    reason = edge_reason(schemas.Edge.model_validate(edge))
    assert reason is not None and "fails the universe-wide rule: stored before the universe rule: retrain" in reason
    assert edge_at_load(None)["verdict"] == "insufficient_data"
    entry = ModelEntry("cnn-lstm", "cnn-lstm-btc-usdt-1h", "t:v", "v", "BTC/USDT", "1h", {"edge": old})
    assert entry.edge["verdict"] == "none" and entry.edge["rule_status"] == "stored_before_rule"  # what serves
    assert edge_at_load({**old, "verdict": "negative"})["verdict"] == "negative"


def test_an_edge_with_its_rule_reads_as_stored_and_the_gate_names_the_failing_part() -> None:
    passed = edge_at_load(apply_rule({"k": candidate(0.0001)}, universe=136)["k"])
    assert passed["verdict"] == "positive" and passed["rule_status"] == "passed"
    assert edge_reason(schemas.Edge.model_validate(passed)) is None
    failed = edge_at_load(apply_rule({"k": candidate(0.012)}, universe=136)["k"])
    assert failed["rule_status"] == "failed" and failed["rule_version"] == RULE_VERSION
    reason = edge_reason(schemas.Edge.model_validate(failed))
    assert reason is not None and "fails the universe-wide rule: walk-forward p = 0.012 does not survive" in reason
    edited = edge_at_load({**failed, "verdict": "positive"})  # a verdict its own stored inputs contradict
    assert edited["verdict"] == "none" and "does not survive" in edited["reason"]
