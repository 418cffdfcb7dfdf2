"""A tiny, complete serving world for tests: synthetic candles in a store and briefly trained models.

Quality does not matter here; shapes, verification and the data path do. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from signals.data.store import CandleStore
from signals.data.synthetic import synthetic_universe
from signals.models.cnn_lstm.artifact import save_cnn_lstm
from signals.models.cnn_lstm.network import CnnLstmConfig
from signals.models.cnn_lstm.training import TrainConfig, train_cnn_lstm
from signals.models.ppo.artifact import import_ppo
from signals.models.ppo.training import train_ppo

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
    """Candles for every (symbol, timeframe) and a 1-epoch CNN-LSTM per entry of `models`, plus a tiny PPO."""
    store = CandleStore(data_dir)
    candles = synthetic_universe(symbols, timeframes, days=days, seed=11, end=END)
    for (symbol, timeframe), frame in candles.items():
        store.replace(EXCHANGE, symbol, timeframe, frame)
    tiny = CnnLstmConfig(conv_channels=(8,), lstm_hidden=8, head_hidden=8)
    for symbol, timeframe in models:
        result = train_cnn_lstm(candles[(symbol, timeframe)], TrainConfig(epochs=1, max_bars=900, seed=1), tiny)
        save_cnn_lstm(result, symbol=symbol, timeframe=timeframe, exchange=EXCHANGE)
    histories = {s: candles[(s, ppo_timeframe)].iloc[-900:].reset_index(drop=True) for s in symbols[:2]}
    import_ppo(train_ppo(histories, ppo_timeframe, timesteps=128, seed=1))
    return World(data_dir, symbols, timeframes, models, ppo_timeframe)
