"""Train the PPO trading policy on candle histories and evaluate it on a held-out, later range.

Each symbol's history is split chronologically: the policy trains on the windows that end in the first
~80 % of bars and is evaluated on the windows that end in the remaining ~20 %. A held-out window may
reach back into the training bars, but only as warm-up context for its features (indicators and the
50-bar lookback); every reward and every fill of the evaluation lies at a held-out bar, after the last
training bar. The evaluation runs the deterministic policy once through the whole held-out range of each
symbol and sets it beside buy-and-hold and staying flat, all with the same fees and slippage.

The trained policy goes into the model store through `models.ppo_store.import_ppo` as SB3's own
``policy.zip``. That zip holds cloudpickled parts, so the loader verifies its SHA-256 before SB3 reads it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from signals.core.errors import NotEnoughCandles
from signals.core.timeframes import iso_z, timeframe_seconds
from signals.core.vocab import ACTION_NAMES, BUY, HOLD
from signals.features.ppo import PPO_FEATURE_NAMES, PPO_OBS_SHAPE
from signals.models.evidence import Confirmation
from signals.models.ppo.env import (
    DEFAULT_FEE,
    DEFAULT_MAX_STEPS,
    DEFAULT_SLIPPAGE,
    FIRST_WINDOW_BAR,
    SymbolHistory,
    TradingEnv,
)
from signals.models.skill import block_bootstrap, edge_of

logger = logging.getLogger(__name__)

TRAIN_FRACTION: Final = 0.8
# The newest half of the held-out range confirms what its earlier half showed (the universe-wide rule's block (c)).
CONFIRM_SHARE: Final = 0.5
STRATEGIES: Final = ("policy", "buy_and_hold", "flat")
HELD_OUT_CONTEXT_NOTE: Final = (
    "held-out observation windows use up to 82 earlier (training) bars as feature warm-up and lookback "
    "context only; every held-out fill and reward lies after the last training bar"
)
Chooser = Callable[[np.ndarray], int]


@dataclass(frozen=True)
class PpoHyperParameters:
    """SB3 PPO settings; n_steps and batch_size shrink to the timesteps of a tiny run."""

    learning_rate: float = 3e-4
    n_steps: int = 1024
    batch_size: int = 64
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    net_arch: tuple[int, ...] = (64, 64)

    def for_timesteps(self, timesteps: int) -> PpoHyperParameters:
        n_steps = max(2, min(self.n_steps, timesteps))
        return PpoHyperParameters(**{**asdict(self), "n_steps": n_steps, "batch_size": min(self.batch_size, n_steps)})


@dataclass(frozen=True)
class SymbolSplit:
    """A symbol's training windows and its later held-out windows (no bar of one is traded in the other)."""

    symbol: str
    train: SymbolHistory
    held_out: SymbolHistory


@dataclass(frozen=True)
class StrategyResult:
    total_return: float  # final equity / 1 - 1, after selling any open long at the last close
    max_drawdown: float  # largest fall from a running peak of the marked-to-market equity, as a fraction
    trades: int  # fills, including that final sell
    log_returns: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))  # per step
    fills: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))  # per step, same bars

    def summary(self) -> dict[str, Any]:
        return {"total_return": self.total_return, "max_drawdown": self.max_drawdown, "trades": self.trades}


@dataclass(frozen=True)
class SymbolEvaluation:
    symbol: str
    first_bar: pd.Timestamp
    last_bar: pd.Timestamp
    bars: int
    results: dict[str, StrategyResult]

    def row(self) -> dict[str, Any]:
        policy, hold = self.results["policy"], self.results["buy_and_hold"]
        return {
            "symbol": self.symbol,
            "policy": policy.total_return,
            "buy_hold": hold.total_return,
            "flat": self.results["flat"].total_return,
            "policy_max_dd": policy.max_drawdown,
            "buy_hold_max_dd": hold.max_drawdown,
            "trades": policy.trades,
        }


@dataclass
class PpoTrainingResult:
    model: PPO
    timeframe: str
    splits: list[SymbolSplit]
    evaluation: list[SymbolEvaluation]
    hyper_parameters: PpoHyperParameters
    timesteps: int
    seed: int
    fee: float
    slippage: float
    max_episode_steps: int | None
    train_seconds: float
    trade_penalty: float = 0.0
    edge: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    confirmation: Confirmation | None = None  # the newest part of the held-out ranges (`held_out_edge`)

    @property
    def symbols(self) -> list[str]:
        return [split.symbol for split in self.splits]

    def metadata(self) -> dict[str, Any]:
        """JSON-like metadata for the model store: the contract to check at load, ranges, results, settings."""
        return {
            "timeframe": self.timeframe,
            "obs_shape": list(PPO_OBS_SHAPE),
            "feature_names": list(PPO_FEATURE_NAMES),
            "action_names": list(ACTION_NAMES),
            "symbols": self.symbols,
            "training_range": {s.symbol: _range(s.train) for s in self.splits},
            "held_out_range": {s.symbol: _range(s.held_out) for s in self.splits},
            "held_out_context": HELD_OUT_CONTEXT_NOTE,
            "evaluation": {
                e.symbol: {name: result.summary() for name, result in e.results.items()} for e in self.evaluation
            },
            "edge": self.edge,
            "confirmation": None if self.confirmation is None else self.confirmation.as_dict(),
            "held_out_summary": self.summary,
            "trade_penalty": self.trade_penalty,
            "hyper_parameters": {**asdict(self.hyper_parameters), "net_arch": list(self.hyper_parameters.net_arch)},
            "timesteps": self.timesteps,
            "seed": self.seed,
            "fee": self.fee,
            "slippage": self.slippage,
            "max_episode_steps": self.max_episode_steps,
            "train_seconds": round(self.train_seconds, 3),
        }


class ProgressCallback(BaseCallback):
    """Reports the number of timesteps done to `on_progress` every `every` steps and at the end."""

    def __init__(self, on_progress: Callable[[int], None], every: int = 64) -> None:
        super().__init__()
        self.on_progress, self.every = on_progress, every

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            self.on_progress(self.num_timesteps)
        return True

    def _on_training_end(self) -> None:
        self.on_progress(self.num_timesteps)


def _range(history: SymbolHistory) -> dict[str, Any]:
    return {"first_bar": iso_z(history.timestamps[0]), "last_bar": iso_z(history.timestamps[-1]), "bars": len(history)}


def split_history(symbol: str, candles: pd.DataFrame, train_fraction: float = TRAIN_FRACTION) -> SymbolSplit:
    """Chronological split at bar ``int(len(candles) * train_fraction)``: windows ending before it train."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    history = SymbolHistory.from_candles(symbol, candles)
    split_window = int(len(candles) * train_fraction) - FIRST_WINDOW_BAR
    if split_window < 2 or len(history) - split_window < 2:
        raise NotEnoughCandles(
            f"{symbol}: {len(candles)} candles leave too few windows for a train/held-out split; each part needs "
            f"at least 2 windows, and the training part also the {FIRST_WINDOW_BAR}-bar warm-up"
        )
    return SymbolSplit(symbol, history.slice(0, split_window), history.slice(split_window))


def run_strategy(history: SymbolHistory, choose: Chooser, *, fee: float, slippage: float) -> StrategyResult:
    """Trade one history start to end with `choose(observation) -> action`, then sell what is still held."""
    env = TradingEnv([history], fee=fee, slippage=slippage, max_steps=None)
    obs, _ = env.reset(options={"symbol": history.symbol, "start": 0})
    curve = [env.equity]
    fills = []
    truncated = False
    while not truncated:
        before = env.trades
        obs, _, _, truncated, _ = env.step(choose(obs))
        curve.append(env.equity)
        fills.append(env.trades - before)
    before = env.trades
    curve.append(env.liquidate())
    if fills:
        fills[-1] += env.trades - before  # the final sale belongs to the last bar
    equity = np.asarray(curve)
    drawdown = 1.0 - equity / np.maximum.accumulate(equity)
    steps = np.diff(np.log(equity))
    steps[-2] += steps[-1]  # the final sale belongs to the last bar
    return StrategyResult(
        total_return=float(equity[-1] - 1.0),
        max_drawdown=float(drawdown.max()),
        trades=env.trades,
        log_returns=steps[:-1],
        fills=np.asarray(fills, dtype=np.int64),
    )


def policy_chooser(model: PPO) -> Chooser:
    def choose(obs: np.ndarray) -> int:
        action, _ = model.predict(obs, deterministic=True)
        return int(action)

    return choose


def evaluate(history: SymbolHistory, choose: Chooser, *, fee: float, slippage: float) -> SymbolEvaluation:
    """The policy, buy-and-hold (buy at the first close, sell at the last) and flat on one held-out range."""
    strategies: dict[str, Chooser] = {"policy": choose, "buy_and_hold": lambda _: BUY, "flat": lambda _: HOLD}
    results = {name: run_strategy(history, c, fee=fee, slippage=slippage) for name, c in strategies.items()}
    return SymbolEvaluation(history.symbol, history.timestamps[0], history.timestamps[-1], len(history), results)


def train_ppo(
    histories: Mapping[str, pd.DataFrame],
    timeframe: str,
    timesteps: int,
    seed: int = 0,
    *,
    hyper_parameters: PpoHyperParameters | None = None,
    train_fraction: float = TRAIN_FRACTION,
    fee: float = DEFAULT_FEE,
    slippage: float = DEFAULT_SLIPPAGE,
    max_episode_steps: int | None = DEFAULT_MAX_STEPS,
    trade_penalty: float | None = None,
    callback: BaseCallback | None = None,
    confirm_share: float = CONFIRM_SHARE,
) -> PpoTrainingResult:
    """Train one policy over all symbols' training windows (a symbol per episode), then evaluate each symbol."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    if not histories:
        raise ValueError("no candle histories given")
    splits = [split_history(symbol, candles, train_fraction) for symbol, candles in histories.items()]
    hyper = (hyper_parameters or PpoHyperParameters()).for_timesteps(timesteps)
    penalty = fee + slippage if trade_penalty is None else trade_penalty  # default: each fill's cost counted twice
    env = TradingEnv(
        [s.train for s in splits], fee=fee, slippage=slippage, max_steps=max_episode_steps, trade_penalty=penalty
    )
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=hyper.learning_rate,
        n_steps=hyper.n_steps,
        batch_size=hyper.batch_size,
        n_epochs=hyper.n_epochs,
        gamma=hyper.gamma,
        gae_lambda=hyper.gae_lambda,
        clip_range=hyper.clip_range,
        ent_coef=hyper.ent_coef,
        policy_kwargs={"net_arch": list(hyper.net_arch)},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    logger.info("training PPO on %s %s for %d timesteps", [s.symbol for s in splits], timeframe, timesteps)
    started = time.perf_counter()
    model.learn(total_timesteps=timesteps, callback=callback)
    train_seconds = time.perf_counter() - started
    logger.info("trained in %.1f s; evaluating on the held-out ranges", train_seconds)
    choose = policy_chooser(model)
    evaluation = [evaluate(s.held_out, choose, fee=fee, slippage=slippage) for s in splits]
    edge, summary, confirmation = held_out_edge(evaluation, timeframe, trades_per_call=2, confirm_share=confirm_share)
    return PpoTrainingResult(
        model=model,
        timeframe=timeframe,
        splits=splits,
        evaluation=evaluation,
        hyper_parameters=hyper,
        timesteps=timesteps,
        seed=seed,
        fee=fee,
        slippage=slippage,
        max_episode_steps=max_episode_steps,
        train_seconds=train_seconds,
        trade_penalty=penalty,
        edge=edge,
        summary=summary,
        confirmation=confirmation,
    )


def held_out_edge(
    evaluation: list[SymbolEvaluation],
    timeframe: str,
    *,
    trades_per_call: int = 2,
    block_bars: int = 48,
    confirm_share: float = CONFIRM_SHARE,
) -> tuple[dict[str, Any], dict[str, Any], Confirmation]:
    """The policy's edge over staying flat on the held-out ranges, after costs: its mean log return per bar, every
    symbol's bars pooled, with a block-bootstrap interval (blocks of `block_bars` bars of calendar time) and a
    one-sided p-value.

    The held-out calendar span is cut once for every symbol: the edge reads its earlier part, the confirmation
    (`models.evidence.Confirmation`) its newest `confirm_share`, so that the universe-wide rule has a second,
    later test that the verdict did not look at. The summary reads the whole range.
    """
    step_ns = timeframe_seconds(timeframe) * 1_000_000_000
    returns, blocks, times, fills = [], [], [], []
    for e in evaluation:
        policy = e.results["policy"]
        step = pd.Timedelta(step_ns, "ns")
        stamps = pd.date_range(e.first_bar, periods=len(policy.log_returns), freq=step).as_unit("ns")  # asi8 in ns
        returns.append(policy.log_returns)
        blocks.append(stamps.asi8 // (step_ns * block_bars))
        times.append(stamps.asi8)
        fills.append(policy.fills if len(policy.fills) == len(policy.log_returns) else np.zeros(len(stamps), int))
    pooled = np.concatenate(returns) if returns else np.empty(0)
    block = np.concatenate(blocks) if blocks else np.empty(0, np.int64)
    time_ns = np.concatenate(times) if times else np.empty(0, np.int64)
    fill = np.concatenate(fills) if fills else np.empty(0, np.int64)
    cut = _confirmation_cut(time_ns, confirm_share)
    early = time_ns < cut
    rng = np.random.default_rng(0)
    interval = block_bootstrap(pooled[early], None, block[early], rng=rng)
    edge = {
        **edge_of(interval, int(fill[early].sum()) // trades_per_call, int(early.sum())),
        "metric": "log_return_per_bar_vs_flat",
        "source": "held_out",
        "span": _ns_span(time_ns[early]),
    }
    late = ~early
    confirm_edge = edge_of(
        block_bootstrap(pooled[late], None, block[late], rng=rng), int(fill[late].sum()) // trades_per_call, 0
    )
    span = _ns_span(time_ns[late])
    confirmation = Confirmation.of_edge(confirm_edge if late.any() else None, span["first"], span["last"])
    totals = {name: [e.results[name].total_return for e in evaluation] for name in STRATEGIES}
    trades = sum(e.results["policy"].trades for e in evaluation)
    summary = {
        "symbols": len(evaluation),
        "mean_total_return": {name: float(np.mean(values)) if values else None for name, values in totals.items()},
        "beats_flat": sum(p > 0 for p in totals["policy"]),
        "beats_buy_and_hold": sum(p > b for p, b in zip(totals["policy"], totals["buy_and_hold"], strict=True)),
        "trades_per_symbol": trades / max(len(evaluation), 1),
        "bars_per_symbol": len(pooled) / max(len(evaluation), 1),
    }
    return edge, summary, confirmation


def _confirmation_cut(time_ns: np.ndarray, share: float) -> int:
    """The first instant of the confirmation block: the newest `share` of the calendar span (past the end when
    `share` is 0: no block)."""
    if len(time_ns) == 0 or share <= 0:
        return int(time_ns.max()) + 1 if len(time_ns) else 0
    start, end = int(time_ns.min()), int(time_ns.max()) + 1
    return int(end - (end - start) * share)


def _ns_span(time_ns: np.ndarray) -> dict[str, Any]:
    if len(time_ns) == 0:
        return {"first": None, "last": None, "bars": 0}
    first, last = (iso_z(pd.Timestamp(int(t), tz="UTC")) for t in (time_ns.min(), time_ns.max()))
    return {"first": first, "last": last, "bars": int(len(time_ns))}
