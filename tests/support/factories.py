"""Small candle-frame builders for unit tests (no I/O, seeded)."""

from __future__ import annotations

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
