"""The gradient-boosted family (`models.gbm.plugin`) trained by the server's recipe (`models.recipe.train_family`,
what `signals train gbm` and `bench.family_compare` run) on a tiny seeded universe: the folds before the
confirmation block, calibrated probabilities, a deterministic fit, and the store round trip with its refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import bentoml
import numpy as np
import pandas as pd
import pytest

from signals.core.errors import ModelIntegrityError
from signals.models.cnn_lstm.dataset import Samples, build_samples
from signals.models.cnn_lstm.training import TrainConfig
from signals.models.evidence import apply_rule
from signals.models.gbm.plugin import MODEL_FILE, NOTE_FILE, Booster, GbmParams, GbmPlugin
from signals.models.plugin import FamilyPlugin, load_family_model
from signals.models.recipe import FamilyTrainingResult, predict, save_family_models, train_family
from signals.models.registry import SHA256_KEY, StoredModel, sha256_of
from signals.pipelines import cnn_lstm_candidates, rule_key
from tests.support.factories import random_walk_candles
from tests.support.world import environment

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
CONFIG = TrainConfig(horizon=4, folds=2, test_share=0.4, seed=3)
PLUGIN = cast(
    FamilyPlugin, GbmPlugin(params=GbmParams(max_rounds=25, early_stopping=5, min_child_samples=20, num_leaves=7))
)
Market = tuple[dict[str, pd.DataFrame], dict[str, dict[str, pd.DataFrame]]]


def resample(candles: pd.DataFrame, rule: str) -> pd.DataFrame:
    frame = candles.set_index("timestamp").resample(rule, label="left", closed="left")
    out = frame.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    return out.dropna().reset_index()


@pytest.fixture(scope="module")
def market() -> Market:
    candles = {s: random_walk_candles(800, timeframe="1h", seed=10 + i) for i, s in enumerate(SYMBOLS)}
    higher = {
        "4h": {s: resample(c, "4h") for s, c in candles.items()},
        "1d": {s: resample(c, "1D") for s, c in candles.items()},
    }
    return candles, higher


@pytest.fixture(scope="module")
def trained(market: Market) -> FamilyTrainingResult:
    candles, higher = market
    return train_family(PLUGIN, candles, "1h", CONFIG, higher=higher)


@pytest.fixture(scope="module")
def samples(market: Market) -> Samples:
    """The windows the recipe cut (the same universe, context and higher timeframes)."""
    candles, higher = market
    return build_samples(candles, "1h", CONFIG.horizon_for("1h"), CONFIG.stop_atr, context=True, higher=higher)


def save(trained: FamilyTrainingResult) -> list[StoredModel]:
    rule = apply_rule(cnn_lstm_candidates([trained]), 136)
    edges = {symbol: rule[rule_key(symbol, trained.timeframe)] for symbol in trained.symbols}
    return save_family_models(PLUGIN, trained, exchange="synthetic", edges=edges)


def test_it_trains_by_the_recipe_with_the_folds_before_the_confirmation_block(trained: FamilyTrainingResult) -> None:
    folds = trained.walk_forward["folds"]
    assert [f["fold"] for f in folds] == [1, 2] and not any("skipped" in f for f in folds)
    confirmation_start = trained.confirmation["span"]["start"]
    for fold in folds:
        assert fold["train"]["last"] < fold["test"]["first"] <= fold["test"]["last"] < confirmation_start
    assert trained.data_range["val"]["last"] < confirmation_start
    assert trained.walk_forward["pooled"]["n"] > 0 and trained.confirmation["pooled"]["n"] > 0
    edges = apply_rule(cnn_lstm_candidates([trained]), 136)
    assert all(edge["verdict"] != "positive" for edge in edges.values())  # random walks carry no edge


def test_probabilities_are_calibrated_rows_that_sum_to_one(trained: FamilyTrainingResult, samples: Samples) -> None:
    probabilities = predict(trained.fit, PLUGIN, samples, np.arange(len(samples)))
    assert probabilities.shape == (len(samples), 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert 0.05 <= trained.fit.temperature <= 20.0


def test_a_fit_is_deterministic_given_its_seed(trained: FamilyTrainingResult, market: Market) -> None:
    candles, higher = market
    again = train_family(PLUGIN, candles, "1h", CONFIG, higher=higher)
    first, second = cast(Booster, trained.fit.learner), cast(Booster, again.fit.learner)
    assert second.booster.model_to_string() == first.booster.model_to_string()
    assert again.fit.temperature == trained.fit.temperature
    assert again.walk_forward["pooled"]["log_loss"] == trained.walk_forward["pooled"]["log_loss"]


def test_save_and_verified_load_give_the_same_probabilities(trained: FamilyTrainingResult, samples: Samples) -> None:
    stored = save(trained)
    assert [s.name for s in stored] == ["gbm-btc-usdt-1h", "gbm-eth-usdt-1h", "gbm-sol-usdt-1h"]
    assert set(stored[0].metadata["sha256"]) == {MODEL_FILE, NOTE_FILE, "calibration.json"}
    assert "lightgbm" in stored[0].metadata["card"]["library"]
    model = load_family_model(PLUGIN, stored[2].tag)
    index = np.arange(len(samples) - 5, len(samples))
    np.testing.assert_array_equal(
        model.predict_proba(samples.windows(index)), predict(trained.fit, PLUGIN, samples, index)
    )


def test_a_tampered_artifact_is_refused(trained: FamilyTrainingResult) -> None:
    (stored, *_) = save(trained)
    path = Path(stored.path) / MODEL_FILE
    path.write_text(path.read_text().replace("learning_rate", "learning_rate ", 1))
    with pytest.raises(ModelIntegrityError, match=f"{MODEL_FILE}.*fails its SHA-256"):
        load_family_model(PLUGIN, stored.tag)


def test_a_signed_gbm_loads_and_an_edited_calibration_is_refused(trained: FamilyTrainingResult) -> None:
    with environment({"SIGNALS_MODEL_SIGNING_KEY": "a-gbm-test-key"}):
        (stored, *_) = save(trained)
        assert (Path(stored.path) / "signature.json").is_file()
        load_family_model(PLUGIN, stored.tag)
        path = Path(stored.path) / "calibration.json"
        path.write_text(path.read_text().replace('"temperature"', '"temperature" '))
        with pytest.raises(ModelIntegrityError, match="calibration.json"):
            load_family_model(PLUGIN, stored.tag)


def test_a_model_of_other_features_is_refused(trained: FamilyTrainingResult) -> None:
    """A note that names other columns (re-hashed, as a hand-edited store entry would be) is refused by the
    family's feature check, not only by its hash."""
    (stored, *_) = save(trained)
    path = Path(stored.path) / NOTE_FILE
    note = json.loads(path.read_text())
    note["features"] = note["features"][::-1]
    path.write_text(json.dumps(note))
    model = bentoml.models.get(stored.tag)
    cast(dict[str, str], model.info.metadata[SHA256_KEY])[NOTE_FILE] = sha256_of(path)
    model.flush()
    with pytest.raises(ModelIntegrityError, match=f"{NOTE_FILE} lists other features"):
        load_family_model(PLUGIN, stored.tag)
