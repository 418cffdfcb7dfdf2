"""Request and response models of the HTTP contract (the README, "Asking for signals"; docs/architecture.md).

Requests forbid unknown fields, so a typo is a 400 instead of a silently ignored option. Times are
timezone-aware UTC and serialise as ISO-8601 with ``Z``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from signals.core.errors import InvalidSymbol
from signals.core.symbols import SYMBOL_PATTERN, normalize_symbol

Direction = Literal["LONG", "SHORT", "NO_TRADE"]
# What requests accept, published as the schema's enum and pattern and enforced by validation, so that a request
# the schema allows is never refused for its spelling (tests/e2e run schemathesis against the served schema).
TimeframeName = Literal["1m", "5m", "15m", "30m", "1h", "2h", "4h", "1d"]
# Times in requests: an ISO-8601 string with its offset (e.g. 2026-11-20T09:00:00Z), as the schema says; not a
# bare number, which pydantic would otherwise read as epoch seconds.
RequestTime = Annotated[AwareDatetime, Strict()]
_SYMBOL = re.compile(SYMBOL_PATTERN)


def checked_symbol(value: str) -> str:
    """A symbol as a request may write it: a spelling `normalize_symbol` accepts and the published pattern
    matches (no padding, base of at most 20 characters); the error says what is accepted."""
    normalize_symbol(value)  # InvalidSymbol (a ValueError) says what is wrong and what is accepted
    if not _SYMBOL.fullmatch(value):
        raise InvalidSymbol(f"symbol {value[:40]!r} is not written as BTC/USDT, BTCUSDT or BTC-USDT (no spaces)")
    return value


SymbolName = Annotated[
    str,
    AfterValidator(checked_symbol),
    Field(max_length=32, description="BTC/USDT, BTCUSDT or BTC-USDT", examples=["BTCUSDT"]),
    WithJsonSchema({"type": "string", "pattern": SYMBOL_PATTERN, "maxLength": 32, "example": "BTCUSDT"}),
]
ActionName = Literal["HOLD", "BUY", "SELL"]
Verdict = Literal["positive", "none", "negative", "insufficient_data"]
MODEL_NAME_PATTERN = r"^(cnn-lstm-[a-z0-9]{1,20}-[a-z0-9]{1,8}|ppo)-(1m|5m|15m|30m|1h|2h|4h|1d)$"
# The edge's metric: the mean after-cost return per actionable call, a fraction of price. It was once named
# `expectancy_after_costs_pct` although it always held a fraction; stored models and records may carry that name.
EXPECTANCY_METRIC = "expectancy_after_costs_fraction"
LEGACY_METRICS = {"expectancy_after_costs_pct": EXPECTANCY_METRIC}
MAX_SYMBOLS = 1000  # a list longer than any universe is refused by validation, before any work
MAX_TIMEFRAMES = 8
MIN_PRICE, MAX_PRICE = 1e-12, 1e12  # finite and positive, no subnormal or overflowing entries


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(Request):
    symbol: SymbolName
    timeframe: TimeframeName = Field(description="15m, 1h, 4h or 1d have models", examples=["1h"])


class BatchRequest(Request):
    symbols: list[SymbolName] | None = Field(
        None,
        max_length=MAX_SYMBOLS,
        description="Default: every symbol with a model for the timeframe. At most the served universe's size.",
    )
    timeframe: TimeframeName = Field(examples=["15m"])


class SummaryRequest(Request):
    symbol: SymbolName
    timeframes: list[TimeframeName] | None = Field(
        None, max_length=MAX_TIMEFRAMES, description="Default: 15m, 1h, 4h, 1d."
    )


class Position(Request):
    side: Literal["flat", "long"] = "flat"
    entry_price: float | None = Field(
        None,
        ge=MIN_PRICE,
        le=MAX_PRICE,
        allow_inf_nan=False,
        description=f"Average entry price of the long position: finite, {MIN_PRICE:g} to {MAX_PRICE:g}.",
    )

    @model_validator(mode="after")
    def _entry_only_when_long(self) -> Position:
        if self.side == "flat" and self.entry_price is not None:
            raise ValueError("entry_price applies only to side 'long'; a flat position has none")
        return self


_PRICE = {"type": "number", "minimum": MIN_PRICE, "maximum": MAX_PRICE}
# What `Position` accepts, as a schema: flat (the default) with no entry price, or long with an optional one.
POSITION_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {"side": {"type": "string", "enum": ["flat"]}, "entry_price": {"type": "null"}},
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["side"],
            "properties": {
                "side": {"type": "string", "enum": ["long"]},
                "entry_price": {"anyOf": [_PRICE, {"type": "null"}]},
            },
        },
    ],
    "description": "The caller's position: flat (default), or long with its average entry price.",
}


class ActionRequest(Request):
    symbol: SymbolName
    timeframe: TimeframeName | None = Field(None, description="Default: the configured PPO timeframe (1h).")
    position: Annotated[Position, WithJsonSchema(POSITION_SCHEMA)] = Field(default_factory=Position)
    include_explanation: StrictBool = False


class EmptyRequest(Request):
    pass


class Probabilities(BaseModel):
    SHORT: float
    NO_TRADE: float
    LONG: float


class TakeProfitLevel(BaseModel):
    level: int
    price: float
    r_multiple: float
    eta_minutes: int


class Levels(BaseModel):
    entry: float
    stop_loss: float
    take_profits: list[TakeProfitLevel]
    atr: float
    risk_reward: float


class Edge(BaseModel):
    """What the model showed out of sample: the after-cost expectancy of its actionable calls, with a 95 % interval.

    Figures are fractions of price (-0.00425 is -0.425 % per call), like confidence and accuracy."""

    verdict: Verdict = Field(description="positive only when the interval lies above 0")
    metric: str = Field(
        description=f"what value and interval measure ({EXPECTANCY_METRIC}: mean return per call after costs, as a "
        "fraction of price)"
    )
    value: float | None = Field(None, description="A fraction of price per call (0.002 is +0.2 %).")
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = Field(0, description="actionable calls behind the figure")
    source: str = Field("walk_forward", description="walk_forward: out-of-sample test blocks at training time")
    reason: str | None = Field(None, description="why the verdict was demoted or could not be reached")
    p_value: float | None = Field(
        None, description="one-sided p-value of the figure (H0: expectancy <= 0), before any correction"
    )
    walk_forward_verdict: Verdict | None = Field(
        None, description="the uncorrected verdict of the out-of-sample figure, before the universe-wide rule"
    )
    rule_status: Literal["passed", "failed", "stored_before_rule"] | None = Field(
        None,
        description="the universe-wide rule (see /models rule_text): passed (the verdict may be positive), failed, "
        "or stored_before_rule (a model stored without the rule's inputs: never positive; retrain)",
    )
    rule_version: str | None = Field(None, description="version of the rule the verdict was reached under")

    @field_validator("metric")
    @classmethod
    def _current_metric_name(cls, metric: str) -> str:
        """Models (and ledger records) stored before the rename name the same fraction by its old name."""
        return LEGACY_METRICS.get(metric, metric)


class Signal(BaseModel):
    symbol: str
    timeframe: str
    direction: Direction = Field(description="The model's most likely outcome (argmax), actionable or not.")
    confidence: float = Field(ge=0, le=1)
    probabilities: Probabilities
    actionable: bool = Field(description="Edge positive, direction LONG/SHORT, confidence at or above the threshold.")
    abstain_reason: str | None = Field(description="Why the signal is not actionable (one line); null when it is.")
    edge: Edge
    break_even_hit_rate: float | None = Field(description="Share of plans that must reach 1 R to pay costs.")
    model_version: str
    model_accuracy: float | None = Field(description="Walk-forward (out-of-sample) accuracy on this pair.")
    # null first in the schema: BentoML's generated client reads only the first branch of an anyOf, and with the
    # array first it failed to decode a null interval (a pair without a walk-forward accuracy).
    model_accuracy_ci: Annotated[
        list[float] | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "null"},
                    {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                ],
                "default": None,
                "description": "95 % interval of model_accuracy: [low, high].",
            }
        ),
    ] = Field(default=None, min_length=2, max_length=2, description="95 % interval of model_accuracy: [low, high].")
    baseline_accuracy: float | None = Field(description="Majority class share of the same walk-forward samples.")
    candle_time: datetime = Field(description="Open time of the last closed candle.")
    prediction_time: datetime
    valid_until: datetime = Field(description="Close time of the candle after candle_time.")
    horizon_bars: int | None = Field(description="Bars the trade plan runs before it is resolved.")
    expires_at: datetime | None = Field(description="Close of the last bar of the horizon: the plan's end.")
    current_price: float
    levels: Levels | None = Field(description="Entry, stop and targets: only for actionable LONG/SHORT signals.")
    plan_requires: str | None = Field(
        None,
        description="What the plan needs beyond a spot account: 'margin or a derivative (spot cannot be sold "
        "short)' for a SHORT plan (every pair served is spot; SIGNALS_SPOT_SHORTS=drop serves none); null otherwise.",
    )
    data_source: str
    stale: bool
    family: str | None = Field(
        None, description="The model family that computed it (cnn-lstm, or an installed family); null when unknown."
    )


class RequestError(BaseModel):
    symbol: str
    timeframe: str | None = None
    status: int
    message: str


class BatchResponse(BaseModel):
    timeframe: str
    signals: list[Signal]
    errors: list[RequestError]


class Consensus(BaseModel):
    """Across timeframes, from the actionable signals only (a signal without edge does not vote)."""

    direction: Direction
    score: float = Field(description="Mean of P(LONG) - P(SHORT) over the actionable signals, in [-1, 1]; 0 if none.")
    agreeing: int = Field(description="Actionable signals whose direction equals the consensus.")
    actionable: int = Field(description="Actionable signals that voted.")
    answered: int = Field(description="Timeframes answered (actionable or not).")
    rule: str


class SummaryResponse(BaseModel):
    symbol: str
    signals: dict[str, Signal]
    consensus: Consensus | None
    errors: list[RequestError]


class ActionProbabilities(BaseModel):
    HOLD: float
    BUY: float
    SELL: float


class FeatureMove(BaseModel):
    name: str
    value: float
    zscore: float = Field(description="Last bar against the observation window's mean and std.")


class Explanation(BaseModel):
    summary: str
    position: Literal["flat", "long"]
    unrealized_return: float | None
    value_estimate: float
    top_features: list[FeatureMove]


class Action(BaseModel):
    symbol: str
    timeframe: str
    action_id: int
    action_name: ActionName
    probabilities: ActionProbabilities
    confidence: float
    actionable: bool = Field(description="Edge positive and the action changes the caller's position.")
    abstain_reason: str | None
    edge: Edge
    current_price: float
    candle_time: datetime
    valid_until: datetime
    model_version: str
    data_source: str
    stale: bool
    explanation: Explanation | None = None


class ModelInfo(BaseModel):
    family: str
    name: str
    symbol: str | None
    timeframe: str | None
    version: str
    status: Literal["ok", "unavailable"]
    error: str | None = None
    edge: Edge | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    data_range: dict[str, Any] = Field(default_factory=dict)
    rule: dict[str, Any] | None = Field(
        None,
        description="every input of the universe-wide rule as stored at training (p, rank, m, q, bh_critical, "
        "pooled_verdict, confirmation, reason); null for a model stored before the rule",
    )
    rule_text: str | None = Field(None, description="the universe-wide rule the edge verdict answers to")
    role: Literal["served", "shadow", "skipped"] = Field(
        "served",
        description="served; shadow (computed and recorded, not served: a newer version, or the family that lost "
        "the choice by evidence); skipped (an installed family package the server could not take)",
    )
    note: str | None = Field(None, description="why this role (e.g. the family choice with both families' figures)")


Mode = Literal["live", "backfill", "shadow"]


class ScorecardRequest(Request):
    timeframe: TimeframeName | None = Field(None, description="Only this timeframe.")
    symbol: SymbolName | None = None
    model_version: str | None = Field(None, max_length=64, description="Only this model version.")
    mode: Mode | None = Field(
        None, description="live, backfill or shadow; default: live (what was served as it happened)."
    )
    since: RequestTime | None = Field(None, description="Only signals of candles at or after this time.")


class HistoryRequest(Request):
    symbol: SymbolName
    timeframe: TimeframeName | None = Field(None, description="Only this timeframe.")
    limit: int = Field(100, ge=1, le=1000)
    mode: Mode | None = Field(None, description="Default: every mode.")


class Outcome(BaseModel):
    """What the market did within the signal's horizon (the training label function, applied afterwards)."""

    label: Direction | None = Field(description="LONG: +1R first; SHORT: -1R first; NO_TRADE: neither (or both).")
    touched: Literal["target_long", "target_short", "both", "none"] | None
    bars_to_exit: int | None
    long_return: float | None = Field(description="What the LONG plan returned, before costs (fraction of price).")
    short_return: float | None
    call_return: float | None = Field(description="After costs, of the call (the argmax when not actionable).")
    resolved_at: datetime | None
    note: str | None = None


class HistoryItem(BaseModel):
    signal: Signal
    mode: Mode
    recorded_at: datetime
    outcome: Outcome | None = Field(description="null until the horizon has ended and the outcome was resolved.")


class HistoryResponse(BaseModel):
    symbol: str
    items: list[HistoryItem]


class ReplayRequest(Request):
    symbol: SymbolName
    timeframe: TimeframeName = Field(examples=["1h"])
    candle_time: RequestTime = Field(description="Open time of the candle the recorded signal was computed at.")


class Difference(BaseModel):
    field: str
    recorded: Any
    rebuilt: Any


class ReplayResponse(BaseModel):
    recorded: Signal
    rebuilt: Signal
    match: bool = Field(description="Every compared field equal (probabilities bit for bit).")
    features_match: bool = Field(description="The rebuilt window's SHA-256 equals the recorded one.")
    differences: list[Difference]
    compared: list[str]


class RefreshRequest(Request):
    timeframe: TimeframeName = Field(description="15m, 1h, 4h or 1d have models", examples=["1h"])


class VersionRequest(Request):
    model: str = Field(
        pattern=MODEL_NAME_PATTERN, max_length=96, description="Store name, e.g. cnn-lstm-btc-usdt-1h or ppo-1h."
    )
    version: str | None = Field(
        None,
        pattern=r"^[a-z0-9]{1,64}$",
        description="Default: the newest stored version (promote), the one served before (rollback).",
    )
    force: bool = False


# --- answers of the track-record, health and admin routes --------------------------------------------------------
class Open(BaseModel):
    """An answer whose named fields are the contract and whose further fields are figures that may grow (kept, never
    dropped: `extra="allow"`)."""

    model_config = ConfigDict(extra="allow")


ScorecardVerdict = Literal["positive", "negative", "no_evidence", "insufficient_data"]


class Scorecard(Open):
    """How the recorded signals matching `filters` did; besides these fields, the walk-forward's figures
    (`models.skill.score`: class frequencies, accuracy, log-loss and Brier skill, calibration, coverage,
    baselines, calls) with Wilson intervals on the counts."""

    filters: dict[str, Any] = Field(description="The request's filters, as applied.")
    modes: list[Mode] = Field(description="The modes of the records scored.")
    n: int = Field(ge=0, description="Resolved signals scored.")
    verdict: ScorecardVerdict = Field(description="The after-cost expectancy of the actionable calls against zero.")
    reason: str | None = Field(None, description="Why there is no figure (no resolved signal matches).")
    edge: dict[str, Any] | None = Field(None, description="verdict, metric, value, ci_low, ci_high, n, source.")
    calls: dict[str, Any] | None = Field(None, description="The actionable calls: count, hit rate, expectancy.")
    accuracy: dict[str, Any] | None = Field(None, description="value, ci_low, ci_high.")


class ServedVersions(BaseModel):
    served: dict[str, str] = Field(description="Model name -> the version served.")
    shadow: dict[str, str] = Field(description="Model name -> the candidate version run in shadow.")
    notes: dict[str, str] = Field(default_factory=dict, description="Model name -> why it serves that version.")


class StatusResponse(Open):
    """The server's health: each runner (what it loaded, device, batching; `error` when it does not answer), the
    ledger and its writer, the candle-close loop, push, alerts, market data, the versions, the signal cache."""

    cnn_lstm: dict[str, Any]
    ppo: dict[str, Any]
    ledger: dict[str, Any] = Field(
        description="backend (sqlite, postgresql: never its file or host), status (ok, degraded, unavailable), "
        "error (its kind), records, writer."
    )
    scheduler: dict[str, Any] | None = Field(description="null when the candle-close loop is off.")
    push: dict[str, Any] | None = Field(description="null without a ledger.")
    alerts: dict[str, Any] | None = Field(description="null when alerts are off or without a ledger.")
    market: dict[str, Any]
    versions: ServedVersions
    cache: dict[str, Any]
    time: str = Field(description="The server's clock, ISO-8601 UTC.")


class ReloadResponse(BaseModel):
    served: dict[str, str] = Field(description="Model name -> the version served now.")
    changed: dict[str, list[str | None]] = Field(description="Model name -> [before, now] where they differ.")
    shadow: dict[str, str] = Field(description="Model name -> the candidate version run in shadow.")


class RefreshResponse(BaseModel):
    timeframe: str
    candle_time: str = Field(description="Open time of the last closed candle refreshed, ISO-8601 UTC.")
    role: str = Field(description="manual: this worker computed; follower: it took another worker's signals.")
    signals: int
    computed: int = Field(description="Signals this refresh computed (and pushed).")
    recorded: int = Field(description="Signal rows this refresh wrote (0 for a candle recorded before).")
    pushed_again: int = Field(0, description="Recorded before and pushed again to the stream's subscribers.")
    shadows: int
    actions: int
    errors: dict[str, str] = Field(description="Symbol -> its last error.")
    stale: list[str] = Field(description="Pairs whose exchange failed every attempt.")
    resolved: int
    seconds: float
    lag_seconds: float = Field(
        description="Seconds from when the refresh could first run (the candle's close; the server's start for the "
        "start-up catch-up) to its end."
    )
    catch_up: bool = Field(False, description="The start-up catch-up (its lag counts from the start).")
    phases: dict[str, float] = Field(description="Seconds per step of the refresh.")


class VersionDecision(BaseModel):
    """What a promotion or rollback did (the change is recorded in the ledger as a model event)."""

    model_name: str
    from_version: str | None
    to_version: str
    promoted: bool = Field(description="The served version changed.")
    reason: str
    candidate: dict[str, Any] = Field(description="The candidate's scorecard on the common candles (promote).")
    served: dict[str, Any] = Field(description="The served version's scorecard on the same candles (promote).")
    rule: str = Field(description="The promotion rule.")


# --- the shapes of the older clients (api/legacy.py builds them; the compatibility routes publish them) -----------
class Shape(BaseModel):
    """An older client's shape, field for field: published in /docs.json, and the tests hold each answer to it."""

    model_config = ConfigDict(extra="forbid")


class LegacyTakeProfit(Shape):
    level: int
    price: float
    eta: str = Field(description="When the target is expected, ISO-8601 UTC.")
    r_multiple: float


class LegacyPrediction(Shape):
    """One prediction as the first older dashboard renders it: percentages on a 0-100 scale, flat levels."""

    symbol: str = Field(description="Compact: BTCUSDT.")
    pair: str = Field(description="ccxt form: BTC/USDT.")
    timeframe: str
    direction: Direction = Field(description="NO_TRADE unless the signal is actionable.")
    model_direction: Direction = Field(description="The model's argmax.")
    confidence: float | None = Field(description="0-100.")
    accuracy: float | None = Field(description="0-100.")
    accuracy_estimate: float | None
    accuracy_ci: list[float | None] | None
    baseline_accuracy: float | None
    current_price: float
    entry_price: float | None
    stop_loss: float | None
    take_profits: list[LegacyTakeProfit]
    tp1: float | None
    tp1_eta: str | None
    tp2: float | None
    tp2_eta: str | None
    tp3: float | None
    tp3_eta: str | None
    take_profit: float | None
    risk_reward: float | None
    valid_until: str
    timestamp: str
    candle_time: str
    source: str
    status: Literal["stale", "active", "no_trade"]
    reason: str | None
    actionable: bool
    edge: str = Field(description="The edge verdict.")
    model_version: str
    stale: bool


class LegacyError(Shape):
    status: int
    error: str


class LegacyPredictions(Shape):
    success: bool
    predictions: dict[str, LegacyPrediction] = Field(description="Compact symbol -> its prediction.")
    count: int
    warming_up: bool
    timeframe: str
    timestamp: str
    errors: dict[str, LegacyError] = Field(description="Compact symbol -> why it has no prediction.")


class LegacyPredictionEnvelope(Shape):
    success: bool
    symbol: str
    prediction: LegacyPrediction
    timestamp: str


class LegacySummary(Shape):
    status: Literal["success"]
    success: bool
    symbol: str
    summary: dict[str, LegacyPrediction] = Field(description="Timeframe -> its prediction.")
    consensus: Consensus | None
    errors: dict[str, LegacyError] = Field(description="Timeframe -> why it has no prediction.")
    timestamp: str


class LegacyPpoUpdate(Shape):
    """The PPO fields every older client reads (the WebSocket's `prediction_update` data): HOLD unless actionable."""

    action_id: int = Field(description="HOLD's id unless actionable.")
    action_name: ActionName = Field(description="HOLD unless actionable.")
    model_action_id: int = Field(description="The policy's own action.")
    model_action_name: ActionName = Field(description="The policy's own action.")
    actionable: bool
    abstain_reason: str | None
    symbol: str = Field(description="As the client wrote it (compact, BTCUSDT, when it did not name it).")
    pair: str = Field(description="ccxt form: BTC/USDT.")
    timeframe: str
    current_price: float
    confidence: float
    timestamp: str
    model_version: str
    strategy: str


class LegacyPpoPrediction(LegacyPpoUpdate):
    """The second older API's PPO answer (confidence 0-1), `symbol` as the caller wrote it."""

    explanation: str | None
    explanation_details: Explanation | None
    probabilities: ActionProbabilities
    edge: Edge
    candle_time: str
    valid_until: str
    stale: bool


class LegacyModelInfo(Shape):
    loaded: bool
    model_type: str
    policy: str
    observation_space: str
    action_space: str
    window_size: int
    num_features: int
    timeframe: str | None
    model_version: str | None
    edge: Edge | None
    models: list[ModelInfo]


class LegacyModelHealth(Shape):
    status: Literal["healthy", "unavailable"]
    model_loaded: bool
    service: str
    message: str
    models: int
    unavailable: list[str]


class Candle(Shape):
    time: int = Field(description="Open time, seconds since the epoch.")
    open: float
    high: float
    low: float
    close: float
    volume: float


class CandlesResponse(Shape):
    symbol: str
    timeframe: str
    data_source: str
    candles: list[Candle]


# --- the dashboard's equity curve and alert subscriptions (GET /equity, /admin/alerts) -------------------------------
class EquityPoint(BaseModel):
    time: int = Field(description="Seconds since the epoch (the chart's axis).")
    equity: float = Field(description="Sum of the after-cost returns of the calls booked by then (fraction).")
    buy_and_hold: float | None = Field(description="The equal-weight basket's return by then, after one round trip.")


class EquityResponse(BaseModel):
    """The equity curve of the served (or paper) calls from the resolved records, beside buy-and-hold."""

    mode: Literal["served", "paper"]
    filters: dict[str, Any]
    cost: float = Field(description="Round-trip cost per call (fees and slippage), a fraction of price.")
    note: str = Field(description="How the curve is built.")
    calls: int
    hits: int = Field(description="Calls with a positive after-cost return.")
    total_return: float
    mean_return: float | None
    buy_and_hold_return: float | None
    pairs: list[str]
    points: list[EquityPoint]
    reason: str | None = Field(None, description="Why the curve is empty, when it is.")


class AlertSubscriptionRequest(Request):
    """A webhook subscription added from the dashboard (the CLI's `signals alerts add`)."""

    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://", description="Where to POST the alerts.")
    symbols: list[SymbolName] | None = Field(None, description="Only these pairs; default: every pair.")
    timeframes: list[TimeframeName] | None = Field(None, description="Only these timeframes; default: every one.")


class AlertSubscription(BaseModel):
    id: int
    name: str
    kind: str
    target: str
    filters: dict[str, Any]
    created_at: str = Field(description="ISO-8601 UTC.")
    secret: str | None = Field(
        None, description="The HMAC key the receiver verifies X-Signals-Signature with: only in the answer to the add."
    )
