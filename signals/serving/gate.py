"""The skill gate: what a signal may claim. A trade plan is served only for a call the evidence supports.

A CNN-LSTM signal is **actionable** when all of these hold, checked in this order (the first that fails is the
`abstain_reason`):
1. its model's edge is `positive`: the after-cost expectancy of its out-of-sample actionable calls has a 95 %
   interval above 0 AND the universe-wide rule holds (`models.evidence.RULE_TEXT`: corrected for the pair-models
   tested, pooled verdict not negative, confirmed on a later untouched block); a rule failure is explained with
   the reason stored at training;
2. the model's most likely outcome is LONG or SHORT, not NO_TRADE;
3. the model has a threshold (some confidence level paid its costs on validation) and the call clears it;
   then, with `SIGNALS_SPOT_SHORTS=drop`, the call is not a SHORT: every pair served is a spot market, which
   cannot be sold short (with the default `label`, a SHORT plan is served marked `plan_requires`: margin or a
   derivative);
4. the candles are fresh (`stale` is false): a plan from a candle the market has left behind is not served;
5. the model is not on probation or demoted: its own live calls confirmed the walk-forward edge
   (`track_record.probation` decides its `Standing`; the engine holds it). A call that fails only this rule is a
   *paper* call: recorded and resolved like any other, but served without a plan.
A PPO action is actionable when the policy's edge is positive and the action changes the caller's position
(BUY while flat, SELL while long).

The consensus of `/summary` counts only actionable signals: the mean of P(LONG) - P(SHORT) over them, LONG above
+0.15, SHORT below -0.15, NO_TRADE otherwise and when no timeframe is actionable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from signals.contract import schemas

CONSENSUS_THRESHOLD: Final = 0.15
STALE_REASON: Final = "the candles are stale: a newer candle should have closed"
# Every market served is spot (ccxt's BASE/QUOTE): a SHORT plan needs what spot does not offer.
SPOT_SHORT_REQUIRES: Final = "margin or a derivative (spot cannot be sold short)"
SPOT_SHORT_REASON: Final = (
    "a SHORT on a spot pair needs margin or a derivative (spot cannot be sold short); SIGNALS_SPOT_SHORTS=drop "
    "serves none"
)
CONSENSUS_RULE: Final = (
    "mean of P(LONG) - P(SHORT) over the actionable signals only; LONG above +0.15, SHORT below -0.15, "
    "else NO_TRADE (also when no signal is actionable)"
)


@dataclass(frozen=True)
class Standing:
    """What a positive model's own live calls allow: `serving` (plans), `probation` (paper calls until they confirm
    the edge) or `demoted` (its calls fell below break-even). `reason` is the abstain_reason while plans are withheld.
    """

    state: Literal["probation", "serving", "demoted"]
    reason: str | None
    n: int = 0  # resolved calls counted
    needed: int = 0  # the rule's minimum
    value: float | None = None  # mean after-cost return per call, a fraction of price
    ci_low: float | None = None
    ci_high: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _percent(value: Any) -> str:
    return f"{100 * value:+.2f} %" if isinstance(value, int | float) else "n/a"


def edge_reason(edge: schemas.Edge) -> str | None:
    """Why an edge does not allow trade plans, in one line; None when it does."""
    if edge.verdict == "positive":
        return None
    if edge.verdict == "insufficient_data":
        why = edge.reason or f"only {edge.n} walk-forward calls"
        return f"no demonstrated edge: too little out-of-sample evidence ({why})"
    interval = f"[{_percent(edge.ci_low)}, {_percent(edge.ci_high)}]"
    figure = f"after-cost expectancy {_percent(edge.value)} per call {interval} over {edge.n} walk-forward calls"
    if edge.walk_forward_verdict == "positive" and edge.rule_status in ("failed", "stored_before_rule"):
        why = edge.reason or "the stored rule inputs do not pass"
        return f"no demonstrated edge: positive on walk-forward ({figure}), but it fails the universe-wide rule: {why}"
    extra = f"; {edge.reason}" if edge.reason else ""
    return f"no demonstrated edge ({edge.verdict}): {figure}{extra}"


def signal_gate(
    edge: schemas.Edge,
    direction: str,
    confidence: float,
    threshold: float | None,
    stale: bool,
    withheld: str | None = None,
    spot_shorts: Literal["label", "drop"] = "label",
) -> tuple[bool, str | None]:
    """(actionable, abstain_reason) of a CNN-LSTM signal (the rules of the module doc, in order); `withheld`: why
    the model's probation withholds its plans (None: it does not); `spot_shorts`: the setting of that name."""
    reason = edge_reason(edge)
    if reason is None and direction == "NO_TRADE":
        reason = "the most likely outcome is NO_TRADE: neither barrier is expected within the horizon"
    if reason is None and threshold is None:
        reason = "no confidence level of this model paid its costs on validation"
    if reason is None and threshold is not None and confidence < threshold:
        reason = f"confidence {confidence:.3f} is below this model's threshold {threshold:.3f}"
    if reason is None and direction == "SHORT" and spot_shorts == "drop":
        reason = SPOT_SHORT_REASON
    if reason is None and stale:
        reason = STALE_REASON
    if reason is None and withheld is not None:
        reason = withheld
    return reason is None, reason


def plan_requires(direction: str, has_plan: bool) -> str | None:
    """What a served plan needs beyond a spot account: margin or a derivative for a SHORT; None otherwise."""
    return SPOT_SHORT_REQUIRES if has_plan and direction == "SHORT" else None


def action_gate(edge: schemas.Edge, action: str, position: str) -> tuple[bool, str | None]:
    """(actionable, abstain_reason) of a PPO action for a caller who is `position` (flat or long)."""
    reason = edge_reason(edge)
    if reason is None and action == "HOLD":
        reason = "HOLD changes nothing"
    if reason is None and action == "SELL" and position != "long":
        reason = "SELL to a caller who is flat: there is nothing to sell (this policy does not short)"
    if reason is None and action == "BUY" and position == "long":
        reason = "BUY to a caller who is already long: the policy holds one position at most"
    return reason is None, reason


def consensus(signals: Iterable[schemas.Signal]) -> schemas.Consensus | None:
    """The consensus of `/summary` (see the module doc); None when no timeframe was answered."""
    answered = list(signals)
    if not answered:
        return None
    voting = [s for s in answered if s.actionable]
    score = float(np.mean([s.probabilities.LONG - s.probabilities.SHORT for s in voting])) if voting else 0.0
    direction = "LONG" if score > CONSENSUS_THRESHOLD else "SHORT" if score < -CONSENSUS_THRESHOLD else "NO_TRADE"
    return schemas.Consensus(
        direction=direction,
        score=round(score, 6),
        agreeing=sum(s.direction == direction for s in voting),
        actionable=len(voting),
        answered=len(answered),
        rule=CONSENSUS_RULE,
    )
