"""CNN-LSTM: network, purged split, train-only scaler, calibration, store round trip and refusals, CLI.

Tiny networks and a couple of epochs on a few hundred synthetic bars (and one small slice of real data),
so every test runs in about a second on one thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

import signals.features.cnn as cnn_features
from signals.cli import app
from signals.core.errors import ModelIntegrityError
from signals.data.store import CandleStore
from signals.features.cnn import LOOKBACK
from signals.models.cnn_lstm.artifact import (
    SCALER_FILE,
    load_cnn_lstm,
    model_name,
    save_cnn_lstm,
)
from signals.models.cnn_lstm.network import MAX_DEFAULT_PARAMETERS, CnnLstm, CnnLstmConfig, count_parameters
from signals.models.cnn_lstm.training import (
    Scaler,
    TrainConfig,
    TrainingResult,
    build_windows,
    chronological_split,
    fit_scaler,
    fit_temperature,
    softmax_with_temperature,
    train_cnn_lstm,
)
from signals.models.metrics import classification_metrics, expected_calibration_error
from signals.models.registry import load_model
from tests.support.factories import random_walk_candles
from tests.support.paths import shared_candles

torch.set_num_threads(1)

TINY = CnnLstmConfig(conv_channels=(8,), kernel_size=3, lstm_hidden=8, head_hidden=8, dropout=0.0)
QUICK = TrainConfig(epochs=2, batch_size=64, horizon=4, threshold_atr=0.5, seed=7)
WIDE = {"COLUMNS": "250", "TERM": "dumb"}


def _train(seed: int = 0, n: int = 700, config: TrainConfig = QUICK) -> TrainingResult:
    return train_cnn_lstm(random_walk_candles(n, seed=seed), config, TINY)


@pytest.fixture(scope="module")
def tiny_result() -> TrainingResult:
    return _train()


def test_default_network_is_small_and_maps_windows_to_three_logits() -> None:
    network = CnnLstm()
    assert count_parameters(network) < MAX_DEFAULT_PARAMETERS
    assert network(torch.zeros(4, LOOKBACK, cnn_features.N_FEATURES)).shape == (4, 3)


def test_split_is_chronological_disjoint_and_purged() -> None:
    horizon = 4
    data = build_windows(random_walk_candles(700, seed=1), horizon, 0.5)
    split = chronological_split(data.bars, horizon=horizon)
    parts = [split.train, split.val, split.test]
    assert all(len(part) for part in parts)
    assert not set(split.train) & set(split.val) and not set(split.val) & set(split.test)
    for before, after in zip(parts, parts[1:], strict=False):
        last_label_bar = data.bars[before[-1]] + horizon
        first_window_bar = data.bars[after[0]] - LOOKBACK + 1
        assert last_label_bar < first_window_bar  # no label crosses, no later window sees an earlier label
        assert data.bars[after[0]] - data.bars[before[-1]] > horizon
    assert abs(len(split.train) / len(data) - 0.70) < 0.01


def test_scaler_is_fitted_on_train_rows_only() -> None:
    data = build_windows(random_walk_candles(700, seed=2), 4, 0.5)
    split = chronological_split(data.bars, horizon=4)
    clean = fit_scaler(data, split)
    first_later_row = int(data.bars[split.val[0]]) - LOOKBACK + 1
    shifted_features = data.features.copy()
    shifted_features[first_later_row:] += 1e6
    shifted = fit_scaler(
        type(data)(**{**data.__dict__, "features": shifted_features}),  # same windows, poisoned later rows
        split,
    )
    # Equal to rounding (the copy changes memory order, hence summation order); a leak would move them by ~1e5.
    np.testing.assert_allclose(shifted.mean, clean.mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(shifted.std, clean.std, rtol=1e-12, atol=1e-15)
    assert np.all(np.abs(clean.mean) < 1e3)
    assert Scaler.from_dict(json.loads(json.dumps(clean.to_dict()))).feature_names == cnn_features.FEATURE_NAMES


def test_temperature_scaling_lowers_ece_of_an_overconfident_classifier() -> None:
    rng = np.random.default_rng(0)
    true_p = rng.dirichlet([1.0, 1.0, 1.0], size=4000)
    labels = np.array([rng.choice(3, p=p) for p in true_p])
    logits = 4.0 * np.log(true_p)  # ranks right, far too sure
    fit, held = slice(0, 2000), slice(2000, None)
    temperature = fit_temperature(logits[fit], labels[fit])
    before = expected_calibration_error(labels[held], softmax_with_temperature(logits[held], 1.0))
    after = expected_calibration_error(labels[held], softmax_with_temperature(logits[held], temperature))
    assert 3.0 < temperature < 5.0
    assert after < before / 3


def test_metrics_report_baseline_and_own_majority() -> None:
    labels = np.array([1, 1, 1, 2, 0, 2])
    proba = np.eye(3)[[1, 1, 0, 2, 0, 0]] * 0.9 + 0.1 / 3
    metrics = classification_metrics(labels, proba, baseline_class=2)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["baseline_accuracy"] == pytest.approx(2 / 6)  # the train majority (LONG) applied
    assert metrics["own_majority_share"] == pytest.approx(3 / 6)
    assert metrics["confusion_matrix"] == [[1, 0, 0], [1, 2, 0], [1, 0, 1]]
    assert expected_calibration_error(labels, proba) == pytest.approx(abs(4 / 6 - proba.max(axis=1).mean()))


def test_training_reports_metrics_and_ranges(tiny_result: TrainingResult) -> None:
    m = tiny_result.metrics
    for key in ("accuracy", "baseline_accuracy", "test_majority_share", "balanced_accuracy", "ece", "log_loss"):
        assert 0.0 <= m[key] <= (1.0 if key != "log_loss" else 10.0)
    assert {"ece_uncalibrated", "log_loss_uncalibrated", "precision", "recall", "confusion_matrix"} <= set(m)
    ranges = tiny_result.data_range
    assert ranges["train"]["last"] < ranges["val"]["first"] < ranges["val"]["last"] < ranges["test"]["first"]


def _momentum_candles(n: int, phi: float = 0.7, seed: int = 0) -> pd.DataFrame:
    """Candles whose returns are AR(1): the next bar's direction is predictable from the last returns."""
    rng = np.random.default_rng(seed)
    shocks, returns = rng.normal(0, 0.004, n), np.zeros(n)
    for i in range(1, n):
        returns[i] = phi * returns[i - 1] + shocks[i]
    close = 100 * np.exp(np.cumsum(returns))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="15min", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.lognormal(3, 0.5, n),
        }
    )


def test_training_learns_a_predictable_series() -> None:
    config = TrainConfig(epochs=5, horizon=1, threshold_atr=0.2, batch_size=32, learning_rate=3e-3)
    result = train_cnn_lstm(_momentum_candles(1500), config, TINY)
    losses = [h["val_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.metrics["accuracy"] > result.metrics["baseline_accuracy"] + 0.1
    assert result.metrics["balanced_accuracy"] > 0.4


def test_same_seed_gives_identical_weights() -> None:
    first, second = _train(seed=3), _train(seed=3)
    for key, value in first.network.state_dict().items():
        assert torch.equal(value, second.network.state_dict()[key]), key
    assert first.temperature == second.temperature


def test_save_then_load_gives_identical_outputs(tiny_result: TrainingResult) -> None:
    stored = save_cnn_lstm(tiny_result, symbol="btcusdt", timeframe="15m", exchange="binance")
    assert stored.name == "cnn-lstm-btc-usdt-15m"
    assert stored.labels == {"family": "cnn-lstm", "symbol": "BTC/USDT", "timeframe": "15m"}
    assert stored.metadata["feature_hash"] == cnn_features.FEATURE_HASH
    predictor = load_cnn_lstm(stored.tag)
    windows = build_windows(random_walk_candles(300, seed=9), 4, 0.5).windows
    with torch.inference_mode():
        logits = tiny_result.network.eval()(torch.from_numpy(tiny_result.scaler.transform(windows))).numpy()
    expected = softmax_with_temperature(logits, tiny_result.temperature)
    proba = predictor.predict_proba(windows)
    assert proba.shape == (len(windows), 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    np.testing.assert_array_equal(load_cnn_lstm(stored.tag).predict_proba(windows), proba)


@pytest.mark.realdata
def test_real_data_slice_trains_and_round_trips() -> None:
    candles = shared_candles("ETH_USDT", "1h").iloc[-900:].reset_index(drop=True)
    result = train_cnn_lstm(candles, QUICK, TINY)
    stored = save_cnn_lstm(result, symbol="ETH/USDT", timeframe="1h", exchange="binance")
    windows = build_windows(candles, 4, 0.5).windows[-50:]
    again = load_cnn_lstm(stored.tag).predict_proba(windows)
    np.testing.assert_array_equal(again, load_cnn_lstm(stored.tag).predict_proba(windows))
    np.testing.assert_allclose(again.sum(axis=1), 1.0, atol=1e-5)
    assert stored.metadata["data_range"]["test"]["last"] <= candles["timestamp"].iloc[-1].isoformat().replace(
        "+00:00", "Z"
    )


def test_tampered_file_is_refused_naming_model_and_file(tiny_result: TrainingResult) -> None:
    stored = save_cnn_lstm(tiny_result, symbol="XRP/USDT", timeframe="1h", exchange="binance")
    scaler = stored.file(SCALER_FILE)
    scaler.chmod(0o644)
    scaler.write_text(scaler.read_text().replace("mean", "mean ", 1))
    with pytest.raises(ModelIntegrityError, match=rf"{stored.name}.*scaler\.json.*SHA-256"):
        load_cnn_lstm(stored.tag)


def test_feature_hash_mismatch_is_refused_naming_the_field(
    tiny_result: TrainingResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = save_cnn_lstm(tiny_result, symbol="SOL/USDT", timeframe="4h", exchange="binance")
    monkeypatch.setattr(cnn_features, "FEATURE_HASH", "0" * 64)
    with pytest.raises(ModelIntegrityError, match=rf"{stored.name}.*'feature_hash'"):
        load_cnn_lstm(stored.tag)


def test_edited_feature_names_in_model_yaml_are_refused(tiny_result: TrainingResult) -> None:
    stored = save_cnn_lstm(tiny_result, symbol="DOGE/USDT", timeframe="1h", exchange="binance")
    model_yaml = Path(stored.path) / "model.yaml"
    info = yaml.safe_load(model_yaml.read_text())
    info["metadata"]["feature_names"] = list(reversed(info["metadata"]["feature_names"]))
    model_yaml.chmod(0o644)
    model_yaml.write_text(yaml.safe_dump(info))
    with pytest.raises(ModelIntegrityError, match=rf"{stored.name}.*'feature_names'"):
        load_cnn_lstm(stored.tag)


def test_retrain_makes_a_new_version_that_latest_resolves_to(tiny_result: TrainingResult) -> None:
    first = save_cnn_lstm(tiny_result, symbol="LTC/USDT", timeframe="15m", exchange="binance")
    second = save_cnn_lstm(_train(seed=5), symbol="LTC/USDT", timeframe="15m", exchange="binance")
    assert first.version != second.version
    assert load_model(model_name("LTC/USDT", "15m")).tag == second.tag
    assert load_cnn_lstm(f"{second.name}:latest").tag == second.tag


def test_cli_train_models_and_evaluate(tmp_path: Path, tiny_result: TrainingResult) -> None:
    runner = CliRunner()
    save_cnn_lstm(tiny_result, symbol="BTC/USDT", timeframe="15m", exchange="binance")  # a model with no data below
    train_store, later_store = tmp_path / "train", tmp_path / "later"
    CandleStore(train_store).write("binance", "ADA/USDT", "15m", random_walk_candles(900, seed=11))
    CandleStore(later_store).write("binance", "ADA/USDT", "15m", random_walk_candles(500, seed=12, start="2024-03-01"))
    trained = runner.invoke(
        app,
        ["train", "cnn-lstm", "--symbols", "ADAUSDT", "--timeframes", "15m", "--epochs", "1", "--max-bars", "800"]
        + ["--data-dir", str(train_store), "--exchange", "binance", "--json"],
        env=WIDE,
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)[0]["model"].startswith("cnn-lstm-ada-usdt-15m:")

    table = runner.invoke(app, ["models"], env=WIDE)
    assert table.exit_code == 0, table.output
    assert "cnn-lstm-ada-usdt-15m" in table.stdout and "ADA/USDT" in table.stdout
    rows = json.loads(runner.invoke(app, ["models", "--json"], env=WIDE).stdout)
    row = next(r for r in rows if r["model"] == "cnn-lstm-ada-usdt-15m")
    assert row["family"] == "cnn-lstm" and row["timeframe"] == "15m" and row["data_first"] < row["data_last"]
    assert {"accuracy", "baseline", "ece", "version"} <= set(row)

    args = ["evaluate", "--data-dir", str(later_store), "--exchange", "binance", "--symbols", "ADA/USDT,BTC/USDT"]
    scored = runner.invoke(app, [*args, "--json"], env=WIDE)
    assert scored.exit_code == 0, scored.output
    result = json.loads(scored.stdout)
    assert [r["symbol"] for r in result] == ["ADA/USDT"]
    assert result[0]["samples"] > 300 and 0 <= result[0]["ece"] <= 1 and result[0]["overlaps_training"] is False
    assert "no 15m candles for BTC/USDT" in scored.stderr
    scored_table = runner.invoke(app, args, env=WIDE)
    assert "cnn-lstm-ada-usdt-15m" in scored_table.stdout and "accuracy" in scored_table.stdout
