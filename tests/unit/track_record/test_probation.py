"""Probation, the pure rule and its events: too few calls is probation (never a pass), enough calls whose interval
clears 0 serve plans, an interval entirely below 0 demotes; each change is one `model_events` row."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signals.ledger.store import Ledger
from signals.serving.catalog import ModelEntry
from signals.track_record.probation import EVENTS, refresh_standings, standing
from tests.support.factories import positive_edge, signal_record

HOUR_MS = 3_600_000


def calls(returns: list[float]) -> list[dict[str, object]]:
    """Resolved 1h calls with a one-bar horizon: each in its own bootstrap block."""
    return [
        {"candle_ms": i * HOUR_MS, "timeframe": "1h", "horizon_bars": 1, "call_return": r}
        for i, r in enumerate(returns)
    ]


WINNING = [0.004 + 0.002 * (i % 3) for i in range(30)]  # mean +0.6 %, every call above 0
LOSING = [-0.004 - 0.002 * (i % 3) for i in range(30)]
MIXED = [0.01 if i % 2 else -0.009 for i in range(40)]  # mean +0.05 %, interval around 0


def test_too_few_calls_is_probation_with_the_counts_never_a_pass() -> None:
    few = standing(calls([0.02, 0.03, 0.01, 0.02]), needed=30)  # every call won, but only 4
    assert (few.state, few.reason, few.n, few.needed) == ("probation", "on probation: 4 of 30 resolved calls", 4, 30)
    assert standing([], needed=30).reason == "on probation: 0 of 30 resolved calls"


def test_enough_calls_whose_interval_lies_above_zero_serve_plans() -> None:
    passed = standing(calls(WINNING), needed=30)
    assert passed.state == "serving" and passed.reason is None
    assert passed.ci_low is not None and passed.ci_low > 0 and passed.value == pytest.approx(0.006)


def test_an_interval_entirely_below_zero_demotes_a_served_model_and_a_model_on_probation() -> None:
    for previous in ("serving", "probation", None):
        demoted = standing(calls(LOSING), needed=30, previous=previous)
        assert demoted.state == "demoted" and demoted.ci_high is not None and demoted.ci_high < 0
        assert demoted.reason is not None and demoted.reason.startswith("demoted: its live calls fell below break-even")


def test_an_interval_around_zero_keeps_each_model_where_it_was() -> None:
    waiting = standing(calls(MIXED), needed=30)
    assert waiting.state == "probation" and "does not clear 0 yet" in (waiting.reason or "")
    assert standing(calls(MIXED), needed=30, previous="serving").state == "serving"  # confirmed once
    assert standing(calls(WINNING), needed=30, previous="demoted").state == "demoted"  # for this version, for good


@pytest.fixture
def entry() -> Iterator[ModelEntry]:
    edge = positive_edge()
    yield ModelEntry(
        "cnn-lstm", "cnn-lstm-btc-usdt-1h", "cnn-lstm-btc-usdt-1h:v1", "v1", "BTC/USDT", "1h", {"edge": edge}
    )


def record_calls(ledger: Ledger, returns: list[float], *, start: int, paper: bool) -> None:
    rows = [
        signal_record(candle_ms=(start + i) * HOUR_MS, horizon_bars=1, paper=paper, actionable=not paper)
        for i in range(len(returns))
    ]
    ledger.record_signals(rows)
    by_candle = {r["candle_ms"]: r["id"] for r in ledger.history("BTC/USDT", "1h", limit=1000)}
    ledger.resolve(
        [
            {"id": by_candle[(start + i) * HOUR_MS], "resolved_ms": 1, "outcome_label": 2, "call_return": r}
            for i, r in enumerate(returns)
        ]
    )


def test_probation_started_passed_and_demotion_are_each_one_event_with_the_figures(
    ledger: Ledger, entry: ModelEntry
) -> None:
    def refresh(timeframes: tuple[str, ...] = ("1h",)) -> str:
        standings = refresh_standings(ledger, [entry], needed=30, now_ms=1, record_events_for=timeframes)
        return standings[(entry.name, "v1")].state

    def kinds() -> list[str]:
        return [e["kind"] for e in reversed(ledger.events(entry.name))]

    assert refresh(timeframes=()) == "probation" and kinds() == []  # a worker that led no refresh writes nothing
    assert refresh() == refresh() == "probation" and kinds() == ["probation"]
    record_calls(ledger, [0.01] * 5, start=0, paper=True)
    assert refresh() == "probation" and kinds() == ["probation"]
    record_calls(ledger, WINNING, start=5, paper=True)  # 35 paper calls, all won
    assert refresh() == refresh() == "serving" and kinds() == ["probation", EVENTS["serving"]]
    record_calls(ledger, [-0.01] * 120, start=35, paper=False)  # served plans that lose
    assert refresh() == refresh() == "demoted" and kinds() == ["probation", "probation_pass", "demotion"]
    demotion = ledger.events(entry.name)[0]
    assert demotion["reason"].startswith("demoted: its live calls fell below break-even")
    assert (
        demotion["detail"]["n"] == 155
        and demotion["detail"]["ci_high"] < 0
        and demotion["detail"]["previous"] == "serving"
    )
    assert "rule" in demotion["detail"]


def test_only_live_calls_that_served_or_would_have_served_a_plan_count(ledger: Ledger, entry: ModelEntry) -> None:
    record_calls(ledger, WINNING, start=0, paper=True)
    backfill = [signal_record(candle_ms=(100 + i) * HOUR_MS, mode="backfill", actionable=True) for i in range(40)]
    abstained = [signal_record(candle_ms=(200 + i) * HOUR_MS) for i in range(40)]  # neither actionable nor paper
    ledger.record_signals(backfill + abstained)
    pending = [r["id"] for r in ledger.history("BTC/USDT", limit=1000) if r["resolved_ms"] is None]
    assert (
        ledger.resolve([{"id": i, "resolved_ms": 1, "outcome_label": 0, "call_return": -0.05} for i in pending]) == 80
    )
    assert len(ledger.calls(entry.name, "v1")) == 30
    policy = ModelEntry("ppo", "ppo-1h", "ppo-1h:p1", "p1", None, "1h", entry.metadata)  # a positive PPO: no probation
    assert refresh_standings(ledger, [entry, policy], needed=30, now_ms=1) == {
        (entry.name, "v1"): standing(calls(WINNING), needed=30)
    }
