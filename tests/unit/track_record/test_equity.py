"""The equity curve: the scorecard's after-cost returns of the served (or paper) calls, booked when each plan
ended, beside an equal-weight buy-and-hold basket of the same pairs."""

from __future__ import annotations

import pytest

from signals.track_record.equity import equity_curve
from signals.track_record.scorecard import scorecard
from tests.support.factories import signal_record

HOUR_MS = 3_600_000
COST = 0.002


def resolved(i: int, *, symbol: str = "BTC/USDT", up: bool, close: float, **overrides: object) -> dict[str, object]:
    return signal_record(
        symbol=symbol, model_name=f"m-{symbol}", candle_ms=1_700_000_000_000 + i * HOUR_MS, close=close,
        resolved_ms=1, outcome_label=2 if up else 0, bars_to_exit=2,
        long_return=0.01 if up else -0.01, short_return=-0.01 if up else 0.01, **overrides,
    )  # fmt: skip


def rows() -> list[dict[str, object]]:
    return [
        resolved(0, up=True, close=100.0, actionable=True, abstain_reason=None),
        resolved(1, up=False, close=101.0, direction="SHORT", paper=True),
        resolved(2, up=False, close=99.0, actionable=True, abstain_reason=None),
        resolved(3, up=True, close=102.0),  # the model's direction, no plan: in neither curve
        resolved(0, symbol="ETH/USDT", up=True, close=10.0),
        resolved(3, symbol="ETH/USDT", up=True, close=12.0),
    ]


def test_the_served_and_paper_curves_sum_the_scorecards_after_cost_returns() -> None:
    served = equity_curve(rows(), cost=COST, mode="served", filters={})
    paper = equity_curve(rows(), cost=COST, mode="paper", filters={})
    assert (served["calls"], served["hits"], paper["calls"], paper["hits"]) == (2, 1, 1, 1)
    assert served["total_return"] == pytest.approx((0.01 - COST) + (-0.01 - COST))
    assert paper["total_return"] == pytest.approx(0.01 - COST)  # a SHORT that was right
    card = scorecard(rows(), cost=COST, filters={})
    both = served["total_return"] + paper["total_return"]
    assert both == pytest.approx(card["calls"]["expectancy"]["value"] * card["calls"]["n"])
    # booked when the plan ended (candle close + 2 bars), not at the signal
    first_booked = next(p for p in served["points"] if p["equity"] != 0)
    assert first_booked["time"] == (1_700_000_000_000 + 3 * HOUR_MS) // 1000
    assert served["points"][-1]["equity"] == pytest.approx(served["total_return"])


def test_buy_and_hold_is_an_equal_weight_basket_of_the_same_pairs_after_one_round_trip() -> None:
    curve = equity_curve(rows(), cost=COST, mode="served", filters={})
    assert curve["pairs"] == ["BTC/USDT", "ETH/USDT"]
    assert curve["buy_and_hold_return"] == pytest.approx((102 / 100 - 1 + 12 / 10 - 1) / 2 - COST)


def test_no_calls_is_an_empty_curve_with_the_reason() -> None:
    assert equity_curve([], cost=COST, mode="served", filters={})["reason"] == "no resolved signal matches the filters"
    only_model = [r for r in rows() if not r["actionable"] and not r["paper"]]
    curve = equity_curve(only_model, cost=COST, mode="paper", filters={})
    assert curve["calls"] == 0 and curve["reason"] == "no paper call among 3 resolved records"
