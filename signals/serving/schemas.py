"""Request and response models of the HTTP contract (../shared/DESIGN.md, "HTTP contract").

Requests forbid unknown fields, so a typo is a 400 instead of a silently ignored option. Times are
timezone-aware UTC and serialise as ISO-8601 with ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Direction = Literal["LONG", "SHORT", "NO_TRADE"]
ActionName = Literal["HOLD", "BUY", "SELL"]
Verdict = Literal["positive", "none", "negative", "insufficient_data"]
_SYMBOL_HELP = "BTC/USDT, BTCUSDT or BTC-USDT"


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(Request):
    symbol: str = Field(description=_SYMBOL_HELP, examples=["BTC/USDT"])
    timeframe: str = Field(description="15m, 1h, 4h or 1d", examples=["1h"])


class BatchRequest(Request):
    symbols: list[str] | None = Field(None, description="Default: every symbol with a model for the timeframe.")
    timeframe: str = Field(examples=["15m"])


class SummaryRequest(Request):
    symbol: str = Field(description=_SYMBOL_HELP, examples=["BTC/USDT"])
    timeframes: list[str] | None = Field(None, description="Default: 15m, 1h, 4h, 1d.")


class Position(Request):
    side: Literal["flat", "long"] = "flat"
    entry_price: float | None = Field(None, gt=0, description="Average entry price of the long position.")

    @model_validator(mode="after")
    def _entry_only_when_long(self) -> Position:
        if self.side == "flat" and self.entry_price is not None:
            raise ValueError("entry_price applies only to side 'long'; a flat position has none")
        return self


class ActionRequest(Request):
    symbol: str = Field(description=_SYMBOL_HELP, examples=["BTC/USDT"])
    timeframe: str | None = Field(None, description="Default: the configured PPO timeframe (1h).")
    position: Position = Field(default_factory=Position)
    include_explanation: bool = False


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
    """What the model showed out of sample: the after-cost expectancy of its actionable calls, with a 95 % interval."""

    verdict: Verdict = Field(description="positive only when the interval lies above 0")
    metric: str = Field(description="what value and interval measure (expectancy_after_costs_pct: per call)")
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = Field(0, description="actionable calls behind the figure")
    source: str = Field("walk_forward", description="walk_forward: out-of-sample test blocks at training time")
    reason: str | None = Field(None, description="why the verdict was demoted or could not be reached")


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
    baseline_accuracy: float | None = Field(description="Majority class share of the same walk-forward samples.")
    candle_time: datetime = Field(description="Open time of the last closed candle.")
    prediction_time: datetime
    valid_until: datetime = Field(description="Close time of the candle after candle_time.")
    horizon_bars: int | None = Field(description="Bars the trade plan runs before it is resolved.")
    expires_at: datetime | None = Field(description="Close of the last bar of the horizon: the plan's end.")
    current_price: float
    levels: Levels | None = Field(description="Entry, stop and targets: only for actionable LONG/SHORT signals.")
    data_source: str
    stale: bool


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


Mode = Literal["live", "backfill", "shadow"]


class ScorecardRequest(Request):
    timeframe: str | None = Field(None, description="Only this timeframe.")
    symbol: str | None = Field(None, description=_SYMBOL_HELP)
    model_version: str | None = Field(None, description="Only this model version.")
    mode: Mode | None = Field(None, description="live, backfill or shadow; default: live and backfill.")
    since: datetime | None = Field(None, description="Only signals of candles at or after this time (UTC).")


class HistoryRequest(Request):
    symbol: str = Field(description=_SYMBOL_HELP, examples=["BTC/USDT"])
    timeframe: str | None = Field(None, description="Only this timeframe.")
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
    symbol: str = Field(description=_SYMBOL_HELP, examples=["BTC/USDT"])
    timeframe: str = Field(examples=["1h"])
    candle_time: datetime = Field(description="Open time (UTC) of the candle the recorded signal was computed at.")


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
    timeframe: str = Field(description="15m, 1h, 4h or 1d", examples=["1h"])


class VersionRequest(Request):
    model: str = Field(description="Store name, e.g. cnn-lstm-btc-usdt-1h or ppo-1h.")
    version: str | None = Field(None, description="Default: the newest stored version (promote).")
    force: bool = False
