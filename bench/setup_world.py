"""The benchmark's own world: a BentoML home and a candle store under one work dir, reused when present.

Why its own: the numbers must not depend on what a developer's ~/bentoml or ./data happen to hold, and a
second `make bench` must not pay for training again. Quality does not matter, forward cost does: the
CNN-LSTMs keep the default network size (about 69k parameters) and are trained for one epoch on few bars.

`BENTOML_HOME` must be set before `bentoml` is first imported (it caches the store path), so the model
imports in `build_world` happen lazily, after `use_work_dir`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EXCHANGE = "synthetic"
DEFAULT_WORK_DIR = Path(__file__).resolve().parent / ".work"
MULTI_TF_SYMBOLS: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
BASE_TIMEFRAME = "1h"
MARKER = "world.json"
SEED = 11


@dataclass(frozen=True)
class WorldSpec:
    """What to build. `full()` is the benchmark's world, `smoke()` a tiny one for CI."""

    universe: tuple[str, ...]
    multi_tf_symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    days_multi: int  # 1d models need ~600 bars for a purged train / validation / test split
    days_single: int
    max_bars: int
    ppo_timesteps: int
    tiny_network: bool = False

    @classmethod
    def full(cls) -> WorldSpec:
        from signals.core.settings import DEFAULT_UNIVERSE
        from signals.core.timeframes import MODEL_TIMEFRAMES

        return cls(DEFAULT_UNIVERSE, MULTI_TF_SYMBOLS, MODEL_TIMEFRAMES, 730, 60, 700, 256)

    @classmethod
    def smoke(cls) -> WorldSpec:
        return cls(("BTC/USDT", "ETH/USDT"), ("BTC/USDT",), ("1h", "4h"), 200, 60, 600, 64, tiny_network=True)

    def models(self) -> list[tuple[str, str]]:
        """Every (symbol, timeframe) with a CNN-LSTM: the universe on the base timeframe, more for a few."""
        pairs = [(s, BASE_TIMEFRAME) for s in self.universe]
        pairs += [(s, tf) for s in self.multi_tf_symbols for tf in self.timeframes if tf != BASE_TIMEFRAME]
        return pairs


@dataclass
class World:
    """A built world: where it lives, what it holds, and the environment a server of it runs with."""

    work_dir: Path
    spec: WorldSpec
    seconds: float = 0.0
    reused: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def bentoml_home(self) -> Path:
        return self.work_dir / "bentoml"

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    def env(self) -> dict[str, str]:
        """Environment of every server and of in-process model loading for this world."""
        return {
            "BENTOML_HOME": str(self.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            "SIGNALS_DATA_DIR": str(self.data_dir),
            "SIGNALS_EXCHANGE": EXCHANGE,
            "SIGNALS_SOURCE": "store",
            "SIGNALS_UNIVERSE": json.dumps(list(self.spec.universe)),
            "SIGNALS_TIMEFRAMES": json.dumps(list(self.spec.timeframes)),
            "SIGNALS_PPO_TIMEFRAME": BASE_TIMEFRAME,
            "SIGNALS_DEVICE": "cpu",
        }


def use_work_dir(work_dir: Path, spec: WorldSpec) -> World:
    """Point this process at the world's store (before bentoml is imported) and return its description."""
    world = World(work_dir.resolve(), spec)
    os.environ.update(world.env())
    return world


def _spec_key(spec: WorldSpec) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(spec)))


def build_world(work_dir: Path = DEFAULT_WORK_DIR, spec: WorldSpec | None = None) -> World:
    """Candles + CNN-LSTMs + a PPO in `work_dir`; idempotent: a complete world of the same spec is reused."""
    spec = spec or WorldSpec.full()
    world = use_work_dir(work_dir, spec)
    marker = world.work_dir / MARKER
    started = time.perf_counter()
    if marker.is_file() and json.loads(marker.read_text()).get("spec") == _spec_key(spec):
        world.reused, world.seconds = True, time.perf_counter() - started
        logger.info("world reused from %s", world.work_dir)
        return world
    world.work_dir.mkdir(parents=True, exist_ok=True)
    world.timings["candles_s"] = _timed(lambda: _write_candles(world))
    world.timings["cnn_lstm_s"] = _timed(lambda: _train_cnn_lstms(world))
    world.timings["ppo_s"] = _timed(lambda: _train_ppo(world))
    world.seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"spec": _spec_key(spec), "seconds": world.seconds, **world.timings}, indent=2))
    logger.info("world built in %.1f s at %s (%s)", world.seconds, world.work_dir, world.timings)
    return world


def _timed(step: Any) -> float:
    started = time.perf_counter()
    step()
    return round(time.perf_counter() - started, 2)


def _end() -> Any:
    import pandas as pd

    return pd.Timestamp("2026-11-20", tz="UTC")  # fixed: the same candles every time, on every machine


def _write_candles(world: World) -> None:
    from signals.data.store import CandleStore
    from signals.pipelines import write_synthetic_market

    store, spec = CandleStore(world.data_dir), world.spec
    write_synthetic_market(store, spec.multi_tf_symbols, spec.timeframes, spec.days_multi, SEED, end=_end())
    single_symbols = [s for s in spec.universe if s not in spec.multi_tf_symbols]
    write_synthetic_market(
        store, single_symbols, [BASE_TIMEFRAME], spec.days_single, SEED, end=_end(), base_timeframe=BASE_TIMEFRAME
    )


def _train_cnn_lstms(world: World) -> None:
    """One pooled network per timeframe over its symbols, as `signals train` makes them (one epoch, no folds:
    the benchmark measures serving cost, not skill)."""
    import torch

    from signals.data.store import CandleStore
    from signals.models.cnn_lstm.artifact import latest_cnn_lstm_tags
    from signals.models.cnn_lstm.network import CnnLstmConfig
    from signals.models.cnn_lstm.training import TrainConfig
    from signals.pipelines import train_cnn_lstm_models

    torch.set_num_threads(max(1, os.cpu_count() or 1))  # building the world is not what is measured
    store = CandleStore(world.data_dir)
    present = set(latest_cnn_lstm_tags())  # a half-built world resumes where it stopped
    net = CnnLstmConfig(conv_channels=(8,), lstm_hidden=8, head_hidden=8) if world.spec.tiny_network else None
    config = TrainConfig(epochs=1, max_bars=world.spec.max_bars, seed=1, folds=0)
    by_timeframe: dict[str, list[str]] = {}
    for symbol, timeframe in world.spec.models():
        if (symbol, timeframe) not in present:
            by_timeframe.setdefault(timeframe, []).append(symbol)
    for timeframe, symbols in by_timeframe.items():
        train_cnn_lstm_models(store, EXCHANGE, symbols, timeframe, config, net)


def _train_ppo(world: World) -> None:
    from signals.data.store import CandleStore
    from signals.models.families import PPO
    from signals.models.registry import list_models
    from signals.pipelines import train_ppo_policy

    if any(True for _ in list_models(PPO.name)):
        return
    symbols = world.spec.multi_tf_symbols[:2] or world.spec.universe[:2]
    store = CandleStore(world.data_dir)
    train_ppo_policy(store, EXCHANGE, symbols, BASE_TIMEFRAME, world.spec.ppo_timesteps, seed=1, max_bars=1500)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--smoke", action="store_true", help="the tiny CI world")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    world = build_world(args.work_dir, WorldSpec.smoke() if args.smoke else WorldSpec.full())
    logger.info("world at %s: %.1f s (reused: %s)", world.work_dir, world.seconds, world.reused)


if __name__ == "__main__":
    main()
