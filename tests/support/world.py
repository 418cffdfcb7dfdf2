"""A tiny, complete serving world for tests: synthetic candles in a store and briefly trained models.

Quality does not matter here; shapes, verification and the data path do. Everything is seeded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from signals.core.settings import get_settings
from signals.data.store import CandleStore
from signals.models.cnn_lstm.network import CnnLstmConfig
from signals.models.cnn_lstm.training import TrainConfig
from signals.pipelines import train_cnn_lstm_models, train_ppo_policy, write_synthetic_market
from tests.support.factories import next_bar

EXCHANGE = "synthetic"
END = pd.Timestamp("2026-11-20", tz="UTC")


@dataclass(frozen=True)
class World:
    data_dir: Path
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    models: tuple[tuple[str, str], ...]
    ppo_timeframe: str

    def env(self) -> dict[str, str]:
        """The environment a server of this world runs with."""
        import json

        return {
            "SIGNALS_DATA_DIR": str(self.data_dir),
            "SIGNALS_EXCHANGE": EXCHANGE,
            "SIGNALS_SOURCE": "store",
            "SIGNALS_UNIVERSE": json.dumps(list(self.symbols)),
            "SIGNALS_TIMEFRAMES": json.dumps(list(self.timeframes)),
            "SIGNALS_PPO_TIMEFRAME": self.ppo_timeframe,
            "SIGNALS_DEVICE": "cpu",
            "SIGNALS_SCHEDULER": "false",  # tests that want the candle-close loop turn it on themselves
        }


def build_world(
    data_dir: Path,
    *,
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT"),
    timeframes: tuple[str, ...] = ("15m", "1h", "4h", "1d"),
    models: tuple[tuple[str, str], ...] = (("BTC/USDT", "15m"), ("BTC/USDT", "1h"), ("ETH/USDT", "1h")),
    ppo_timeframe: str = "1h",
    days: int = 200,
) -> World:
    """Candles for every (symbol, timeframe), a 1-epoch pooled CNN-LSTM per timeframe of `models` (stored once per
    entry), plus a tiny PPO, through the same pipeline `signals train` uses."""
    store = CandleStore(data_dir)
    write_synthetic_market(store, symbols, timeframes, days, seed=11, end=END, exchange=EXCHANGE)
    tiny = CnnLstmConfig(conv_channels=(8,), lstm_hidden=8, head_hidden=8)
    config = TrainConfig(epochs=1, max_bars=900, seed=1)
    for timeframe in dict.fromkeys(tf for _, tf in models):
        pooled = [symbol for symbol, tf in models if tf == timeframe]
        train_cnn_lstm_models(store, EXCHANGE, pooled, timeframe, config, tiny)
    train_ppo_policy(store, EXCHANGE, symbols[:2], ppo_timeframe, timesteps=128, seed=1, max_bars=900)
    return World(data_dir, symbols, timeframes, models, ppo_timeframe)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (and re-read settings); restore both on exit."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def new_candle(world: World, timeframe: str) -> str:
    """Store the next candle of every pair of `world` on `timeframe`; its open time, as the API writes it."""
    store = CandleStore(world.data_dir)
    stamp = None
    for symbol in world.symbols:
        bar = next_bar(store.read(EXCHANGE, symbol, timeframe), timeframe)
        store.write(EXCHANGE, symbol, timeframe, bar)
        stamp = bar["timestamp"].iloc[0]
    assert stamp is not None
    return str(stamp.strftime("%Y-%m-%dT%H:%M:%SZ"))
