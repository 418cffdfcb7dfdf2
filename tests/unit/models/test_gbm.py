"""The gradient-boosted family (`models.gbm`) on a tiny seeded universe: the recipe's folds and confirmation block,
calibrated probabilities, a deterministic fit, and the store round trip with its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signals.core.errors import InvalidInput, ModelIntegrityError
from signals.features.tabular import tabular_names
from signals.models.cnn_lstm.training import TrainConfig
from signals.models.evidence import Candidate, apply_rule
from signals.models.gbm.artifact import MODEL_FILE, load_gbm
from signals.models.gbm.family import GBM
from signals.models.gbm.training import GbmParams, GbmTrainingResult
from tests.support.factories import random_walk_candles
from tests.support.world import environment

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
CONFIG = TrainConfig(horizon=4, folds=2, test_share=0.4, seed=3)
PARAMS = GbmParams(max_rounds=25, early_stopping=5, min_child_samples=20, num_leaves=7)


def resample(candles: pd.DataFrame, rule: str) -> pd.DataFrame:
    frame = candles.set_index("timestamp").resample(rule, label="left", closed="left")
    out = frame.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    return out.dropna().reset_index()


@pytest.fixture(scope="module")
def market() -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, pd.DataFrame]]]:
    candles = {s: random_walk_candles(800, timeframe="1h", seed=10 + i) for i, s in enumerate(SYMBOLS)}
    higher = {
        "4h": {s: resample(c, "4h") for s, c in candles.items()},
        "1d": {s: resample(c, "1D") for s, c in candles.items()},
    }
    return candles, higher


@pytest.fixture(scope="module")
def trained(market: tuple) -> GbmTrainingResult:
    candles, higher = market
    return GBM.train(candles, "1h", higher, CONFIG, PARAMS)


def test_it_trains_by_the_cnn_lstm_recipe(trained: GbmTrainingResult) -> None:
    assert trained.feature_names == tabular_names(context=True) == GBM.feature_names
    assert [f["fold"] for f in trained.folds] == [1, 2]
    confirmation_start = trained.confirmation["span"]["start"]
    for fold in trained.folds:
        assert fold["train"]["last"] < fold["test"]["first"] <= fold["test"]["last"] < confirmation_start
    assert trained.data_range["val"]["last"] < confirmation_start
    assert trained.walk_forward["pooled"]["n"] > 0 and trained.confirmation["pooled"]["n"] > 0
    assert abs(sum(trained.importance.values()) - 1.0) < 1e-9
    edges = apply_rule(
        {s: Candidate(trained.pair_edge(s), trained.pooled_verdict, trained.pair_confirmation(s)) for s in SYMBOLS}, 136
    )
    assert all(edge["verdict"] != "positive" for edge in edges.values())  # random walks carry no edge


def test_probabilities_are_calibrated_rows_that_sum_to_one(trained: GbmTrainingResult, market: tuple) -> None:
    candles, higher = market
    rows = np.stack([GBM.features(s, "1h", candles, {tf: higher[tf][s] for tf in higher}) for s in SYMBOLS])
    probabilities = trained.fit.predict_proba(rows)
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert 0.05 <= trained.fit.temperature <= 20.0


def test_a_fit_is_deterministic_given_its_seed(trained: GbmTrainingResult, market: tuple) -> None:
    candles, higher = market
    again = GBM.train(candles, "1h", higher, CONFIG, PARAMS)
    assert again.fit.booster.model_to_string() == trained.fit.booster.model_to_string()
    assert again.fit.temperature == trained.fit.temperature
    assert again.walk_forward["pooled"]["log_loss"] == trained.walk_forward["pooled"]["log_loss"]


def test_save_and_verified_load_give_the_same_probabilities(trained: GbmTrainingResult, market: tuple) -> None:
    candles, higher = market
    stored = GBM.save(trained, exchange="synthetic")
    assert [s.name for s in stored] == ["gbm-btc-usdt-1h", "gbm-eth-usdt-1h", "gbm-sol-usdt-1h"]
    assert set(stored[0].metadata["sha256"]) == {"model.txt", "calibration.json", "features.json"}
    assert "lightgbm" in stored[0].metadata["library_versions"]
    model = GBM.load_verified(stored[2].tag)
    rows = np.stack([GBM.features("SOL/USDT", "1h", candles, {tf: higher[tf]["SOL/USDT"] for tf in higher})] * 2)
    batch = GBM.predict_proba(model, rows)
    assert batch.dtype == np.float32 and batch.shape == (2, 3)
    np.testing.assert_allclose(batch[0], trained.fit.predict_proba(rows[:1])[0], atol=1e-6)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(InvalidInput, match=r"shape \(n, 45\)"):
        model.predict_proba(rows[:, :10])


def test_a_tampered_artifact_is_refused(trained: GbmTrainingResult) -> None:
    (stored, *_) = GBM.save(trained, exchange="synthetic")
    path = Path(stored.path) / MODEL_FILE
    path.write_text(path.read_text().replace("learning_rate", "learning_rate ", 1))
    with pytest.raises(ModelIntegrityError, match="model.txt.*fails its SHA-256"):
        load_gbm(stored.tag)


def test_a_signed_gbm_loads_and_an_edited_calibration_is_refused(trained: GbmTrainingResult) -> None:
    with environment({"SIGNALS_MODEL_SIGNING_KEY": "a-gbm-test-key"}):
        (stored, *_) = GBM.save(trained, exchange="synthetic")
        assert (Path(stored.path) / "signature.json").is_file()
        GBM.load_verified(stored.tag)
        path = Path(stored.path) / "calibration.json"
        path.write_text(path.read_text().replace('"temperature"', '"temperature" '))
        with pytest.raises(ModelIntegrityError, match="calibration.json"):
            GBM.load_verified(stored.tag)


def test_a_model_of_other_features_is_refused(trained: GbmTrainingResult) -> None:
    """A features.json that names other columns (re-hashed, as a hand-edited store entry would be) is refused by
    the feature contract, not only by its hash."""
    from signals.models.registry import SHA256_KEY, sha256_of

    (stored, *_) = GBM.save(trained, exchange="synthetic")
    path = Path(stored.path) / "features.json"
    features = json.loads(path.read_text())
    features["feature_names"] = features["feature_names"][::-1]
    path.write_text(json.dumps(features))
    import bentoml

    model = bentoml.models.get(stored.tag)
    model.info.metadata[SHA256_KEY]["features.json"] = sha256_of(path)
    model.flush()
    with pytest.raises(ModelIntegrityError, match="features.json.*lists other features"):
        load_gbm(stored.tag)
