"""A tiny, complete serving world for tests: synthetic candles in a store and briefly trained models.

Quality does not matter here; shapes, verification and the data path do. Everything is seeded. The session builds
one world (`trained_world` in tests/conftest.py, 25-77 s); a module that writes to its data directory (a ledger, a
new candle) works on its own copy (`copy_world`), and a module that serves fewer pairs or timeframes narrows it
(`World.narrowed`): the trained models live once in the session's model store.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import bentoml
import pandas as pd

from signals.core.settings import get_settings
from signals.data.store import CandleStore
from signals.models.cnn_lstm.network import CnnLstmConfig
from signals.models.cnn_lstm.training import TrainConfig
from signals.pipelines import train_cnn_lstm_models, train_ppo_policy, write_synthetic_market
from tests.support.factories import next_bar

EXCHANGE = "synthetic"
END = pd.Timestamp("2026-11-20", tz="UTC")
BUILDS: list[float] = []  # seconds of each `build_world` in this session (tests/conftest.py reports them)
WORLD_MODELS: set[str] = set()  # the tags the session's worlds stored: kept when a module's own models are removed


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

    def narrowed(
        self,
        *,
        symbols: tuple[str, ...] | None = None,
        timeframes: tuple[str, ...] | None = None,
        models: tuple[tuple[str, str], ...] | None = None,
    ) -> World:
        """The same candles and models, serving only these symbols, timeframes and models (each must be in it)."""
        narrow = replace(
            self,
            symbols=self.symbols if symbols is None else symbols,
            timeframes=self.timeframes if timeframes is None else timeframes,
            models=self.models if models is None else models,
        )
        assert set(narrow.symbols) <= set(self.symbols) and set(narrow.timeframes) <= set(self.timeframes), narrow
        assert set(narrow.models) <= set(self.models), narrow.models
        return narrow


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
    started = time.perf_counter()
    store = CandleStore(data_dir)
    write_synthetic_market(store, symbols, timeframes, days, seed=11, end=END, exchange=EXCHANGE)
    tiny = CnnLstmConfig(conv_channels=(8,), lstm_hidden=8, head_hidden=8)
    config = TrainConfig(epochs=1, max_bars=900, seed=1)
    for timeframe in dict.fromkeys(tf for _, tf in models):
        pooled = [symbol for symbol, tf in models if tf == timeframe]
        train_cnn_lstm_models(store, EXCHANGE, pooled, timeframe, config, tiny)
    train_ppo_policy(store, EXCHANGE, symbols[:2], ppo_timeframe, timesteps=128, seed=1, max_bars=900)
    WORLD_MODELS.update(str(m.tag) for m in bentoml.models.list())
    BUILDS.append(time.perf_counter() - started)
    return World(data_dir, symbols, timeframes, models, ppo_timeframe)


def copy_world(world: World, data_dir: Path) -> World:
    """`world` with its own copy of the candle store (and whatever else its data directory holds): for a module
    whose tests write there (a ledger, new candles) without touching the session's world. The models are shared:
    they are read, never written, through the model store."""
    shutil.copytree(world.data_dir, data_dir, dirs_exist_ok=True)
    return replace(world, data_dir=data_dir)


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
