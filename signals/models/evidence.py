"""The universe-wide rule: when a pair-model's edge counts as `positive`, corrected for how many were tested.

Each retrain tests one edge per pair-model (34 pairs x 4 timeframes = 136 for the CNN-LSTM), each at 95 %: about
two no-edge models per retrain would pass by luck alone. So the walk-forward verdict is only the first step, and
the final verdict (the one the gate reads, `metadata["edge"]["verdict"]`) is `positive` only when all of RULE_TEXT
holds. Every input is stored beside the verdict (`edge["rule"]`), with the uncorrected walk-forward verdict, so
that a verdict can be checked and recomputed; an edge stored without them is a named state (`edge_at_load`).

Pure functions and small dataclasses: no store, no training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from signals.contract.schemas import EXPECTANCY_METRIC
from signals.models.skill import MIN_CALLS, P_VALUE_METHOD

RULE_VERSION: Final = "universe-bh-1"
FDR_Q: Final = 0.05  # Benjamini-Hochberg false discovery rate over the pair-models of one retrain
CONFIRM_ALPHA: Final = 0.05  # one-sided level of the confirmation block (a single, later, untouched test)
RULE_TEXT: Final = (
    f"edge rule {RULE_VERSION}: a pair-model is positive only when (a) its walk-forward verdict is positive and its "
    f"one-sided walk-forward p-value (H0: after-cost expectancy <= 0) survives Benjamini-Hochberg at q = {FDR_Q:g} "
    "over m = max(pair-models tested in the retrain, symbols x timeframes of the served universe), where pair-models "
    "not tested count as p = 1 (which only makes it stricter); (b) the pooled walk-forward verdict of its timeframe "
    f"is not negative; (c) on the confirmation block (the newest stretch of time, which the served model never saw) "
    f"its calls number at least {MIN_CALLS} and their one-sided p < {CONFIRM_ALPHA:g}. Otherwise its verdict is the "
    "walk-forward verdict, demoted to at most none"
)
PPO_RULE_TEXT: Final = (
    f"PPO edge rule {RULE_VERSION}: the same shape over policies: the held-out range (after every training bar) is "
    "split in calendar time; its earlier part gives the policy's verdict and one-sided p-value (mean log return per "
    f"bar vs flat, after costs), which must survive Benjamini-Hochberg at q = {FDR_Q:g} over m = policies trained in "
    f"the run (at least 1); its newest part is the confirmation block: at least {MIN_CALLS} round trips and "
    f"one-sided p < {CONFIRM_ALPHA:g}. The pooled veto is the policy's own verdict (one policy over all pairs)"
)
STORED_BEFORE_RULE: Final = "stored before the universe rule: retrain"
NO_EVALUATION: Final = "the model was stored without a walk-forward evaluation; retrain it"


@dataclass(frozen=True)
class BhResult:
    """One pair-model's place in the Benjamini-Hochberg step-up: passed when some rank at or above its own had
    p(k) <= k q / m."""

    p: float
    rank: int
    m: int
    q: float
    critical: float  # rank * q / m: the largest p this rank could have and pass on its own
    passed: bool


def family_size(tested: int, universe: int) -> int:
    """m of the correction: never fewer than the served universe, so a partial retrain is not corrected less."""
    return max(tested, universe, 1)


def benjamini_hochberg(p_values: Mapping[str, float | None], m: int, q: float = FDR_Q) -> dict[str, BhResult]:
    """The Benjamini-Hochberg step-up at FDR `q` over `m` hypotheses, of which `p_values` are the ones tested.

    A missing or NaN p-value counts as 1 (nothing shown). `m` below the number tested is raised to it; the
    `m - len(p_values)` untested hypotheses count as p = 1 and so never pass, but they still divide q.
    Ties are ranked by key, so the answer does not depend on dict order.
    """
    tested = {key: p if p is not None and math.isfinite(p) else 1.0 for key, p in p_values.items()}
    m = max(m, len(tested), 1)
    order = sorted(tested, key=lambda key: (tested[key], key))
    largest = 0
    for rank, key in enumerate(order, start=1):
        if tested[key] <= rank * q / m:
            largest = rank
    return {
        key: BhResult(tested[key], rank, m, q, rank * q / m, rank <= largest) for rank, key in enumerate(order, start=1)
    }


@dataclass(frozen=True)
class Confirmation:
    """The served model scored once on the confirmation block, with its own threshold."""

    first: str | None
    last: str | None
    n_calls: int
    expectancy: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None

    @property
    def passed(self) -> bool:
        return self.n_calls >= MIN_CALLS and self.p is not None and self.p < CONFIRM_ALPHA

    def failure(self) -> str | None:
        """Why the block does not confirm, in one line; None when it does."""
        if self.first is None:
            return "no confirmation block: no samples of this pair in the newest, held-back stretch"
        if self.n_calls < MIN_CALLS:
            return f"only {self.n_calls} calls on the confirmation block {self._span()} (needed >= {MIN_CALLS})"
        if self.p is None or not self.p < CONFIRM_ALPHA:
            shown = "n/a" if self.p is None else f"{self.p:.3g}"
            return (
                f"the confirmation block {self._span()} does not confirm: one-sided p = {shown} over "
                f"{self.n_calls} calls (needed < {CONFIRM_ALPHA:g})"
            )
        return None

    def _span(self) -> str:
        return f"{self.first} .. {self.last}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "last": self.last,
            "n_calls": self.n_calls,
            "expectancy": self.expectancy,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p": self.p,
            "p_method": P_VALUE_METHOD,
            "min_calls": MIN_CALLS,
            "alpha": CONFIRM_ALPHA,
            "passed": self.passed,
        }

    @classmethod
    def of_edge(cls, edge: Mapping[str, Any] | None, first: str | None, last: str | None) -> Confirmation:
        """From a `skill.edge_of` answer over the block's calls (None or no samples: an empty block)."""
        if not edge or first is None:
            return cls(first, last, 0, None, None, None, None)
        return cls(
            first,
            last,
            int(edge.get("n", 0)),
            edge.get("value"),
            edge.get("ci_low"),
            edge.get("ci_high"),
            edge.get("p_value"),
        )


@dataclass(frozen=True)
class Candidate:
    """One pair-model as the rule reads it: its walk-forward edge (with `p_value`), its pooled timeframe's
    walk-forward verdict, and its confirmation."""

    walk_forward: Mapping[str, Any]
    pooled_verdict: str
    confirmation: Confirmation


def apply_rule(
    candidates: Mapping[str, Candidate], universe: int, *, text: str = RULE_TEXT
) -> dict[str, dict[str, Any]]:
    """The final edge of every candidate of one retrain (keys as given), corrected over m = family_size(...)."""
    m = family_size(len(candidates), universe)
    bh = benjamini_hochberg({key: c.walk_forward.get("p_value") for key, c in candidates.items()}, m)
    return {
        key: ruled_edge(c, bh[key], tested=len(candidates), universe=universe, text=text)
        for key, c in candidates.items()
    }


def rule_failure(candidate: Candidate, bh: BhResult) -> str | None:
    """The first part of the rule that fails, in one line; None when every part holds."""
    verdict = candidate.walk_forward.get("verdict")
    if verdict != "positive":
        return f"walk-forward verdict is {verdict}, not positive"
    if not bh.passed:
        return (
            f"walk-forward p = {bh.p:.3g} does not survive Benjamini-Hochberg at q = {bh.q:g} over {bh.m} "
            f"pair-models (needed <= {bh.critical:.2g} at rank {bh.rank})"
        )
    if candidate.pooled_verdict == "negative":
        return "the pooled walk-forward verdict of its timeframe is negative"
    return candidate.confirmation.failure()


def ruled_edge(
    candidate: Candidate, bh: BhResult, *, tested: int, universe: int, text: str = RULE_TEXT
) -> dict[str, Any]:
    """The walk-forward edge with the final verdict, the rule's inputs (`rule`) and the uncorrected verdict."""
    walk_forward = dict(candidate.walk_forward)
    failure = rule_failure(candidate, bh)
    verdict = walk_forward.get("verdict", "insufficient_data")
    final = "positive" if failure is None else ("none" if verdict == "positive" else verdict)
    rule = {
        "version": RULE_VERSION,
        "text": text,
        "p": bh.p,
        "p_method": P_VALUE_METHOD,
        "rank": bh.rank,
        "m": bh.m,
        "tested": tested,
        "universe": universe,
        "q": bh.q,
        "bh_critical": bh.critical,
        "passed_bh": bh.passed,
        "pooled_verdict": candidate.pooled_verdict,
        "passed_pooled": candidate.pooled_verdict != "negative",
        "confirmation": candidate.confirmation.as_dict(),
        "passed": failure is None,
        "reason": failure,
    }
    edge = {**walk_forward, "verdict": final, "walk_forward_verdict": verdict, "rule": rule}
    if verdict == "positive" and failure is not None:
        edge["reason"] = failure
    return edge


def edge_at_load(found: Any) -> dict[str, Any]:
    """A stored edge as the gate may read it: with `rule_status`, and never `positive` without the rule's stored
    inputs (a model stored before the rule is the named state `stored_before_rule`: not positive, retrain)."""
    if not isinstance(found, dict) or "verdict" not in found:
        return {
            "verdict": "insufficient_data",
            "metric": EXPECTANCY_METRIC,
            "n": 0,
            "source": "walk_forward",
            "reason": NO_EVALUATION,
            "rule_status": "stored_before_rule",
        }
    rule = found.get("rule")
    if not isinstance(rule, dict):
        edge = {**found, "walk_forward_verdict": found["verdict"], "rule_status": "stored_before_rule"}
        if found["verdict"] == "positive":
            edge.update(verdict="none", reason=STORED_BEFORE_RULE)
        return edge
    passed = rule.get("passed") is True
    edge = {**found, "rule_status": "passed" if passed else "failed", "rule_version": rule.get("version")}
    if found["verdict"] == "positive" and not passed:  # an edited verdict: its stored inputs say otherwise
        edge.update(verdict="none", reason=rule.get("reason") or "the stored rule inputs do not pass the rule")
    return edge
