"""The one candles -> train -> store pipeline, and "ensure the demo world".

Every caller goes through here: `signals train`, `signals bootstrap`, the tests' world and the benchmark's world.
So a change to how a model is trained and imported is made once, and what the tests and the benchmark exercise
is what a user runs.

The model layer (torch, stable-baselines3) is imported inside the functions that train: the command line
imports this module for its defaults, and `signals --help` should not wait seconds for torch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from signals.core.errors import SignalsError
from signals.core.settings import Settings, get_settings
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import parse_timeframe, timeframe_seconds
from signals.data.store import CandleStore
from signals.data.synthetic import (
    DEMO_DAYS,
    DEMO_PLANTED,
    DEMO_SEED,
    DEMO_SYMBOLS,
    SYNTHETIC_EXCHANGE,
    PlantedEdge,
    extend_stored_market,
    synthetic_universe,
)

if TYPE_CHECKING:
    from signals.models.cnn_lstm.network import CnnLstmConfig
    from signals.models.cnn_lstm.training import EpochCallback, TrainConfig, TrainingResult
    from signals.models.evidence import Candidate
    from signals.models.plugin import FamilyPlugin
    from signals.models.ppo.training import PpoHyperParameters, PpoTrainingResult
    from signals.models.recipe import FamilyTrainingResult
    from signals.models.registry import StoredModel

logger = logging.getLogger(__name__)

DEMO_PPO_TIMEFRAME = "1h"
# 730 daily bars: ~630 labelled 1d windows, enough for a purged train / validation / test split (each
# boundary drops lookback + horizon = 64 samples) and far more than a serving window needs (93 bars).
DEMO_EPOCHS = 3
DEMO_PPO_TIMESTEPS = 2048
# Demo training reads only the most recent bars of each series: under two minutes on two cores. 20 000 bars are
# 208 days of 15m (5 000 windows a pair at stride 4) and all of 1h, 4h and 1d; at 3 000 (31 days of 15m) the
# planted SOL 15m edge had ~130 walk-forward calls and a 6-day confirmation block without a call.
DEMO_CNN_MAX_BARS = 20_000
DEMO_PPO_MAX_BARS = 2000


@dataclass(frozen=True)
class TrainedTimeframe:
    """One timeframe's CNN-LSTM as trained (its walk-forward report inside) and its store entries, one per pair."""

    result: TrainingResult
    stored: list[StoredModel]


def write_synthetic_market(
    store: CandleStore,
    symbols: Iterable[str],
    timeframes: Iterable[str],
    days: int,
    seed: int,
    *,
    end: pd.Timestamp | None = None,
    exchange: str = SYNTHETIC_EXCHANGE,
    replace: bool = True,
    base_timeframe: str = "15m",
    planted: Mapping[str, PlantedEdge] | None = None,
) -> dict[tuple[str, str], pd.DataFrame]:
    """Generate a seeded synthetic market and write it to the store (replacing, or merging into, its files).

    `planted`: symbols that get a learnable edge (`signals.data.synthetic.PlantedEdge`); the others carry none."""
    frames = synthetic_universe(
        symbols, timeframes, days, seed, end=end, base_timeframe=base_timeframe, planted=planted
    )
    write = store.replace if replace else store.write
    for (symbol, timeframe), candles in frames.items():
        write(exchange, symbol, timeframe, candles)
    return frames


def read_candles(store: CandleStore, exchange: str, symbols: Iterable[str], timeframe: str) -> dict[str, pd.DataFrame]:
    """Each symbol's stored candles of one timeframe, keyed by the normalised symbol."""
    return {s: store.read(exchange, s, timeframe) for s in dict.fromkeys(normalize_symbol(x) for x in symbols)}


def read_higher(
    store: CandleStore, exchange: str, candles: Mapping[str, pd.DataFrame], timeframe: str
) -> dict[str, dict[str, pd.DataFrame]]:
    """The pairs' stored candles of the higher timeframes the market context reads for `timeframe`."""
    from signals.features.context import higher_candles

    return higher_candles(lambda symbol, tf: store.read_or_empty(exchange, symbol, tf), candles, timeframe)


def universe_size(settings: Settings | None = None) -> int:
    """Pair-models the server may serve per family: symbols x timeframes of the settings (the rule's least m)."""
    settings = settings or get_settings()
    return len(settings.universe) * len(settings.timeframes)


def train_cnn_lstm_models(
    store: CandleStore,
    exchange: str,
    symbols: Iterable[str],
    timeframes: str | Iterable[str],
    config: TrainConfig | None = None,
    net_config: CnnLstmConfig | None = None,
    *,
    pooled: bool = True,
    on_epoch: EpochCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_timeframe: Callable[[str], None] | None = None,
    on_failure: Callable[[str, Exception], None] | None = None,
    universe: int | None = None,
) -> list[TrainedTimeframe]:
    """Train, walk-forward-evaluate and calibrate the CNN-LSTMs of one or more timeframes, apply the universe-wide
    rule (`models.evidence`) across every model of this run, then import them.

    The rule needs every p-value of the retrain before any verdict is final, so nothing is saved until all
    timeframes are trained. `pooled`: one network over every pair's windows (the default: the features are
    scale-free, so 34 pairs give 34x the samples), stored once per pair with that pair's calibration and scores.
    Otherwise one network per pair, trained by the same recipe, to compare against. `on_failure`: a timeframe that
    fails to train (too few bars) is reported there and the others go on (its models count as untested, p = 1);
    without it the error is raised. `universe`: the rule's least m (default: `universe_size()`).
    """
    from signals.models.cnn_lstm.artifact import save_cnn_lstm_models
    from signals.models.cnn_lstm.training import train_pooled
    from signals.models.evidence import apply_rule

    timeframe_list = [timeframes] if isinstance(timeframes, str) else list(timeframes)
    symbol_list = list(symbols)
    results: list[TrainingResult] = []
    for timeframe in dict.fromkeys(parse_timeframe(tf) for tf in timeframe_list):
        if on_timeframe is not None:
            on_timeframe(timeframe)
        try:
            candles = read_candles(store, exchange, symbol_list, timeframe)
            groups = [candles] if pooled else [{symbol: frame} for symbol, frame in candles.items()]
            for group in groups:
                results.append(train_pooled(group, timeframe, config, net_config, on_epoch=on_epoch, on_stage=on_stage))
        except (SignalsError, ValueError) as error:
            if on_failure is None:
                raise
            on_failure(timeframe, error)
    edges = apply_rule(cnn_lstm_candidates(results), universe_size() if universe is None else universe)
    out = []
    for result in results:
        mine = {symbol: edges[rule_key(symbol, result.timeframe)] for symbol in result.symbols}
        stored = save_cnn_lstm_models(result, exchange=exchange, edges=mine)
        logger.info(
            "trained %s %s in %.1f s: %s",
            result.timeframe,
            ",".join(result.symbols),
            result.seconds,
            [f"{s.tag} {s.card.verdict}" for s in stored],
        )
        out.append(TrainedTimeframe(result, stored))
    return out


def rule_key(symbol: str, timeframe: str) -> str:
    return f"{symbol} {timeframe}"


def cnn_lstm_candidates(results: Iterable[TrainingResult | FamilyTrainingResult]) -> dict[str, Candidate]:
    """Every pair-model of a retrain as the universe rule reads it (walk-forward edge, pooled verdict,
    confirmation)."""
    from signals.models.evidence import Candidate

    return {
        rule_key(symbol, result.timeframe): Candidate(
            result.pair_edge(symbol), result.pooled_verdict, result.pair_confirmation(symbol)
        )
        for result in results
        for symbol in result.symbols
    }


@dataclass(frozen=True)
class TrainedFamilyTimeframe:
    """One timeframe of an installed family as trained and its store entries, one per pair."""

    result: FamilyTrainingResult
    stored: list[StoredModel]


def train_family_models(
    plugin: FamilyPlugin,
    store: CandleStore,
    exchange: str,
    symbols: Iterable[str],
    timeframes: str | Iterable[str],
    config: TrainConfig | None = None,
    *,
    on_stage: Callable[[str], None] | None = None,
    on_failure: Callable[[str, Exception], None] | None = None,
    universe: int | None = None,
) -> list[TrainedFamilyTimeframe]:
    """An installed family (`models.plugin`) trained pooled per timeframe by the project's recipe
    (`models.recipe.train_family`), the universe-wide rule applied across the whole run, then imported."""
    from signals.models.evidence import apply_rule
    from signals.models.plugin import reads_context
    from signals.models.recipe import save_family_models, train_family

    timeframe_list = [timeframes] if isinstance(timeframes, str) else list(timeframes)
    symbol_list = list(symbols)
    results = []
    for timeframe in dict.fromkeys(parse_timeframe(tf) for tf in timeframe_list):
        try:
            candles = read_candles(store, exchange, symbol_list, timeframe)
            higher = read_higher(store, exchange, candles, timeframe) if reads_context(plugin) else None
            results.append(train_family(plugin, candles, timeframe, config, higher=higher, on_stage=on_stage))
        except (SignalsError, ValueError) as error:
            if on_failure is None:
                raise
            on_failure(timeframe, error)
    edges = apply_rule(cnn_lstm_candidates(results), universe_size() if universe is None else universe)
    out = []
    for result in results:
        mine = {symbol: edges[rule_key(symbol, result.timeframe)] for symbol in result.symbols}
        stored = save_family_models(plugin, result, exchange=exchange, edges=mine)
        tags = [s.tag for s in stored]
        logger.info("trained %s %s in %.1f s: %s", plugin.name, result.timeframe, result.seconds, tags)
        out.append(TrainedFamilyTimeframe(result, stored))
    return out


def train_ppo_policy(
    store: CandleStore,
    exchange: str,
    symbols: Iterable[str],
    timeframe: str,
    timesteps: int,
    seed: int = 0,
    *,
    max_bars: int | None = None,
    hyper_parameters: PpoHyperParameters | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[StoredModel, PpoTrainingResult]:
    """Train one PPO policy across the symbols' candles of `timeframe` (optionally their last `max_bars`)."""
    from signals.models.ppo.artifact import import_ppo
    from signals.models.ppo.training import ProgressCallback, train_ppo

    timeframe = parse_timeframe(timeframe)
    histories = {}
    for symbol in dict.fromkeys(normalize_symbol(s) for s in symbols):
        candles = store.read(exchange, symbol, timeframe)
        histories[symbol] = candles.iloc[-max_bars:].reset_index(drop=True) if max_bars else candles
    callback = ProgressCallback(on_progress) if on_progress is not None else None
    result = train_ppo(histories, timeframe, timesteps, seed, hyper_parameters=hyper_parameters, callback=callback)
    result = replace(result, edge=ppo_ruled_edge([result])[0])
    return import_ppo(result), result


def ppo_ruled_edge(results: Sequence[PpoTrainingResult]) -> list[dict[str, Any]]:
    """The final edge of each policy trained in one run, under the PPO's form of the universe rule (m = policies
    in the run, at least 1; the pooled veto is the policy's own verdict; the confirmation is the newest part of the
    held-out ranges)."""
    from signals.models.evidence import PPO_RULE_TEXT, Candidate, Confirmation, apply_rule

    candidates = {
        f"{i}": Candidate(r.edge, str(r.edge.get("verdict")), r.confirmation or Confirmation.of_edge(None, None, None))
        for i, r in enumerate(results)
    }
    edges = apply_rule(candidates, universe=1, text=PPO_RULE_TEXT)
    return [edges[f"{i}"] for i in range(len(results))]


@dataclass
class Step:
    """One line of what `ensure_demo_world` did."""

    step: str
    item: str
    status: str
    detail: str = ""
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        return {**self.__dict__, "seconds": round(self.seconds, 1)}


@dataclass(frozen=True)
class DemoWorld:
    """What the demo world holds; the defaults are `make serve`'s."""

    symbols: tuple[str, ...] = DEMO_SYMBOLS
    timeframes: tuple[str, ...] = ("15m", "1h", "4h", "1d")
    days: int = DEMO_DAYS
    epochs: int = DEMO_EPOCHS
    ppo_timesteps: int = DEMO_PPO_TIMESTEPS
    seed: int = DEMO_SEED
    end: pd.Timestamp | None = None  # None: the last UTC midnight, so demo data looks current
    net_config: CnnLstmConfig | None = None
    cnn_max_bars: int = DEMO_CNN_MAX_BARS
    ppo_max_bars: int = DEMO_PPO_MAX_BARS
    ppo_timeframe: str = DEMO_PPO_TIMEFRAME
    ppo_symbols: tuple[str, ...] | None = None  # None: every symbol
    # Symbols with a planted, learnable edge (default: SOL/USDT's, `DEMO_PLANTED`); the others are noise to a model.
    planted: Mapping[str, PlantedEdge] = field(default_factory=lambda: dict(DEMO_PLANTED))

    @property
    def sorted_timeframes(self) -> list[str]:
        return sorted(dict.fromkeys(parse_timeframe(tf) for tf in self.timeframes), key=timeframe_seconds)


def ensure_demo_world(store: CandleStore, world: DemoWorld | None = None, *, force: bool = False) -> Iterator[Step]:
    """Synthetic candles, a CNN-LSTM per (symbol, timeframe) and a PPO policy, each made only when missing.

    Idempotent (what exists is kept unless `force`), so `make serve` runs it every time. A model that fails to
    train (e.g. too few bars) is reported as a failed step and the others still train. Yields each step as it
    finishes, so a caller can show progress.
    """
    from signals.models.cnn_lstm.artifact import latest_cnn_lstm_tags
    from signals.models.cnn_lstm.training import TrainConfig
    from signals.models.device import configure_torch

    world = world or DemoWorld()
    configure_torch()
    symbols = list(dict.fromkeys(normalize_symbol(s) for s in world.symbols))
    timeframes = world.sorted_timeframes
    for symbol in symbols:
        step = Step("candles", symbol, "kept", "all timeframes already stored")
        started = time.perf_counter()
        if force or not all(store.exists(SYNTHETIC_EXCHANGE, symbol, tf) for tf in timeframes):
            frames = write_synthetic_market(
                store, [symbol], timeframes, world.days, world.seed, end=world.end, planted=world.planted
            )
            step.status = "generated"
            step.detail = ", ".join(f"{tf}: {len(frames[(symbol, tf)])}" for tf in timeframes)
        if world.end is None:  # a current demo: the market goes on to now, as the simulated source continues it
            added = extend_stored_market(
                store,
                SYNTHETIC_EXCHANGE,
                symbol,
                timeframes,
                pd.Timestamp.now(tz="UTC"),
                seed=world.seed,
                planted=world.planted,
            )
            if added:
                step.detail = f"{step.detail}; +{added} bars to now".lstrip("; ")
        step.seconds = time.perf_counter() - started
        yield step
    existing = latest_cnn_lstm_tags()
    config = TrainConfig(epochs=world.epochs, patience=world.epochs, max_bars=world.cnn_max_bars, seed=world.seed)
    for timeframe in timeframes:
        yield _ensure_cnn_lstm(store, symbols, timeframe, config, world.net_config, existing, force)
    if world.ppo_timeframe in timeframes:
        yield _ensure_ppo(store, world, world.ppo_symbols or tuple(symbols), force)


def _ensure_cnn_lstm(
    store: CandleStore,
    symbols: list[str],
    timeframe: str,
    config: TrainConfig,
    net_config: CnnLstmConfig | None,
    existing: dict[tuple[str, str], str],
    force: bool,
) -> Step:
    """One pooled network for the timeframe, unless every pair already has a model."""
    missing = [s for s in symbols if (s, timeframe) not in existing]
    step = Step("cnn-lstm", f"{timeframe} ({', '.join(symbols)})", "kept", f"{len(symbols)} models in the store")
    started = time.perf_counter()
    if force or missing:
        try:
            (trained,) = train_cnn_lstm_models(store, SYNTHETIC_EXCHANGE, symbols, timeframe, config, net_config)
        except (SignalsError, ValueError) as error:  # e.g. too few bars: the other timeframes still train
            step.status, step.detail = "failed", f"{error} (raise --days)"
        else:
            pooled = trained.result.walk_forward["pooled"]
            accuracy = pooled.get("accuracy", {}).get("value")
            shown = "n/a" if accuracy is None else f"{accuracy:.3f}"
            verdicts = sorted({str(s.card.verdict) for s in trained.stored})
            step.status = "trained"
            step.detail = (
                f"{len(trained.stored)} models; walk-forward accuracy {shown} vs majority "
                f"{pooled.get('majority_share', 0):.3f}; edge {', '.join(verdicts)}"
            )
    step.seconds = time.perf_counter() - started
    return step


def _ensure_ppo(store: CandleStore, world: DemoWorld, symbols: tuple[str, ...], force: bool) -> Step:
    from signals.models.families import PPO
    from signals.models.registry import list_models

    name = PPO.store_name(None, world.ppo_timeframe)
    tags = [str(m.tag) for m in list_models(PPO.name) if m.tag.name == name]
    step = Step("ppo", f"{name} ({', '.join(symbols)})", "kept", tags[0] if tags else "")
    started = time.perf_counter()
    if force or not tags:
        stored, _ = train_ppo_policy(
            store,
            SYNTHETIC_EXCHANGE,
            symbols,
            world.ppo_timeframe,
            world.ppo_timesteps,
            world.seed,
            max_bars=world.ppo_max_bars,
        )
        step.status, step.detail = "trained", str(stored.tag)
    step.seconds = time.perf_counter() - started
    return step
