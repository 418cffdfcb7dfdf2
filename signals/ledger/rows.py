"""The ledger's rows, typed: one `TypedDict` per shape the store writes or returns, so that mypy checks the keys.

They are plain dicts at run time (SQLAlchemy's mappings, JSON-ready), so typing them changes no wire shape.
Column meanings live in `schema.py`; a row read back (`...Record`) holds every column of its table, the columns
the database fills (`id`, the outcome) included, None until filled. `payload` and `detail` stay JSON objects of
their own shape: the served `Signal`/`Action` (its schema is `contract.schemas`) and a free-form note.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

JsonObject = dict[str, Any]  # a JSON column: the served answer as published, or a free-form detail


class SignalRow(TypedDict):
    """A signal as recorded (`records.signal_row`): what was served, before its outcome is known."""

    model_name: str
    model_version: str
    symbol: str
    timeframe: str
    candle_ms: int
    mode: str  # live | backfill | shadow
    paper: bool
    p_short: float
    p_no_trade: float
    p_long: float
    direction: str
    confidence: float
    actionable: bool
    abstain_reason: str | None
    threshold: float | None
    edge_verdict: str
    horizon_bars: int | None
    expires_ms: int | None
    close: float
    risk: float | None
    features_hash: str
    data_source: str
    recorded_ms: int
    payload: JsonObject  # the Signal as served
    request_id: str | None  # the trace id of the request that computed it; None: the candle-close loop


class SignalRecord(SignalRow):
    """A signal record read back: the row, its id, and its outcome (None until the resolver filled it)."""

    id: int
    reversal: int | None
    persistence: int | None
    resolved_ms: int | None
    outcome_label: int | None
    touched: int | None
    bars_to_exit: int | None
    long_return: float | None
    short_return: float | None
    call_return: float | None
    outcome_note: str | None


class OutcomeColumns(TypedDict, total=False):
    """What the market did after a signal (`outcomes._resolve`): every column, or only a note."""

    outcome_label: int
    reversal: int
    persistence: int
    touched: int
    bars_to_exit: int
    long_return: float
    short_return: float
    call_return: float | None  # None: the signal called no direction
    outcome_note: str | None


class Outcome(OutcomeColumns):
    """An outcome to write (`Ledger.resolve`): the record's id, when it was resolved, and its columns."""

    id: int
    resolved_ms: int


class ActionRow(TypedDict):
    """A PPO action as recorded (`records.action_row`)."""

    model_name: str
    model_version: str
    symbol: str
    timeframe: str
    candle_ms: int
    position: str  # flat | long: the caller's position the action answered
    mode: str
    action_name: str
    p_hold: float
    p_buy: float
    p_sell: float
    actionable: bool
    edge_verdict: str
    close: float
    data_source: str
    recorded_ms: int
    payload: JsonObject  # the Action as served, less its explanation
    request_id: str | None  # the trace id of the request that computed it


class _NewRecord(TypedDict):
    """The columns every new record's INSERT returns first (`store._RETURNED_COLUMNS`), signal or action."""

    id: int
    model_name: str
    model_version: str
    symbol: str
    timeframe: str
    candle_ms: int
    mode: str


class RecordedSignal(_NewRecord):
    """What a newly recorded signal's alert needs (`store._RETURNED_COLUMNS`: the INSERT returns them)."""

    direction: str
    actionable: bool
    confidence: float
    recorded_ms: int
    payload: JsonObject


class RecordedAction(_NewRecord):
    """What a newly recorded action's alert needs (`store._RETURNED_COLUMNS`)."""

    position: str
    action_name: str
    actionable: bool
    recorded_ms: int
    payload: JsonObject


class StreamRow(TypedDict):
    """One published record of the push stream (`Ledger.published_since`), of either table."""

    kind: Literal["signal", "action"]
    id: int
    symbol: str
    timeframe: str
    model_version: str
    candle_ms: int
    recorded_ms: int
    payload: JsonObject


class LeaseRow(TypedDict):
    """A refresh lease (`Ledger.leases`)."""

    timeframe: str
    candle_ms: int
    holder: str
    lease_until_ms: int
    status: str  # claimed | done | failed
    attempts: int
    started_ms: int
    finished_ms: int | None
    detail: JsonObject | None


class ModelEvent(TypedDict):
    """A model version event to record (`Ledger.add_event`): serve, promote, rollback, pin, probation, ..."""

    at_ms: int
    kind: str
    model_name: str
    from_version: str | None
    to_version: str | None
    reason: str
    detail: JsonObject | None


class ModelEventRecord(ModelEvent):
    """A model version event read back (`Ledger.events`)."""

    id: int


class ModelStateRow(TypedDict):
    """Which version of a model serves (`Ledger.model_states`)."""

    model_name: str
    served_version: str | None  # None: the newest verified version serves
    pinned: bool
    updated_ms: int


class ModeSummary(TypedDict):
    """One (model, version, mode)'s live record in figures (`Ledger.live_summary`)."""

    model_name: str
    model_version: str
    mode: str
    recorded: int
    resolved: int
    hits: int
    calls: int
    call_return_sum: float
    paper_calls: int
    paper_return_sum: float
    last_candle_ms: int | None


class CallRow(TypedDict):
    """A resolved call of one model version (`Ledger.calls`): what probation and demotion judge."""

    candle_ms: int
    timeframe: str
    horizon_bars: int | None
    call_return: float
    actionable: bool
    paper: bool


class LedgerCounts(TypedDict):
    """How many records there are (`Ledger.counts`)."""

    signals: int
    pending: int
    actions: int


class Subscription(TypedDict):
    """An active alert subscription (`outbox.subscriptions`)."""

    id: int
    name: str
    kind: str  # webhook | telegram
    target: str
    secret: str | None
    filters: JsonObject
    active: bool
    created_ms: int


class AttemptRow(TypedDict):
    """One delivery attempt of an outbox message."""

    id: int
    outbox_id: int
    at_ms: int
    status_code: int | None
    error: str | None
    duration_ms: int


class MessageLogRow(TypedDict):
    """An outbox message with its subscription and attempts (`outbox.message_log`, `signals alerts log`)."""

    id: int
    subscription_id: int
    event_key: str
    event_type: str
    payload: JsonObject
    created_ms: int
    status: str  # pending | sending | delivered | dead
    attempts: int
    next_attempt_ms: int
    lease_until_ms: int | None
    delivered_ms: int | None
    last_error: str | None
    name: str
    kind: str
    target: str
    attempt_log: list[AttemptRow]
