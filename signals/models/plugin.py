"""The public model-family seam: what a family installed as its own package implements, and how the server finds it.

A family is a Python object (`FamilyPlugin`) published under the entry-point group `signals.families`:

    [project.entry-points."signals.families"]
    demo-logreg = "signals_family_demo:family"

The server does the rest the same way for every family: the walk-forward recipe (purge, embargo, the held-back
confirmation block, calibration, abstention threshold) and the universe-wide rule (`models.recipe`, `pipelines`),
the model store with SHA-256 and signatures (`models.registry`), the catalog and the choice between families by
evidence (`serving.catalog`), a batching runner for every discovered family (`runners.families`), the gate, the
ledger and replay. The family only learns: `fit` on flat feature rows, `predict_proba` on a batch, `save` to files
and `load` from them (JSON or text: never pickle), and a `card` that describes it.

Discovery never fails the server: a family whose package fails to import, whose object lacks a method, whose name is
taken or malformed, or that declares a feature the registry (`features.registry`) does not know is skipped, logged
and named (`Discovery.skipped`, shown by `/models`). See docs/add-a-model-family.md.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np

from signals.core.errors import ModelIntegrityError
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import parse_timeframe
from signals.core.vocab import CLASS_NAMES
from signals.features.cnn import LOOKBACK
from signals.features.registry import UnknownFeature, check_inputs, inputs_hash, needs_context, select, window_width
from signals.models.registry import StoredModel, StoredPredictor, load_model

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "signals.families"
BUILT_IN: Final = ("cnn-lstm", "ppo")  # families inside the package: their names are taken
CALIBRATION_FILE: Final = "calibration.json"  # written by the server beside the family's own files
_NAME: Final = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_EPS: Final = 1e-12


# --- the interface ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingData:
    """What `fit` learns from: one row per sample, float64: the newest `lookback` bars of each declared per-bar
    feature (oldest bar first), then each declared window summary (`features.registry.select`); context columns
    may be NaN (unknown: too few pairs, no higher timeframe); labels 0 SHORT, 1 NO_TRADE, 2 LONG (the trade plan)."""

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    lookback: int


class Learner(Protocol):
    """A fitted model: batched inference."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, columns) float64 rows -> (n, 3) probabilities of (SHORT, NO_TRADE, LONG), rows summing to 1."""
        ...


@runtime_checkable
class FamilyPlugin(Protocol):
    """A model family as a package publishes it (an instance, or a class the server instantiates without
    arguments). The server calibrates `predict_proba` (a temperature on validation) and chooses the abstention
    threshold itself; `fit` may use `val` for early stopping, never the test blocks (it never sees them)."""

    name: str  # the store label and the `signals train <name>` argument: lower-case words joined by "-"
    features: Sequence[str]  # names from `signals.features.registry.KNOWN_FEATURES` (context ones included)
    lookback: int  # bars of each per-bar feature a row holds (1: the last closed candle only)

    def fit(self, train: TrainingData, val: TrainingData, *, seed: int) -> Learner:
        """Fit on `train` (pooled over the timeframe's pairs), deterministically for `seed`."""
        ...

    def save(self, learner: Learner) -> Mapping[str, bytes]:
        """The learner as files (name -> bytes; JSON or text, no pickle): the server hashes and signs them."""
        ...

    def load(self, files: Mapping[str, bytes]) -> Learner:
        """The learner from the files `save` wrote (already verified by the server); raise on anything malformed."""
        ...

    def card(self) -> Mapping[str, Any]:
        """JSON-ready facts for people: what it is, its hyper-parameters, its library versions."""
        ...


_METHODS: Final = ("fit", "save", "load", "card")


# --- discovery ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Skipped:
    """A family package the server found and did not take, and why (what to fix)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    plugins: dict[str, FamilyPlugin] = field(default_factory=dict)
    skipped: tuple[Skipped, ...] = ()

    @property
    def names(self) -> list[str]:
        return sorted(self.plugins)


def validate(plugin: Any, entry_name: str) -> FamilyPlugin:
    """`plugin` as a `FamilyPlugin`, or `ValueError` / `UnknownFeature` saying what is wrong."""
    name = getattr(plugin, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name {name!r} is not lower-case words joined by '-'")
    if name != entry_name:
        raise ValueError(f"the object's name {name!r} differs from its entry-point name {entry_name!r}")
    if name in BUILT_IN:
        raise ValueError(f"name {name!r} is a built-in family's")
    missing = [method for method in _METHODS if not callable(getattr(plugin, method, None))]
    if missing:
        raise ValueError(f"it has no {', '.join(missing)} method (see signals.models.plugin.FamilyPlugin)")
    features = getattr(plugin, "features", None)
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise UnknownFeature(f"features must be a sequence of names, got {features!r}")
    check_inputs(list(features), getattr(plugin, "lookback", None))  # type: ignore[arg-type]
    return plugin


@functools.cache
def discover() -> Discovery:
    """Every family published under `signals.families` in the installed packages' metadata, validated once per
    process (`rediscover` reads the metadata again)."""
    plugins: dict[str, FamilyPlugin] = {}
    skipped: list[Skipped] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            loaded = point.load()
            plugin = validate(loaded() if isinstance(loaded, type) else loaded, point.name)
            if plugin.name in plugins:
                raise ValueError(f"a family named {plugin.name!r} is already installed")
        except Exception as error:  # a broken package is skipped, named, and the others serve
            reason = f"{type(error).__name__}: {error}"
            logger.error("model family %r (%s) skipped: %s", point.name, point.value, reason)
            skipped.append(Skipped(point.name, reason))
            continue
        plugins[plugin.name] = plugin
        logger.info("model family %r from %s", plugin.name, point.value)
    return Discovery(plugins, tuple(skipped))


def rediscover() -> Discovery:
    """Read the installed packages' metadata again (after installing a family into a running process)."""
    importlib.invalidate_caches()
    discover.cache_clear()
    return discover()


# --- the stored artifact ------------------------------------------------------------------------------------------
def model_name(family: str, symbol: str, timeframe: str) -> str:
    """`<family>-btc-usdt-1h`: the store name of one (symbol, timeframe) model of a plugin family."""
    base, quote = normalize_symbol(symbol).split("/")
    return f"{family}-{base}-{quote}-{parse_timeframe(timeframe)}".lower()


def input_contract(plugin: FamilyPlugin) -> dict[str, Any]:
    """What a stored model records of its inputs; a load compares it with what the installed family declares."""
    names = list(plugin.features)
    return {"feature_names": names, "lookback": plugin.lookback, "feature_hash": inputs_hash(names, plugin.lookback)}


def check_contract(plugin: FamilyPlugin, stored: StoredModel) -> None:
    """Refuse a model stored for other inputs, or by another family, than the installed one declares."""
    if stored.labels.get("family") != plugin.name:
        raise ModelIntegrityError(
            f"model {stored.tag} is of family {stored.labels.get('family')!r}, not {plugin.name!r}"
        )
    for key, want in input_contract(plugin).items():
        if stored.metadata.get(key) != want:
            raise ModelIntegrityError(
                f"model {stored.tag}: metadata field {key!r} is {stored.metadata.get(key)!r}, but family "
                f"{plugin.name!r} reads {want!r}; re-train it"
            )


def calibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) in float64, rounded once to float32 (the same rounding as the CNN-LSTM's: a signal
    rebuilt alone gives the recorded probabilities however it was batched)."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class FamilyModel(StoredPredictor):
    """A loaded, verified model of a plugin family: window -> the family's rows -> learner -> temperature.

    Answers like a CNN-LSTM predictor (`predict_proba` of unscaled (n, LOOKBACK, N_FEATURES) windows, `tag`,
    `horizon`, `stop_atr`, `threshold`), so evaluation and serving treat both the same."""

    stored: StoredModel
    plugin: FamilyPlugin
    learner: Learner
    temperature: float
    threshold: float | None

    @property
    def universe(self) -> list[str]:
        """The pairs it was pooled over: the cross-section its context columns are computed in."""
        return self.stored.card.pooled_symbols

    def rows(self, windows: np.ndarray) -> np.ndarray:
        return select(windows, list(self.plugin.features), self.plugin.lookback)

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        """Calibrated (n, 3) float32 probabilities in CLASS_NAMES order."""
        if len(windows) == 0:
            return np.empty((0, len(CLASS_NAMES)), np.float32)
        raw = np.asarray(self.learner.predict_proba(self.rows(windows)), dtype=np.float64)
        if raw.shape != (len(windows), len(CLASS_NAMES)) or not np.isfinite(raw).all():
            raise ModelIntegrityError(
                f"model {self.tag}: predict_proba answered shape {raw.shape} or non-finite values"
            )
        return calibrated(raw, self.temperature)


def load_family_model(plugin: FamilyPlugin, tag: str) -> FamilyModel:
    """Load `tag` verified: SHA-256 of every file and the signature (`registry.load_model`), the input contract,
    the calibration, then the family's own `load` and one prediction; any failure is a `ModelIntegrityError`."""
    stored = load_model(tag)
    check_contract(plugin, stored)
    try:
        calibration = json.loads(stored.file(CALIBRATION_FILE).read_text())
        temperature = float(calibration["temperature"])
        threshold = calibration.get("threshold")
        names = [n for n in stored.card.sha256 if n != CALIBRATION_FILE]
        files = {n: Path(stored.file(n)).read_bytes() for n in names}
        learner = plugin.load(files)
        model = FamilyModel(stored, plugin, learner, temperature, None if threshold is None else float(threshold))
        model.predict_proba(
            np.zeros((1, LOOKBACK, window_width(list(plugin.features))), np.float32)
        )  # not on a request
    except ModelIntegrityError:
        raise
    except Exception as error:  # whatever the family's loader raises: the model is refused, named, the rest serve
        raise ModelIntegrityError(
            f"model {stored.tag} of family {plugin.name!r} fails verification: {type(error).__name__}: {error}"
        ) from error
    if not np.isfinite(temperature) or temperature <= 0:
        raise ModelIntegrityError(f"model {stored.tag}: file {CALIBRATION_FILE!r} holds no positive temperature")
    return model


def reads_context(plugin: FamilyPlugin) -> bool:
    """Whether the family's windows carry the market context (built over the universe it was trained on)."""
    return needs_context(list(plugin.features))
