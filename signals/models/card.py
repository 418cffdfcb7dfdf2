"""The model card: one typed view of the metadata stored beside a model, and the one place that reads its keys.

Both families store a JSON-like mapping (`bentoml.models.create(metadata=...)`); its keys grew with the project,
so a model stored by an older version may lack any of them. `ModelCard.from_metadata` reads each field once,
validates its type and gives the same answer a reader of the raw mapping gave for a missing or malformed field
(None, an empty mapping, or the family's default), so that callers never spell a key again. The edge the gate
may read goes through `evidence.edge_at_load`: a model stored before the rule stays non-positive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from signals.models.evidence import edge_at_load

DEFAULT_STOP_ATR = 1.5  # the stop of a CNN-LSTM stored before `stop_atr` was recorded
DEFAULT_CLIP_RANGE = 0.2  # SB3's default, for a PPO stored without its clip range


@dataclass(frozen=True)
class ModelCard:
    """What the server reads of a stored model's metadata, typed. `raw` keeps the mapping as stored (the CLI's
    `--json` listing and the integrity check publish or hash it whole)."""

    family: str | None
    symbol: str | None
    timeframe: str | None
    horizon: int | None  # bars to the label's end (CNN-LSTM)
    stop_atr: float  # the plan's stop in ATRs (CNN-LSTM)
    threshold: float | None  # the calibrated confidence an actionable call needs
    break_even_hit_rate: float | None
    round_trip_cost: float | None  # fee + slippage, both ways, as a fraction of price
    hyper_parameters: Mapping[str, Any] | None  # the network's (CNN-LSTM `hyperparameters`) or PPO's
    metrics: Mapping[str, Any]  # this pair's walk-forward (out-of-sample) scores
    pooled_walk_forward: Mapping[str, Any]  # every pair of the timeframe, pooled
    data_range: Mapping[str, Any]  # train / val / test spans (CNN-LSTM)
    training_range: Any  # per symbol (PPO); None when not stored
    held_out_range: Any  # per symbol (PPO); None when not stored
    evaluation: Mapping[str, Any]  # held-out results per symbol (PPO)
    held_out_summary: Mapping[str, Any]  # (PPO)
    health: list[Any]  # training health warnings (CNN-LSTM)
    pooled_symbols: list[str]  # the pairs it was trained on together: a context-reading family's cross-section
    stored_edge: Any  # the edge as stored (None for a model stored before the skill gate)
    sha256: Mapping[str, str]  # file name -> SHA-256
    # The input contract, as stored (not coerced: the load-time check compares exactly what was written)
    feature_names: Any
    feature_hash: Any
    lookback: Any  # (CNN-LSTM)
    obs_shape: Any  # (PPO)
    action_names: Any  # (PPO)
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ModelCard:
        costs = _mapping(metadata.get("costs"))
        horizon, stop_atr = _number(metadata.get("horizon")), _number(metadata.get("stop_atr"))
        hyper = metadata.get("hyperparameters", metadata.get("hyper_parameters"))
        return cls(
            family=_text(metadata.get("family")),
            symbol=_text(metadata.get("symbol")),
            timeframe=_text(metadata.get("timeframe")),
            horizon=None if horizon is None else int(horizon),
            stop_atr=DEFAULT_STOP_ATR if stop_atr is None else stop_atr,
            threshold=_number(metadata.get("threshold")),
            break_even_hit_rate=_number(metadata.get("break_even_hit_rate")),
            round_trip_cost=_number(costs.get("round_trip")),
            hyper_parameters=hyper if isinstance(hyper, Mapping) else None,
            metrics=_mapping(metadata.get("metrics")),
            pooled_walk_forward=_mapping(_mapping(metadata.get("walk_forward")).get("pooled")),
            data_range=_mapping(metadata.get("data_range")),
            training_range=metadata.get("training_range"),
            held_out_range=metadata.get("held_out_range"),
            evaluation=_mapping(metadata.get("evaluation")),
            held_out_summary=_mapping(metadata.get("held_out_summary")),
            health=list(metadata.get("health") or []),
            pooled_symbols=[str(s) for s in _mapping(metadata.get("training")).get("pooled_symbols") or []],
            stored_edge=metadata.get("edge"),
            sha256={str(k): str(v) for k, v in _mapping(metadata.get("sha256")).items()},
            feature_names=metadata.get("feature_names"),
            feature_hash=metadata.get("feature_hash"),
            lookback=metadata.get("lookback"),
            obs_shape=metadata.get("obs_shape"),
            action_names=metadata.get("action_names"),
            raw=metadata,
        )

    @property
    def edge(self) -> dict[str, Any]:
        """The stored edge as the gate may read it (`evidence.edge_at_load`): a model stored before the skill gate
        has no evidence, and one stored before the universe-wide rule is never positive."""
        return edge_at_load(self.stored_edge)

    @property
    def verdict(self) -> str | None:
        """The stored verdict as written at training time (before `edge_at_load`'s reading), for logs and reports."""
        found = self.stored_edge.get("verdict") if isinstance(self.stored_edge, Mapping) else None
        return None if found is None else str(found)

    @property
    def rule(self) -> dict[str, Any] | None:
        """The universe-wide rule's stored inputs, less the rule text (an answer carries the text once)."""
        rule = self.stored_edge.get("rule") if isinstance(self.stored_edge, Mapping) else None
        return {k: v for k, v in rule.items() if k != "text"} if isinstance(rule, Mapping) else None

    @property
    def accuracy(self) -> float | None:
        """The walk-forward (out-of-sample) accuracy on this pair."""
        found = self.metrics.get("accuracy")
        return _number(found.get("value") if isinstance(found, Mapping) else None)

    @property
    def accuracy_ci(self) -> list[float] | None:
        """The 95 % interval of `accuracy` ([low, high]); None for a model stored without one."""
        found = self.metrics.get("accuracy")
        if not isinstance(found, Mapping):
            return None
        low, high = _number(found.get("ci_low")), _number(found.get("ci_high"))
        return None if low is None or high is None else [low, high]

    @property
    def log_loss_skill(self) -> float | None:
        """The pair's walk-forward log-loss skill over the class frequencies (what `choose_family` compares)."""
        found = self.metrics.get("log_loss_skill")
        return _number(found.get("value") if isinstance(found, Mapping) else None)

    @property
    def baseline_accuracy(self) -> float | None:
        """The majority class's share of the same walk-forward test samples (the evaluation period's own)."""
        return _number(self.metrics.get("majority_share"))

    @property
    def clip_range(self) -> float:
        """PPO's clip range (the safe loader's replacement for the pickled schedule)."""
        return float((self.hyper_parameters or {}).get("clip_range", DEFAULT_CLIP_RANGE))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
