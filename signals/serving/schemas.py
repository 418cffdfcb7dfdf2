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


class Signal(BaseModel):
    symbol: str
    timeframe: str
    direction: Direction
    confidence: float = Field(ge=0, le=1)
    probabilities: Probabilities
    model_version: str
    model_accuracy: float | None
    baseline_accuracy: float | None
    candle_time: datetime = Field(description="Open time of the last closed candle.")
    prediction_time: datetime
    valid_until: datetime = Field(description="Close time of the candle after candle_time.")
    current_price: float
    levels: Levels | None
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
    direction: Direction
    score: float = Field(description="Mean of P(LONG) - P(SHORT) over the answered timeframes, in [-1, 1].")
    agreeing: int = Field(description="Answered timeframes whose direction equals the consensus.")
    answered: int


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
    metrics: dict[str, Any] = Field(default_factory=dict)
    data_range: dict[str, Any] = Field(default_factory=dict)
