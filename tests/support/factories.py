"""Small builders for unit tests: candle frames and ledger rows (no I/O, seeded)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from signals.core.timeframes import timeframe_delta


def random_walk_candles(
    n: int, *, timeframe: str = "15m", seed: int = 0, start: str = "2024-01-01", price: float = 100.0
) -> pd.DataFrame:
    """A valid candle frame: geometric random-walk closes, open = previous close, wicks around the body."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.concatenate([[price], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n))
    volume = rng.lognormal(3, 0.5, n)
    timestamps = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n, freq=timeframe_delta(timeframe)).as_unit("ns")
    return pd.DataFrame(
        {"timestamp": timestamps, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def next_bar(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """A plausible closed candle right after the last one (+0.1 %)."""
    last = candles.iloc[-1]
    open_, close = float(last["close"]), float(last["close"]) * 1.001
    return pd.DataFrame(
        {
            "timestamp": [last["timestamp"] + timeframe_delta(timeframe)],
            "open": [open_],
            "high": [close * 1.0005],
            "low": [open_ * 0.9995],
            "close": [close],
            "volume": [float(last["volume"])],
        }
    )


def signal_record(**overrides: Any) -> dict[str, Any]:
    """A ledger row of a served signal (`signal_records`), with plausible values."""
    row = {
        "model_name": "cnn-lstm-btc-usdt-1h",
        "model_version": "v1",
        "symbol": "BTC/USDT",
        "timeframe": "1h",
        "candle_ms": 1_700_000_000_000,
        "mode": "live",
        "paper": False,
        "p_short": 0.2,
        "p_no_trade": 0.3,
        "p_long": 0.5,
        "direction": "LONG",
        "confidence": 0.5,
        "actionable": False,
        "abstain_reason": "no demonstrated edge",
        "threshold": None,
        "edge_verdict": "none",
        "horizon_bars": 10,
        "expires_ms": 1_700_000_000_000 + 11 * 3_600_000,
        "close": 60_000.0,
        "risk": 0.01,
        "reversal": 0,
        "persistence": 1,
        "features_hash": "0" * 64,
        "data_source": "synthetic",
        "recorded_ms": 1_700_000_100_000,
        "payload": {"symbol": "BTC/USDT"},
    }
    return {**row, **overrides}


def action_record(**overrides: Any) -> dict[str, Any]:
    """A ledger row of a policy action (`action_records`), with plausible values."""
    row = {
        "model_name": "ppo-1h",
        "model_version": "ppo1",
        "symbol": "BTC/USDT",
        "timeframe": "1h",
        "candle_ms": 1_700_000_000_000,
        "position": "flat",
        "mode": "live",
        "action_name": "HOLD",
        "p_hold": 0.5,
        "p_buy": 0.3,
        "p_sell": 0.2,
        "actionable": False,
        "edge_verdict": "negative",
        "close": 60_000.0,
        "data_source": "synthetic",
        "recorded_ms": 1_700_000_100_000,
        "payload": {"symbol": "BTC/USDT", "action_name": "HOLD"},
    }
    return {**row, **overrides}


def positive_edge(**overrides: Any) -> dict[str, Any]:
    """A stored edge that passed the universe-wide rule (what a skilled model's metadata carries after training):
    the gate reads it as positive. Without its `rule` block a `positive` is never served (evidence.edge_at_load)."""
    edge: dict[str, Any] = {
        "verdict": "positive",
        "metric": "expectancy_after_costs_fraction",
        "value": 0.004,
        "ci_low": 0.001,
        "ci_high": 0.007,
        "n": 250,
        "source": "walk_forward",
        "walk_forward_verdict": "positive",
        "rule": {"version": "test", "passed": True, "reason": None},
    }
    return {**edge, **overrides}
