"""CNN-LSTM models in the BentoML model store: import a `TrainingResult`, load a verified predictor.

One store entry per (symbol, timeframe), also when the network was trained on many pairs (pooled): each entry
holds the network, its scaler, the pair's own calibration (temperature and abstention threshold), the pair's
walk-forward scores and edge verdict, and the pooled summary of its timeframe.

Files: `weights.safetensors` (state dict, no pickle), `scaler.json` (mean, std, feature names),
`calibration.json` (temperature, threshold). Loading goes through `models.registry.load_model` (SHA-256 of every
file), then checks that the model was built for the features this code computes; anything else is refused with
a `ModelIntegrityError` naming the model, the file or field, and the difference.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

import signals.features.cnn as cnn_features
from signals.core.errors import InvalidInput, ModelIntegrityError
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import parse_timeframe
from signals.core.vocab import CLASS_NAMES
from signals.models.registry import StoredModel, StoredPredictor, list_models, load_model, save_model
from signals.models.scaler import Scaler

if TYPE_CHECKING:  # training is not on the serving path: only its result type is named here
    import torch

    from signals.models.cnn_lstm.network import CnnLstm
    from signals.models.cnn_lstm.training import TrainingResult

# torch, safetensors and the network are imported where a model is saved or loaded: the API process and the
# service graph's declarations read names and contracts from this module and never load torch (seconds at start).

logger = logging.getLogger(__name__)

FAMILY: Final = "cnn-lstm"
WEIGHTS_FILE: Final = "weights.safetensors"
SCALER_FILE: Final = "scaler.json"
CALIBRATION_FILE: Final = "calibration.json"
PREDICT_BATCH: Final = 4096


def model_name(symbol: str, timeframe: str) -> str:
    """`cnn-lstm-btc-usdt-1h`: the store name of one (symbol, timeframe) model."""
    base, quote = normalize_symbol(symbol).split("/")
    return f"{FAMILY}-{base}-{quote}-{parse_timeframe(timeframe)}".lower()


def _write_json(data: dict[str, Any]) -> Any:
    def write(path: Path) -> None:
        path.write_text(json.dumps(data, indent=2, sort_keys=True))

    return write


def save_cnn_lstm_models(
    result: TrainingResult, *, exchange: str, edges: Mapping[str, dict[str, Any]] | None = None
) -> list[StoredModel]:
    """Import a trained timeframe as one new version per pair (`cnn-lstm-<base>-<quote>-<tf>`).

    `edges`: each pair's final edge from the universe-wide rule (`pipelines.train_cnn_lstm_models` applies it over
    the whole retrain). Without it the walk-forward edge is stored as it is, with no `rule` block, which the
    catalog reads as "stored before the universe rule" (never positive).
    """
    from safetensors.torch import save_file

    state = {key: value.detach().cpu().contiguous() for key, value in result.network.state_dict().items()}

    def write_weights(path: Path) -> None:
        save_file(state, str(path))

    config = result.train_config
    pooled_summary = _compact(result.walk_forward.get("pooled", {}))
    stored = []
    for symbol in result.symbols:
        fitted = result.fit
        pair_scores = result.walk_forward.get("pairs", {}).get(symbol, {"n": 0})
        calibration = {"temperature": fitted.temperature_of(symbol), "threshold": fitted.threshold}
        metadata: dict[str, Any] = {
            "family": FAMILY,
            "symbol": symbol,
            "timeframe": result.timeframe,
            "class_names": list(CLASS_NAMES),
            "feature_names": list(cnn_features.FEATURE_NAMES),
            "feature_hash": cnn_features.FEATURE_HASH,
            "lookback": cnn_features.LOOKBACK,
            "horizon": result.horizon,
            "stop_atr": config.stop_atr,
            "target_r": 1.0,
            "costs": {"fee": config.fee, "slippage": config.slippage, "round_trip": config.cost},
            "hyperparameters": result.net_config.model_dump(mode="json"),
            "training": {
                **config.model_dump(mode="json"),
                "horizon": result.horizon,
                "pooled_symbols": result.symbols,
                "epochs_run": len(fitted.history),
                "best_epoch": fitted.best_epoch,
                "train_samples": fitted.train_samples,
                "val_samples": fitted.val_samples,
                "seconds": round(result.seconds, 2),
                "n_parameters": result.n_parameters,
                "validation": fitted.validation,
                "search": result.search,
            },
            "data_source": {"exchange": exchange, "kind": "candle-store"},
            "data_range": result.data_range,
            **calibration,
            "break_even_hit_rate": result.break_even.get(symbol),
            "edge": edges[symbol] if edges is not None else result.pair_edge(symbol),
            "health": result.health,
            "metrics": _compact(pair_scores),
            "walk_forward": {"pooled": pooled_summary, "folds": result.walk_forward.get("folds", [])},
            "confirmation": {
                "span": result.confirmation.get("span", {}),
                "pooled": _compact(result.confirmation.get("pooled", {"n": 0})),
                "pair": _compact(result.confirmation.get("pairs", {}).get(symbol, {"n": 0})),
            },
        }
        stored.append(
            save_model(
                model_name(symbol, result.timeframe),
                labels={"family": FAMILY, "symbol": symbol, "timeframe": result.timeframe},
                files={
                    WEIGHTS_FILE: write_weights,
                    SCALER_FILE: _write_json(fitted.scaler.to_dict()),
                    CALIBRATION_FILE: _write_json(calibration),
                },
                metadata=metadata,
            )
        )
    return stored


def _compact(scores: dict[str, Any]) -> dict[str, Any]:
    """A score as the store keeps it: everything but the per-bin lists, which only the evaluation report needs."""
    return {key: value for key, value in scores.items() if key not in ("reliability", "coverage")}


@dataclass
class CnnLstmPredictor(StoredPredictor):
    """A loaded, verified CNN-LSTM: scaler -> network -> temperature, on one device."""

    stored: StoredModel
    network: CnnLstm
    scaler: Scaler
    temperature: float
    device: torch.device
    threshold: float | None = None

    def __post_init__(self) -> None:
        self.network.double()  # inference in float64: see `scale`

    @property
    def network_id(self) -> str:
        """The same id for every entry that holds the same network and scaler (the pairs of a pooled timeframe)."""
        hashes = self.stored.card.sha256
        return f"{hashes.get(WEIGHTS_FILE, self.tag)}:{hashes.get(SCALER_FILE, '')}"

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """Raw network logits (temperature 1, float64) for unscaled (n, lookback, n_features) windows."""
        cfg = self.network.config
        if windows.ndim != 3 or windows.shape[1:] != (cfg.lookback, cfg.n_features):
            raise InvalidInput(
                f"windows must have shape (n, {cfg.lookback}, {cfg.n_features}); got {tuple(windows.shape)}"
            )
        import torch

        scaled = scale(self.scaler, windows)
        out = []
        with torch.inference_mode():
            for start in range(0, len(scaled), PREDICT_BATCH):
                batch = torch.from_numpy(scaled[start : start + PREDICT_BATCH]).to(self.device)
                out.append(self.network(batch).cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, cfg.n_classes), np.float64)

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        """Calibrated (n, 3) float32 probabilities in CLASS_NAMES order (SHORT, NO_TRADE, LONG)."""
        return calibrated(self.logits(windows), np.full(len(windows), self.temperature))


def scale(scaler: Scaler, windows: np.ndarray) -> np.ndarray:
    """Scaled float64 network input. Serving computes in float64 and rounds the probabilities to float32 at the
    end: float32 arithmetic differs in its last bits with the batch size and the kernel (batched, stacked or one
    window alone), float64 differs ~1e-16, far below float32's rounding. So a signal rebuilt alone (`/replay`)
    gives the recorded float32 probabilities bit for bit, however it was batched when served."""
    return (np.asarray(windows, dtype=np.float64) - scaler.mean) / scaler.std


def calibrated(logits: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """softmax(logits / T) per row in float64, rounded once to float32 (see `scale`)."""
    scaled = np.asarray(logits, dtype=np.float64) / np.asarray(temperatures, dtype=np.float64)[:, None]
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def check_feature_contract(stored: StoredModel) -> None:
    """Refuse a model built for other features than this code computes (names, order, hash, lookback)."""
    card = stored.card
    checked = {
        "feature_hash": (card.feature_hash, cnn_features.FEATURE_HASH),
        "feature_names": (card.feature_names, list(cnn_features.FEATURE_NAMES)),
        "lookback": (card.lookback, cnn_features.LOOKBACK),
    }
    for key, (have, want) in checked.items():
        if have != want:
            raise ModelIntegrityError(
                f"model {stored.tag}: metadata field {key!r} is {_short(have)}, but the code computes "
                f"{_short(want)}; the model was trained on other features, re-train it"
            )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _read_json(stored: StoredModel, filename: str) -> dict[str, Any]:
    try:
        data = json.loads(stored.file(filename).read_text())
    except (OSError, ValueError) as error:
        raise ModelIntegrityError(f"model {stored.tag}: file {filename!r} is unreadable: {error}") from error
    if not isinstance(data, dict):
        raise ModelIntegrityError(f"model {stored.tag}: file {filename!r} does not hold a JSON object")
    return data


def load_cnn_lstm(tag: str, device: str | torch.device = "cpu") -> CnnLstmPredictor:
    """Load `tag` (`name` = latest, or `name:version`): SHA-256, feature contract, safetensors weights."""
    from safetensors.torch import load_file

    from signals.models.cnn_lstm.network import CnnLstm, CnnLstmConfig
    from signals.models.device import resolve_device

    stored = load_model(tag)
    if stored.labels.get("family") != FAMILY:
        raise ModelIntegrityError(f"model {stored.tag} is of family {stored.labels.get('family')!r}, not {FAMILY!r}")
    check_feature_contract(stored)
    scaler_data = _read_json(stored, SCALER_FILE)
    if list(scaler_data.get("feature_names", [])) != list(cnn_features.FEATURE_NAMES):
        raise ModelIntegrityError(
            f"model {stored.tag}: file {SCALER_FILE!r} lists features {scaler_data.get('feature_names')!r}, "
            f"but the code computes {list(cnn_features.FEATURE_NAMES)!r}; re-train it"
        )
    scaler = Scaler.from_dict(scaler_data)
    calibration = _read_json(stored, CALIBRATION_FILE)
    temperature = _number(calibration.get("temperature"))
    if temperature is None or temperature <= 0:
        raise ModelIntegrityError(f"model {stored.tag}: file {CALIBRATION_FILE!r} holds no positive temperature")
    threshold = _number(calibration.get("threshold"))
    target = resolve_device(device)
    try:
        # Models stored before the conv pooling existed ran every bar through the LSTM: pool 1.
        hyper = stored.card.hyper_parameters
        if hyper is None:
            raise KeyError("hyperparameters")
        config = CnnLstmConfig.model_validate({"pool": 1, **hyper})
    except (KeyError, TypeError, ValueError) as error:
        raise ModelIntegrityError(
            f"model {stored.tag}: metadata field 'hyperparameters' is malformed: {error}"
        ) from error
    network = CnnLstm(config)
    try:
        network.load_state_dict(load_file(str(stored.file(WEIGHTS_FILE))))
    except (RuntimeError, OSError) as error:
        raise ModelIntegrityError(
            f"model {stored.tag}: file {WEIGHTS_FILE!r} does not match the stored hyper-parameters: {error}"
        ) from error
    network.to(target).eval()
    return CnnLstmPredictor(stored, network, scaler, temperature, target, threshold)


def _number(value: Any) -> float | None:
    """A finite float, or None (absent, null, NaN, or not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def latest_cnn_lstm_tags() -> dict[tuple[str, str], str]:
    """(symbol, timeframe) -> tag of the newest stored CNN-LSTM version."""
    out: dict[tuple[str, str], str] = {}
    for model in list_models(FAMILY):  # newest first per name
        key = (model.info.labels.get("symbol", ""), model.info.labels.get("timeframe", ""))
        out.setdefault(key, str(model.tag))
    return out
