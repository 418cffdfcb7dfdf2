"""Gradient-boosted models in the BentoML model store: save a `GbmTrainingResult`, load a verified predictor.

One store entry per (symbol, timeframe) (`gbm-<base>-<quote>-<tf>`), also when the booster was trained on many pairs
(pooled), as for the CNN-LSTM: each entry holds the booster, its calibration, the pair's walk-forward scores and
edge, and the pooled summary. No pickle: `model.txt` is LightGBM's own text format (`model_to_string`),
`calibration.json` the temperature and threshold, `features.json` the ordered feature names and their hash. Loading
goes through `models.registry.load_model` (SHA-256 of every file, and the signature when a key is set), then checks
that the model reads the features this code computes; anything else is a `ModelIntegrityError` naming the model,
the file or field, and the difference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import lightgbm as lgb
import numpy as np

from signals.core.errors import InvalidInput, ModelIntegrityError
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import parse_timeframe
from signals.core.vocab import CLASS_NAMES
from signals.features.tabular import names_hash, tabular_names
from signals.models.registry import StoredModel, StoredPredictor, list_models, load_model, save_model

if TYPE_CHECKING:  # training is not on the serving path: only its result type is named here
    from signals.models.gbm.training import GbmTrainingResult

FAMILY: Final = "gbm"
MODEL_FILE: Final = "model.txt"
CALIBRATION_FILE: Final = "calibration.json"
FEATURES_FILE: Final = "features.json"


def model_name(symbol: str, timeframe: str) -> str:
    """`gbm-btc-usdt-1h`: the store name of one (symbol, timeframe) model."""
    base, quote = normalize_symbol(symbol).split("/")
    return f"{FAMILY}-{base}-{quote}-{parse_timeframe(timeframe)}".lower()


def _write_text(text: str) -> Any:
    def write(path: Path) -> None:
        path.write_text(text)

    return write


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def _compact(scores: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in scores.items() if key not in ("reliability", "coverage", "span")}


def save_gbm_models(
    result: GbmTrainingResult, *, exchange: str, edges: Mapping[str, dict[str, Any]] | None = None
) -> list[StoredModel]:
    """Import a trained timeframe as one new version per pair. `edges`: each pair's final edge from the universe
    rule (`models.evidence.apply_rule` over the retrain); without it the walk-forward edge is stored as it is (no
    `rule` block, which the gate reads as "stored before the rule": never positive)."""
    fitted, config = result.fit, result.train_config
    text = fitted.booster.model_to_string(num_iteration=fitted.best_iteration)
    calibration = {"method": "temperature", "temperature": fitted.temperature, "threshold": fitted.threshold}
    names = list(result.feature_names)
    features = {
        "feature_names": names,
        "feature_hash": names_hash(result.feature_names),
        "context": result.params.context,
    }
    stored = []
    for symbol in result.symbols:
        pair_scores = result.walk_forward.get("pairs", {}).get(symbol, {"n": 0})
        metadata: dict[str, Any] = {
            "family": FAMILY,
            "symbol": symbol,
            "timeframe": result.timeframe,
            "class_names": list(CLASS_NAMES),
            "feature_names": names,
            "feature_hash": features["feature_hash"],
            "context": result.params.context,
            "horizon": result.horizon,
            "stop_atr": config.stop_atr,
            "target_r": 1.0,
            "costs": {"fee": config.fee, "slippage": config.slippage, "round_trip": config.cost},
            "hyperparameters": result.params.model_dump(mode="json"),
            "training": {
                **config.model_dump(mode="json"),
                "horizon": result.horizon,
                "pooled_symbols": result.symbols,
                "best_iteration": fitted.best_iteration,
                "train_samples": fitted.train_samples,
                "val_samples": fitted.val_samples,
                "seconds": round(result.seconds, 2),
                "validation": fitted.validation,
                "folds": result.folds,
            },
            "data_source": {"exchange": exchange, "kind": "candle-store"},
            "data_range": result.data_range,
            "temperature": fitted.temperature,
            "threshold": fitted.threshold,
            "break_even_hit_rate": result.break_even.get(symbol),
            "edge": edges[symbol] if edges is not None else result.pair_edge(symbol),
            "health": result.health,
            "metrics": _compact(pair_scores),
            "walk_forward": {"pooled": _compact(result.walk_forward.get("pooled", {"n": 0}))},
            "confirmation": {
                "span": result.confirmation.get("span", {}),
                "pooled": _compact(result.confirmation.get("pooled", {"n": 0})),
                "pair": _compact(result.confirmation.get("pairs", {}).get(symbol, {"n": 0})),
            },
            "feature_importance_gain": result.importance,
        }
        stored.append(
            save_model(
                model_name(symbol, result.timeframe),
                labels={"family": FAMILY, "symbol": symbol, "timeframe": result.timeframe},
                files={
                    MODEL_FILE: _write_text(text),
                    CALIBRATION_FILE: _write_text(_json(calibration)),
                    FEATURES_FILE: _write_text(_json(features)),
                },
                metadata=metadata,
            )
        )
    return stored


@dataclass
class GbmPredictor(StoredPredictor):
    """A loaded, verified booster: raw scores -> temperature -> (n, 3) probabilities."""

    stored: StoredModel
    booster: lgb.Booster
    temperature: float
    threshold: float | None
    feature_names: tuple[str, ...]
    context: bool

    def predict_proba(self, features_batch: np.ndarray) -> np.ndarray:
        """Calibrated (n, 3) float32 probabilities in CLASS_NAMES order for (n, n_features) rows
        (`features.tabular.serving_row` stacked); float64 inside, rounded once."""
        rows = np.asarray(features_batch, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.feature_names):
            raise InvalidInput(f"features must have shape (n, {len(self.feature_names)}); got {tuple(rows.shape)}")
        if len(rows) == 0:
            return np.empty((0, len(CLASS_NAMES)), np.float32)
        raw = np.asarray(self.booster.predict(rows, raw_score=True), dtype=np.float64) / self.temperature
        raw -= raw.max(axis=1, keepdims=True)
        exp = np.exp(raw)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _read_json(stored: StoredModel, filename: str) -> dict[str, Any]:
    try:
        data = json.loads(stored.file(filename).read_text())
    except (OSError, ValueError) as error:
        raise ModelIntegrityError(f"model {stored.tag}: file {filename!r} is unreadable: {error}") from error
    if not isinstance(data, dict):
        raise ModelIntegrityError(f"model {stored.tag}: file {filename!r} does not hold a JSON object")
    return data


def load_gbm(tag: str) -> GbmPredictor:
    """Load `tag` (`name` = latest, or `name:version`): SHA-256 (and signature), feature contract, booster text."""
    stored = load_model(tag)
    if stored.labels.get("family") != FAMILY:
        raise ModelIntegrityError(f"model {stored.tag} is of family {stored.labels.get('family')!r}, not {FAMILY!r}")
    features = _read_json(stored, FEATURES_FILE)
    context = bool(features.get("context"))
    expected = list(tabular_names(context))
    if features.get("feature_names") != expected or features.get("feature_hash") != names_hash(tuple(expected)):
        raise ModelIntegrityError(
            f"model {stored.tag}: file {FEATURES_FILE!r} lists other features than the code computes "
            f"({len(features.get('feature_names') or [])} stored, {len(expected)} computed); re-train it"
        )
    calibration = _read_json(stored, CALIBRATION_FILE)
    temperature = _finite(calibration.get("temperature"))
    if temperature is None or temperature <= 0:
        raise ModelIntegrityError(f"model {stored.tag}: file {CALIBRATION_FILE!r} holds no positive temperature")
    try:
        booster = lgb.Booster(model_str=stored.file(MODEL_FILE).read_text())
    except (lgb.basic.LightGBMError, OSError, ValueError) as error:
        raise ModelIntegrityError(
            f"model {stored.tag}: file {MODEL_FILE!r} is not a LightGBM model: {error}"
        ) from error
    if booster.num_feature() != len(expected) or booster.num_model_per_iteration() != len(CLASS_NAMES):
        raise ModelIntegrityError(
            f"model {stored.tag}: file {MODEL_FILE!r} reads {booster.num_feature()} features into "
            f"{booster.num_model_per_iteration()} classes; expected {len(expected)} into {len(CLASS_NAMES)}"
        )
    threshold = _finite(calibration.get("threshold"))
    return GbmPredictor(stored, booster, temperature, threshold, tuple(expected), context)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def latest_gbm_tags() -> dict[tuple[str, str], str]:
    """(symbol, timeframe) -> tag of the newest stored GBM version."""
    out: dict[tuple[str, str], str] = {}
    for model in list_models(FAMILY):
        key = (model.info.labels.get("symbol", ""), model.info.labels.get("timeframe", ""))
        out.setdefault(key, str(model.tag))
    return out
