"""The skill gate, measured both ways: how often it lets chance through, and whether it lets a real edge through.

- **Negative control.** Retrain a small universe K times on markets with no edge (martingales with the demo's
  volatility, a new seed each time) and count the retrains in which ANY pair-model would serve trade plans (its
  stored `metadata["edge"]["verdict"]` is `positive`). That share is the gate's false-positive rate per universe
  retrain: a user retrains a universe, not one pair, so this is the rate they meet.
- **Positive control.** Retrain universes in which some pairs carry a planted, learnable edge
  (`signals.data.synthetic.PlantedEdge`, of documented size) and the rest are noise: the detection rate is the share
  of planted pair-models whose stored verdict is `positive`.

Each retrain goes through `pipelines.train_cnn_lstm_models`, the pipeline `signals train` runs, so whatever rule
decides the verdict before saving (today the per-pair interval; the universe-wide rule once it lands) is the rule
measured here. Candles go to a scratch candle store and models to a scratch BentoML model store, both in a
temporary directory removed afterwards: the user's stores are never read or written.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from signals.core.errors import InvalidInput
from signals.core.settings import DEFAULT_UNIVERSE
from signals.core.timeframes import parse_timeframe
from signals.data.store import CandleStore
from signals.data.synthetic import SYNTHETIC_EXCHANGE, PlantedEdge, synthetic_universe
from signals.models.skill import wilson_interval
from signals.pipelines import train_cnn_lstm_models

logger = logging.getLogger(__name__)

# The target: at most 1 universe retrain in 20 serves any plan by chance.
TARGET_FALSE_POSITIVE_RATE: Final = 0.05
POSITIVE_SEED_OFFSET: Final = 10_000  # the positive control's markets never share a seed with the negative's


@dataclass(frozen=True)
class ControlPlan:
    """What one `gate-check` runs: how many retrains of how big a universe, on how much data, how trained."""

    retrains: int = 20
    positive_retrains: int = 3
    pairs: int = 6
    planted_pairs: int = 3  # of the positive control's `pairs`; the rest are noise
    timeframe: str = "1h"
    days: int = 240
    epochs: int = 3
    folds: int = 4
    seed: int = 0
    tiny_network: bool = False
    # The universe rule's least m (`models.evidence`): None = the pair-models this retrain tests (pairs x 1
    # timeframe), the least correction an honest rule makes; the served default (universe x timeframes) corrects
    # harder, so a false-positive rate measured with None bounds the served one from above.
    rule_universe: int | None = None
    edge: PlantedEdge = field(default_factory=PlantedEdge)

    def __post_init__(self) -> None:
        if self.retrains < 1 or self.positive_retrains < 0:
            raise InvalidInput(
                f"need retrains >= 1 and positive retrains >= 0, got {self.retrains}, {self.positive_retrains}"
            )
        if not 1 <= self.pairs <= len(DEFAULT_UNIVERSE):
            raise InvalidInput(f"pairs must be 1..{len(DEFAULT_UNIVERSE)}, got {self.pairs}")
        if not 1 <= self.planted_pairs <= self.pairs:
            raise InvalidInput(f"planted pairs must be 1..{self.pairs} (the universe), got {self.planted_pairs}")
        if self.rule_universe is not None and self.rule_universe < 1:
            raise InvalidInput(f"the rule's universe must be at least 1 pair-model, got {self.rule_universe}")
        if self.days < 1 or self.epochs < 1:
            raise InvalidInput(f"need days >= 1 and epochs >= 1, got {self.days}, {self.epochs}")
        object.__setattr__(self, "timeframe", parse_timeframe(self.timeframe))

    @property
    def symbols(self) -> list[str]:
        return list(DEFAULT_UNIVERSE[: self.pairs])

    @property
    def planted_symbols(self) -> list[str]:
        return self.symbols[: self.planted_pairs]


QUICK_PLAN: Final = ControlPlan(
    retrains=2, positive_retrains=1, pairs=2, planted_pairs=1, days=40, epochs=1, folds=2, tiny_network=True
)


@dataclass(frozen=True)
class Retrain:
    """One universe retrain: each pair's stored verdict, and which pairs were planted."""

    seed: int
    verdicts: dict[str, str]
    planted: list[str]
    seconds: float
    edges: dict[str, dict[str, Any]] = field(default_factory=dict)  # each pair's stored edge (value, interval, n)

    @property
    def serving(self) -> list[str]:
        """The pairs whose model would serve trade plans."""
        return [symbol for symbol, verdict in self.verdicts.items() if verdict == "positive"]


@contextmanager
def scratch_model_store(root: Path) -> Iterator[Path]:
    """Point BentoML's model store at `root` for the block, then back (BentoML caches its store once per process,
    so setting BENTOML_HOME afterwards would not do; its container's provider can be patched and restored)."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    root.mkdir(parents=True, exist_ok=True)
    with BentoMLContainer.model_store.patch(ModelStore(str(root))):
        yield root


def retrain_universe(plan: ControlPlan, seed: int, planted: list[str], workdir: Path) -> Retrain:
    """Generate one universe (the `planted` pairs with the plan's edge, the others martingales), train it through
    the pipeline into a scratch model store, and read back each pair's stored verdict."""
    from signals.models.cnn_lstm.network import CnnLstmConfig
    from signals.models.cnn_lstm.training import TrainConfig

    started = time.perf_counter()
    root = workdir / f"retrain-{seed}"
    store = CandleStore(root / "candles")
    frames = synthetic_universe(
        plan.symbols,
        [plan.timeframe],
        plan.days,
        seed,
        base_timeframe=plan.timeframe,
        planted={symbol: plan.edge for symbol in planted},
        drift=False,
    )
    for (symbol, timeframe), candles in frames.items():
        store.replace(SYNTHETIC_EXCHANGE, symbol, timeframe, candles)
    net = CnnLstmConfig(conv_channels=(8,), lstm_hidden=8, head_hidden=8) if plan.tiny_network else None
    config = TrainConfig(epochs=plan.epochs, patience=plan.epochs, folds=plan.folds, seed=seed)
    with scratch_model_store(root / "models"):
        trained = train_cnn_lstm_models(
            store,
            SYNTHETIC_EXCHANGE,
            plan.symbols,
            plan.timeframe,
            config,
            net,
            universe=plan.rule_universe or len(plan.symbols),
        )
    edges = {
        stored.labels.get("symbol", stored.name): dict(stored.card.stored_edge or {})
        for group in trained
        for stored in group.stored
    }
    verdicts = {symbol: str(edge.get("verdict")) for symbol, edge in edges.items()}
    return Retrain(seed, verdicts, list(planted), time.perf_counter() - started, edges)


def run_controls(plan: ControlPlan, on_retrain: Callable[[str, Retrain], None] | None = None) -> dict[str, Any]:
    """Both controls (see the module doc); the report `signals gate-check` prints."""
    from signals.models.device import configure_torch

    configure_torch()  # one torch thread: on a shared 2-core box two threads fight a neighbour
    started = time.perf_counter()
    negative: list[Retrain] = []
    positive: list[Retrain] = []
    with tempfile.TemporaryDirectory(prefix="signals-gate-check-") as scratch:
        workdir = Path(scratch)
        for k in range(plan.retrains):
            negative.append(retrain_universe(plan, plan.seed + k, [], workdir))
            logger.info("negative control, seed %d: %s", negative[-1].seed, negative[-1].verdicts)
            if on_retrain is not None:
                on_retrain("negative", negative[-1])
        for k in range(plan.positive_retrains):
            seed = plan.seed + POSITIVE_SEED_OFFSET + k
            positive.append(retrain_universe(plan, seed, plan.planted_symbols, workdir))
            logger.info("positive control, seed %d: %s", seed, positive[-1].verdicts)
            if on_retrain is not None:
                on_retrain("positive", positive[-1])
    return {
        "negative": negative_report(negative),
        "positive": positive_report(positive),
        "target": {
            "max_false_positive_rate": TARGET_FALSE_POSITIVE_RATE,
            "rule": "at most 1 universe retrain in 20 serves any plan by chance; planted edges pass",
        },
        "plan": {
            **asdict(plan),
            "symbols": plan.symbols,
            "planted_symbols": plan.planted_symbols,
            "rule_m": plan.rule_universe or len(plan.symbols),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def negative_report(retrains: list[Retrain]) -> dict[str, Any]:
    """The false-positive rate per universe retrain (a retrain counts when any of its pair-models would serve)."""
    serving = sum(bool(r.serving) for r in retrains)
    models = sum(len(r.verdicts) for r in retrains)
    positives = sum(len(r.serving) for r in retrains)
    return {
        "retrains": len(retrains),
        "retrains_serving": serving,
        "false_positive_rate": wilson_interval(serving, len(retrains)).as_dict(),
        "models": models,
        "positive_models": positives,
        "per_model_rate": wilson_interval(positives, models).as_dict(),
        "verdicts": _tally(retrains, planted=None),
        "runs": [_run_row(r) for r in retrains],
    }


def positive_report(retrains: list[Retrain]) -> dict[str, Any]:
    """The detection rate: the share of planted pair-models that pass (and, beside it, the noise pairs that did)."""
    planted = [(r, s) for r in retrains for s in r.planted if s in r.verdicts]
    detected = sum(r.verdicts[s] == "positive" for r, s in planted)
    noise = [(r, s) for r in retrains for s in r.verdicts if s not in r.planted]
    noise_passed = sum(r.verdicts[s] == "positive" for r, s in noise)
    return {
        "retrains": len(retrains),
        "planted_models": len(planted),
        "detected": detected,
        "detection_rate": wilson_interval(detected, len(planted)).as_dict(),
        "noise_models": len(noise),
        "noise_positive": noise_passed,
        "verdicts": {"planted": _tally(retrains, planted=True), "noise": _tally(retrains, planted=False)},
        "runs": [_run_row(r) for r in retrains],
    }


def _tally(retrains: list[Retrain], planted: bool | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in retrains:
        for symbol, verdict in r.verdicts.items():
            if planted is None or (symbol in r.planted) == planted:
                counts[verdict] = counts.get(verdict, 0) + 1
    return dict(sorted(counts.items()))


def _run_row(retrain: Retrain) -> dict[str, Any]:
    return {
        "seed": retrain.seed,
        "serving": retrain.serving,
        "planted": retrain.planted,
        "verdicts": retrain.verdicts,
        "edges": {
            symbol: {key: edge.get(key) for key in ("value", "ci_low", "ci_high", "n")}
            for symbol, edge in retrain.edges.items()
        },
        "seconds": round(retrain.seconds, 1),
    }
