"""One table row per score (`signals.models.skill.score`): the same columns in `train`, `evaluate` and `models`."""

from __future__ import annotations

from typing import Any


def _r(value: Any, digits: int = 3) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def with_interval(figure: dict[str, Any] | None, digits: int = 3) -> str | None:
    """`0.512 [0.498, 0.526]` from `{value, ci_low, ci_high}`."""
    if not figure or figure.get("value") is None:
        return None
    low, high = figure.get("ci_low"), figure.get("ci_high")
    interval = f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None and high is not None else ""
    return f"{figure['value']:.{digits}f}{interval}"


def score_row(scores: dict[str, Any], *, as_json: bool) -> dict[str, Any]:
    """The figures a reader needs side by side: accuracy beside its baselines, skill, calls and the edge."""
    if not scores or scores.get("n", 0) == 0:
        return {"n": 0}
    calls = scores.get("calls", {})
    edge = scores.get("edge", {})
    baselines = scores.get("baselines", {})
    if as_json:
        keep = (
            "n",
            "accuracy",
            "majority_share",
            "balanced_accuracy",
            "log_loss",
            "log_loss_skill",
            "brier",
            "brier_skill",
            "ece",
            "sharpness",
            "baselines",
            "direction",
            "calls",
            "edge",
            "class_frequencies",
            "coverage",
            "reliability",
        )
        return {key: scores[key] for key in keep if key in scores}
    return {
        "n": scores["n"],
        "accuracy": with_interval(scores.get("accuracy")),
        "majority": _r(scores.get("majority_share")),
        "reversal": with_interval(baselines.get("reversal")),
        "persistence": with_interval(baselines.get("persistence")),
        "bal_acc": _r(scores.get("balanced_accuracy")),
        "ll_skill": with_interval(scores.get("log_loss_skill")),
        "brier_skill": with_interval(scores.get("brier_skill")),
        "ece": _r(scores.get("ece")),
        "sharpness": _r(scores.get("sharpness")),
        "up_down": with_interval(scores.get("direction", {}).get("accuracy")),
        "up_down_top10": with_interval(scores.get("direction", {}).get("top_decile_accuracy")),
        "calls": calls.get("n"),
        "hit_rate": with_interval(calls.get("hit_rate")),
        "break_even": _r(calls.get("break_even_hit_rate")),
        "exp_%": with_interval(_percent(calls.get("expectancy", calls.get("expectancy_pct"))), 3),
        "edge": edge.get("verdict"),
    }


def _percent(figure: dict[str, Any] | None) -> dict[str, Any] | None:
    if not figure:
        return figure
    return {key: None if value is None else 100 * value for key, value in figure.items()}
