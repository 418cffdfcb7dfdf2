"""What is worth an alert, and who wants it: pure functions over ledger rows and subscription filters.

Events:
- `signal.changed`: at a candle close, a pair's signal says another direction than at the previous close;
- `signal.actionable`: it becomes actionable (a trade plan is served) where the previous one was not;
- `action.changed`: at a candle close, the PPO policy's action for a flat position changes (HOLD -> BUY: the older
  bot's alert);
- `signal.recorded` (only for subscriptions that ask for it by name): every new signal, changed or not;
- `model.promoted` / `model.rolled_back`: the served version of a model changed;
- `health.degraded` / `health.recovered`: the exchange (its circuit) or a model went down or came back.
Each event has a key that names it once (`signal.changed:<model version>:<symbol>:<candle>`): a receiver seeing the
same key twice (a retry after a lost answer) can drop the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from signals.core.timeframes import iso_z
from signals.ledger.rows import ModelEventRecord, RecordedAction, RecordedSignal

SIGNAL_EVENTS = ("signal.changed", "signal.actionable", "action.changed", "signal.recorded")
OPT_IN_EVENTS = ("signal.recorded",)  # only for subscriptions that name them: every refresh of every pair


class Filters(BaseModel):
    """What a subscription wants. Empty lists mean all; `actionable_only` (the default) keeps only signals that
    serve a trade plan: a model without an edge changing its mind is not news."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[str] = Field(default_factory=list)
    timeframes: list[str] = Field(default_factory=list)
    directions: list[Literal["LONG", "SHORT", "NO_TRADE"]] = Field(default_factory=list)
    actionable_only: bool = True
    min_confidence: float = Field(0.0, ge=0, le=1)
    events: list[str] = Field(default_factory=list, description="Event types; empty: all.")


@dataclass(frozen=True)
class AlertEvent:
    key: str
    type: str
    created_ms: int
    data: dict[str, Any]
    symbol: str | None = None
    timeframe: str | None = None
    direction: str | None = None
    actionable: bool = False
    confidence: float = 0.0

    def payload(self) -> dict[str, Any]:
        """The JSON a receiver gets."""
        return {
            "id": self.key,
            "type": self.type,
            "created_at": iso_z(pd.Timestamp(self.created_ms, unit="ms", tz="UTC")),
            "data": self.data,
        }


def signal_event(new: RecordedSignal, previous: Mapping[str, Any] | None, now_ms: int) -> AlertEvent | None:
    """The event a newly recorded signal makes against the pair's previous one (None: nothing changed, or no
    previous signal to compare with)."""
    if previous is None or int(previous["candle_ms"]) >= int(new["candle_ms"]):
        return None
    if new["actionable"] and not previous["actionable"]:
        kind = "signal.actionable"
    elif new["direction"] != previous["direction"]:
        kind = "signal.changed"
    else:
        return None
    candle = iso_z(pd.Timestamp(int(new["candle_ms"]), unit="ms", tz="UTC"))
    before = {
        "direction": previous["direction"],
        "actionable": bool(previous["actionable"]),
        "candle_time": iso_z(pd.Timestamp(int(previous["candle_ms"]), unit="ms", tz="UTC")),
    }
    return AlertEvent(
        key=f"{kind}:{new['model_version']}:{new['symbol']}:{candle}",
        type=kind,
        created_ms=now_ms,
        data={"signal": dict(new["payload"]), "previous": before},
        symbol=str(new["symbol"]),
        timeframe=str(new["timeframe"]),
        direction=str(new["direction"]),
        actionable=bool(new["actionable"]),
        confidence=float(new["confidence"]),
    )


def wants(f: Filters, event: AlertEvent) -> bool:
    """Whether a subscription with these filters gets this event."""
    if (f.events or event.type in OPT_IN_EVENTS) and event.type not in f.events:
        return False
    if event.type not in SIGNAL_EVENTS:
        return True  # model and health events concern every subscriber of the server
    return (
        (not f.symbols or event.symbol in f.symbols)
        and (not f.timeframes or event.timeframe in f.timeframes)
        and (not f.directions or event.type == "action.changed" or event.direction in f.directions)
        and (event.actionable or not f.actionable_only)
        and event.confidence >= f.min_confidence
    )


def recorded_event(new: RecordedSignal, now_ms: int) -> AlertEvent:
    """The opt-in event of every newly recorded live signal."""
    candle = iso_z(pd.Timestamp(int(new["candle_ms"]), unit="ms", tz="UTC"))
    return AlertEvent(
        key=f"signal.recorded:{new['model_version']}:{new['symbol']}:{candle}",
        type="signal.recorded",
        created_ms=now_ms,
        data={"signal": dict(new["payload"])},
        symbol=str(new["symbol"]),
        timeframe=str(new["timeframe"]),
        direction=str(new["direction"]),
        actionable=bool(new["actionable"]),
        confidence=float(new["confidence"]),
    )


def action_event(new: RecordedAction, previous: Mapping[str, Any] | None, now_ms: int) -> AlertEvent | None:
    """The event of a newly recorded flat-position action against the pair's previous one."""
    if previous is None or int(previous["candle_ms"]) >= int(new["candle_ms"]):
        return None
    if new["action_name"] == previous["action_name"]:
        return None
    candle = iso_z(pd.Timestamp(int(new["candle_ms"]), unit="ms", tz="UTC"))
    payload = dict(new["payload"])
    return AlertEvent(
        key=f"action.changed:{new['model_version']}:{new['symbol']}:{candle}",
        type="action.changed",
        created_ms=now_ms,
        data={"action": payload, "previous": {"action_name": previous["action_name"]}},
        symbol=str(new["symbol"]),
        timeframe=str(new["timeframe"]),
        direction=str(new["action_name"]),
        actionable=bool(new["actionable"]),
        confidence=float(payload.get("confidence", 0.0)),
    )


def model_alert(event: ModelEventRecord) -> AlertEvent | None:
    """The alert of a model version event (a `model_events` row): promotions and rollbacks only."""
    kinds = {"promote": "model.promoted", "rollback": "model.rolled_back"}
    kind = kinds.get(str(event.get("kind")))
    if kind is None:
        return None
    return AlertEvent(
        key=f"{kind}:{event['model_name']}:{event['id']}",
        type=kind,
        created_ms=int(event["at_ms"]),
        data={
            "model": event["model_name"],
            "from_version": event.get("from_version"),
            "to_version": event.get("to_version"),
            "reason": event.get("reason"),
        },
    )


def health_alert(component: str, degraded: bool, detail: str | None, now_ms: int) -> AlertEvent:
    """The alert of a component (the exchange, a model) going degraded or recovering; two workers noticing the same
    change within a minute make the same key, so it is kept once."""
    kind = "health.degraded" if degraded else "health.recovered"
    return AlertEvent(
        key=f"{kind}:{component}:{now_ms // 60_000}",
        type=kind,
        created_ms=now_ms,
        data={"component": component, "degraded": degraded, "detail": detail},
    )
