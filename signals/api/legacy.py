"""Our answers in the shapes the older clients read (their envelopes, field names and scales).

The first older API's dashboard reads `{success, predictions: {"BTCUSDT": item}, count, warming_up}` with
confidence and accuracy on a 0-100 scale and flat `entry_price`, `stop_loss`, `take_profits[{level, price,
eta}]`; the second older API's bots and front end read the PPO answer `{action_id, action_name, symbol,
current_price, confidence (0-1), timestamp, model_version, strategy}`. Pure functions: the routes
(`compat.py`) and the push stream (`push.py`) share them.

Older clients cannot read our `actionable` flag, so a signal that is not actionable is shown to them as
NO_TRADE, with no levels and the reason; the model's own argmax travels beside it as `model_direction`. A policy
action that is not actionable reads as HOLD the same way (the model's own beside it as `model_action_name`): a bot
or card that draws `action_name` never shows a call the server itself does not stand behind. Prices are rounded to
what a price display shows (`display_price`), not the float arithmetic's tail (`88337.188571`).
"""

from __future__ import annotations

import math
from typing import Any, Final

import pandas as pd

from signals.contract import schemas
from signals.core.timeframes import close_time, iso_z, utc_now
from signals.core.vocab import ACTION_NAMES
from signals.features.ppo import PPO_OBS_SHAPE

TAKE_PROFIT_SLOTS = 3  # tp1..tp3: what the older items always carry (null when there is no plan)
PRICE_DIGITS: Final = 7  # significant digits of a shown price (never fewer than 2 decimals): finer than a tick
HOLD_ID: Final = ACTION_NAMES.index("HOLD")


def display_price(price: float | None) -> float | None:
    """A price as the older clients print it: 7 significant digits, at least 2 decimals (88337.188571 -> 88337.19,
    0.0000123456789 -> 0.00001234568). An exchange's tick is never finer than that (BTC 0.01, PEPE 1e-8), so a
    price on its tick (ours are: `risk.round_to_tick`) is unchanged; the synthetic market's are rounded."""
    if price is None or not math.isfinite(price) or price == 0:
        return price
    decimals = max(2, PRICE_DIGITS - 1 - math.floor(math.log10(abs(price))))
    return round(price, decimals)


def compact_symbol(symbol: str) -> str:
    """`BTC/USDT` -> `BTCUSDT`, the older APIs' spelling."""
    return symbol.replace("/", "")


def percent(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 2)


def signal_item(signal: schemas.Signal) -> dict[str, Any]:
    """One prediction as the first older dashboard renders it (plus our fields, which it ignores)."""
    levels = signal.levels if signal.actionable else None
    basis = close_time(pd.Timestamp(signal.candle_time), signal.timeframe)  # the plan starts at the close
    take_profits = [
        {
            "level": tp.level,
            "price": display_price(tp.price),
            "eta": iso_z(basis + pd.Timedelta(minutes=tp.eta_minutes)),
            "r_multiple": tp.r_multiple,
        }
        for tp in (levels.take_profits if levels else [])
    ]
    slots: dict[str, Any] = {}
    for index in range(TAKE_PROFIT_SLOTS):
        tp = take_profits[index] if index < len(take_profits) else None
        slots[f"tp{index + 1}"] = tp["price"] if tp else None
        slots[f"tp{index + 1}_eta"] = tp["eta"] if tp else None
    accuracy = percent(signal.model_accuracy)
    return {
        "symbol": compact_symbol(signal.symbol),
        "pair": signal.symbol,
        "timeframe": signal.timeframe,
        "direction": signal.direction if signal.actionable else "NO_TRADE",
        "model_direction": signal.direction,
        "confidence": percent(signal.confidence),
        "accuracy": accuracy,
        "accuracy_estimate": accuracy,
        "accuracy_ci": [percent(bound) for bound in signal.model_accuracy_ci] if signal.model_accuracy_ci else None,
        "baseline_accuracy": percent(signal.baseline_accuracy),
        "current_price": display_price(signal.current_price),
        "entry_price": display_price(levels.entry) if levels else None,
        "stop_loss": display_price(levels.stop_loss) if levels else None,
        "take_profits": take_profits,
        **slots,
        "take_profit": slots["tp1"],
        "risk_reward": levels.risk_reward if levels else None,
        "valid_until": iso_z(signal.valid_until),
        "timestamp": iso_z(signal.prediction_time),
        "candle_time": iso_z(signal.candle_time),
        "source": signal.data_source,
        "status": "stale" if signal.stale else "active" if signal.actionable else "no_trade",
        "reason": signal.abstain_reason,
        "actionable": signal.actionable,
        "edge": signal.edge.verdict,
        "model_version": signal.model_version,
        "stale": signal.stale,
    }


def predictions_envelope(batch: schemas.BatchResponse, *, at: pd.Timestamp | None = None) -> dict[str, Any]:
    """`GET /api/predictions`: every answered symbol keyed by its compact name; failures under `errors`."""
    predictions = {compact_symbol(s.symbol): signal_item(s) for s in batch.signals}
    return {
        "success": True,
        "predictions": predictions,
        "count": len(predictions),
        "warming_up": False,
        "timeframe": batch.timeframe,
        "timestamp": iso_z(at or utc_now()),
        "errors": {compact_symbol(e.symbol): {"status": e.status, "error": e.message} for e in batch.errors},
    }


def prediction_envelope(signal: schemas.Signal, *, at: pd.Timestamp | None = None) -> dict[str, Any]:
    """`GET /api/predictions/{symbol}`."""
    return {
        "success": True,
        "symbol": compact_symbol(signal.symbol),
        "prediction": signal_item(signal),
        "timestamp": iso_z(at or utc_now()),
    }


def summary_envelope(summary: schemas.SummaryResponse, *, at: pd.Timestamp | None = None) -> dict[str, Any]:
    """`GET /api/predictions/{symbol}/summary`: one item per answered timeframe, and our consensus beside."""
    return {
        "status": "success",
        "success": True,
        "symbol": compact_symbol(summary.symbol),
        "summary": {timeframe: signal_item(signal) for timeframe, signal in summary.signals.items()},
        "consensus": summary.consensus.model_dump(mode="json") if summary.consensus else None,
        "errors": {e.timeframe or "": {"status": e.status, "error": e.message} for e in summary.errors},
        "timestamp": iso_z(at or utc_now()),
    }


def ppo_prediction(action: schemas.Action, *, symbol_as_written: str, at: pd.Timestamp | None = None) -> dict[str, Any]:
    """The second older API's PPO answer: `symbol` echoed as the caller wrote it, `explanation` a string.

    The structured explanation stays available under `explanation_details`."""
    return {
        **ppo_update(action, symbol_as_written=symbol_as_written, at=at),
        "explanation": action.explanation.summary if action.explanation else None,
        "explanation_details": action.explanation.model_dump(mode="json") if action.explanation else None,
        "probabilities": action.probabilities.model_dump(),
        "edge": action.edge.model_dump(mode="json"),
        "candle_time": iso_z(action.candle_time),
        "valid_until": iso_z(action.valid_until),
        "stale": action.stale,
    }


def ppo_update(
    action: schemas.Action, *, symbol_as_written: str | None = None, at: pd.Timestamp | None = None
) -> dict[str, Any]:
    """The fields of a PPO answer every older client reads (also the WebSocket `prediction_update` data): HOLD
    unless actionable, the model's own action beside; `symbol` as the client wrote it (compact when it did not)."""
    return {
        "action_id": action.action_id if action.actionable else HOLD_ID,
        "action_name": action.action_name if action.actionable else "HOLD",
        "model_action_id": action.action_id,
        "model_action_name": action.action_name,
        "actionable": action.actionable,
        "abstain_reason": action.abstain_reason,
        "symbol": symbol_as_written or compact_symbol(action.symbol),
        "pair": action.symbol,
        "timeframe": action.timeframe,
        "current_price": display_price(action.current_price),
        "confidence": action.confidence,
        "timestamp": iso_z(at or action.candle_time),
        "model_version": action.model_version,
        "strategy": "PPO",
    }


def ppo_model_info(models: list[schemas.ModelInfo], ppo_timeframe: str) -> dict[str, Any]:
    """`GET /api/v1/prediction/model/info`: the served policy as one object (every policy under `models`)."""
    policies = [m for m in models if m.family == "ppo"]
    main = next((m for m in policies if m.timeframe == ppo_timeframe), None)  # what /action serves by default
    lookback, features = PPO_OBS_SHAPE  # the market features and the caller's position
    return {
        "loaded": main is not None and main.status == "ok",
        "model_type": "PPO",
        "policy": "MlpPolicy",
        "observation_space": f"Box({lookback}, {features})",
        "action_space": f"Discrete({len(ACTION_NAMES)})",
        "window_size": lookback,
        "num_features": features,
        "timeframe": main.timeframe if main else None,
        "model_version": main.version if main else None,
        "edge": main.edge.model_dump(mode="json") if main and main.edge else None,
        "models": [m.model_dump(mode="json") for m in policies],
    }


def ppo_model_health(models: list[schemas.ModelInfo], ppo_timeframe: str, service: str) -> dict[str, Any]:
    """`GET /api/v1/prediction/model/health`: `healthy` when the default policy serves."""
    policies = [m for m in models if m.family == "ppo"]
    main = next((m for m in policies if m.timeframe == ppo_timeframe), None)
    loaded = main is not None and main.status == "ok"
    if loaded:
        message = f"PPO policy {main.name}:{main.version} loaded"  # type: ignore[union-attr]
    elif main is not None:
        message = f"PPO policy {main.name} unavailable: {main.error}"
    else:
        message = f"no PPO policy for {ppo_timeframe}; train one with `signals train ppo --timeframe {ppo_timeframe}`"
    return {
        "status": "healthy" if loaded else "unavailable",
        "model_loaded": loaded,
        "service": service,
        "message": message,
        "models": len(models),
        "unavailable": [m.name for m in models if m.status != "ok"],
    }
