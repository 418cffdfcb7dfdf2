"""`signals gate-check`: both controls run end to end through the training pipeline, report their rates with
intervals, and leave the user's model store as it was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from signals.cli import app
from signals.cli.controls import summary_lines
from signals.controls import ControlPlan
from signals.core.errors import InvalidInput
from signals.models.registry import scan_store

runner = CliRunner()


@pytest.fixture(scope="module")
def quick_report() -> dict[str, Any]:
    before = [str(m.tag) for m in scan_store()[0]]
    result = runner.invoke(app, ["gate-check", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    assert [str(m.tag) for m in scan_store()[0]] == before  # trained into a scratch store, not the user's
    start = result.stdout.index("{")
    return json.loads(result.stdout[start:])  # type: ignore[no-any-return]


def test_the_negative_control_counts_retrains_that_would_serve(quick_report: dict[str, Any]) -> None:
    negative = quick_report["negative"]
    assert negative["retrains"] == 2
    assert negative["models"] == 4  # 2 retrains x 2 pairs, each with a stored verdict
    assert len(negative["runs"]) == 2
    assert {run["seed"] for run in negative["runs"]} == {0, 1}  # a new market each retrain
    serving = sum(bool(run["serving"]) for run in negative["runs"])
    assert negative["retrains_serving"] == serving
    rate = negative["false_positive_rate"]
    assert rate["value"] == serving / 2
    assert 0.0 <= rate["ci_low"] <= rate["value"] <= rate["ci_high"] <= 1.0
    assert rate["ci_high"] > 0.5  # two retrains prove little, and the Wilson interval says so
    for run in negative["runs"]:
        assert run["planted"] == []
        assert set(run["verdicts"].values()) <= {"positive", "none", "negative", "insufficient_data"}


def test_the_positive_control_counts_planted_models_that_pass(quick_report: dict[str, Any]) -> None:
    positive = quick_report["positive"]
    assert positive["retrains"] == 1
    assert positive["planted_models"] == 1
    assert positive["noise_models"] == 1
    (run,) = positive["runs"]
    assert run["planted"] == quick_report["plan"]["planted_symbols"]
    assert positive["detected"] == sum(run["verdicts"][s] == "positive" for s in run["planted"])
    assert positive["detection_rate"]["value"] == positive["detected"] / positive["planted_models"]
    assert quick_report["target"]["max_false_positive_rate"] == 0.05
    assert quick_report["plan"]["edge"] == {"z_min": 1.5, "bars": 10, "strength": 0.5}


def test_the_summary_names_both_rates_and_the_target(quick_report: dict[str, Any]) -> None:
    header, negative, positive = summary_lines(quick_report)
    assert header.startswith("gate-check: 2 pairs, 1h, 40 days")
    assert "false-positive rate per retrain" in negative
    assert "target <= 0.05" in negative
    assert "of 2 retrains would serve a plan" in negative
    assert "detection rate" in positive
    assert "of 1 planted pair-models pass" in positive


@pytest.mark.parametrize(
    "bad", [{"retrains": 0}, {"pairs": 0}, {"pairs": 99}, {"pairs": 2, "planted_pairs": 3}, {"days": 0}]
)
def test_a_plan_that_measures_nothing_is_refused(bad: dict[str, int]) -> None:
    with pytest.raises(InvalidInput):
        ControlPlan(**bad)  # type: ignore[arg-type]


def test_bad_options_exit_with_a_message() -> None:
    result = runner.invoke(app, ["gate-check", "--quick", "--pairs", "2", "--planted", "5"])
    assert result.exit_code == 2
    assert "planted pairs must be 1..2" in result.output
