"""CNN-LSTM: network, pooled samples without gaps, walk-forward folds that never test on what they learned,
train-only scaler, calibration and threshold on validation, the edge verdict (positive on a learnable market, not
on a random walk), the confirmation block no fit saw and the universe-wide rule stored with every input, health
checks, store round trip and refusals, and the commands.

Tiny networks and a few epochs on a few thousand synthetic bars (and one slice of real data), so every test runs
in a few seconds on one thread.
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
from signals.core.timeframes import timeframe_delta
from signals.data.store import CandleStore
from signals.features.cnn import LOOKBACK
from signals.models.cnn_lstm.artifact import SCALER_FILE, load_cnn_lstm, model_name, save_cnn_lstm_models
from signals.models.cnn_lstm.dataset import (
    build_samples,
    fold_edges,
    label_span_ns,
    labelled_before,
    split_validation,
    within,
)
from signals.models.cnn_lstm.network import CnnLstm, CnnLstmConfig, count_parameters
from signals.models.cnn_lstm.training import (
    DEFAULT_HORIZONS,
    TrainConfig,
    TrainingResult,
    confirmation_start,
    fit_temperature,
    health_issues,
    predict_proba,
    softmax_with_temperature,
    train_pooled,
)
from signals.models.evidence import RULE_TEXT, apply_rule
from signals.models.registry import load_model, without_none
from signals.models.scaler import Scaler
from signals.models.skill import MIN_CALLS, expected_calibration_error
from signals.pipelines import TrainedTimeframe, cnn_lstm_candidates, train_cnn_lstm_models
from signals.serving.catalog import ModelEntry
from signals.serving.engine import _model_info as model_info
from tests.support.factories import random_walk_candles
from tests.support.paths import shared_candles

torch.set_num_threads(1)

TINY = CnnLstmConfig(conv_channels=(8,), kernel_size=3, lstm_hidden=8, head_hidden=8, dropout=0.0)
QUICK = TrainConfig(epochs=2, batch_size=64, horizon=4, seed=7, folds=2)
WIDE = {"COLUMNS": "250", "TERM": "dumb"}
NS = 1_000_000_000


def momentum_candles(n: int, phi: float, seed: int, price: float = 100.0, freq: str = "1h") -> pd.DataFrame:
    """Candles whose returns are AR(1) with coefficient `phi`: the next bars' direction is predictable."""
    rng = np.random.default_rng(seed)
    shocks, returns = rng.normal(0, 0.004, n), np.zeros(n)
    for i in range(1, n):
        returns[i] = phi * returns[i - 1] + shocks[i]
    close = price * np.exp(np.cumsum(returns))
    open_ = np.r_[price, close[:-1]]
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq=freq, tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.lognormal(3, 0.5, n),
        }
    )


def two_pairs(n: int = 900, seed: int = 0) -> dict[str, pd.DataFrame]:
    return {
        "BTC/USDT": random_walk_candles(n, timeframe="1h", seed=seed),
        "ETH/USDT": random_walk_candles(n, timeframe="1h", seed=seed + 1, price=3000.0),
    }


@pytest.fixture(scope="module")
def tiny_result() -> TrainingResult:
    return train_pooled(two_pairs(), "1h", QUICK, TINY)


# --- network ----------------------------------------------------------------------------------------------
def test_default_network_is_small_and_maps_windows_to_three_logits() -> None:
    network = CnnLstm()
    assert count_parameters(network) < 30_000
    assert network(torch.zeros(4, LOOKBACK, cnn_features.N_FEATURES)).shape == (4, 3)


@pytest.mark.parametrize(("pool", "steps"), [(1, 60), (4, 15)])
def test_pooling_the_conv_output_shortens_what_the_lstm_reads(pool: int, steps: int) -> None:
    network = CnnLstm(TINY.model_copy(update={"pool": pool}))
    seen: list[int] = []
    network.lstm.register_forward_hook(lambda _module, inputs, _out: seen.append(inputs[0].shape[1]))
    network(torch.zeros(2, LOOKBACK, cnn_features.N_FEATURES))
    assert seen == [steps]


# --- samples ----------------------------------------------------------------------------------------------
def test_samples_pool_pairs_in_time_order_and_gather_their_own_windows() -> None:
    pairs = two_pairs(400)
    samples = build_samples(pairs, "1h", horizon=4, stop_atr=1.5)
    assert samples.symbols == ["BTC/USDT", "ETH/USDT"]
    assert (np.diff(samples.time_ns) >= 0).all()
    k = len(samples) // 2
    symbol = samples.symbols[samples.pair[k]]
    features = cnn_features.feature_matrix(pairs[symbol]).astype(np.float32)
    row = samples.row[k]
    np.testing.assert_array_equal(samples.windows(np.array([k]))[0], features[row - LOOKBACK + 1 : row + 1])


def test_a_window_or_label_horizon_that_spans_a_data_gap_is_dropped() -> None:
    candles = random_walk_candles(400, timeframe="1h", seed=3)
    gapped = candles.drop(index=range(200, 203)).reset_index(drop=True)  # 3 bars missing after row 199
    samples = build_samples({"BTC/USDT": gapped}, "1h", horizon=4, stop_atr=1.5)
    gap_after = candles["timestamp"].iloc[199].value
    step = timeframe_delta("1h").value
    for time_ns in samples.time_ns:
        window_start = time_ns - (LOOKBACK - 1) * step
        horizon_end = time_ns + 4 * step
        assert not (window_start <= gap_after < horizon_end), "a sample reaches across the gap"
    assert len(samples) > 150  # everything else is kept


def test_a_stride_keeps_every_kth_bar() -> None:
    pairs = {"BTC/USDT": random_walk_candles(400, timeframe="15m", seed=4)}
    every, fourth = build_samples(pairs, "15m", 4, 1.5), build_samples(pairs, "15m", 4, 1.5, stride=4)
    assert set(fourth.row) == {r for r in every.row if r % 4 == 0}


def test_walk_forward_blocks_are_consecutive_and_training_labels_end_before_them() -> None:
    samples = build_samples(two_pairs(900), "1h", horizon=4, stop_atr=1.5)
    edges = fold_edges(samples, folds=4, test_share=0.5)
    assert len(edges) == 4 and all(a[1] == b[0] for a, b in zip(edges, edges[1:], strict=False))
    embargo = LOOKBACK * 3600 * NS
    for start, end in edges:
        train = labelled_before(samples, start, embargo)
        test = within(samples, start, end)
        assert len(train) and len(test)
        assert (samples.time_ns[train] + label_span_ns(samples) < start - embargo).all()  # purged and embargoed
        fit_part, val = split_validation(samples, train, 0.15, embargo)
        assert samples.time_ns[fit_part].max() + label_span_ns(samples) < samples.time_ns[val].min() - embargo
        assert not set(val) & set(test) and not set(fit_part) & set(test)


def test_the_scaler_is_fitted_on_training_rows_only() -> None:
    samples = build_samples(two_pairs(600), "1h", horizon=4, stop_atr=1.5)
    train = np.arange(len(samples) // 2)
    clean = Scaler.fit(samples.subset(train).feature_rows())
    later = samples.row[len(samples) // 2 :].min() + 1
    for series in samples.pairs:
        series.features[later:] += 1e6  # poison every later row of both pairs
    poisoned = Scaler.fit(samples.subset(train).feature_rows())
    np.testing.assert_allclose(poisoned.mean, clean.mean, rtol=1e-12, atol=1e-15)
    assert np.all(np.abs(clean.mean) < 1e3)
    assert Scaler.from_dict(json.loads(json.dumps(clean.to_dict()))).feature_names == cnn_features.FEATURE_NAMES


# --- calibration ------------------------------------------------------------------------------------------
def test_temperature_scaling_lowers_ece_of_an_overconfident_classifier() -> None:
    rng = np.random.default_rng(0)
    true_p = rng.dirichlet([1.0, 1.0, 1.0], size=4000)
    labels = np.array([rng.choice(3, p=p) for p in true_p])
    logits = 4.0 * np.log(true_p)  # ranks right, far too sure
    fit, held = slice(0, 2000), slice(2000, None)
    temperature = fit_temperature(logits[fit], labels[fit])
    before = expected_calibration_error(softmax_with_temperature(logits[held], 1.0), labels[held])
    after = expected_calibration_error(softmax_with_temperature(logits[held], temperature), labels[held])
    assert 3.0 < temperature < 5.0
    assert after < before / 3


# --- the recipe -------------------------------------------------------------------------------------------
def test_training_reports_walk_forward_per_pair_and_pooled(tiny_result: TrainingResult) -> None:
    wf = tiny_result.walk_forward
    assert [f["fold"] for f in wf["folds"]] == [1, 2]
    for fold in wf["folds"]:
        assert fold["train"]["last"] < fold["test"]["first"]  # never tested on what it learned from
    pooled = wf["pooled"]
    assert pooled["n"] == sum(wf["pairs"][s]["n"] for s in tiny_result.symbols)
    for figure in ("accuracy", "log_loss_skill", "brier_skill"):
        assert pooled[figure]["ci_low"] <= pooled[figure]["value"] <= pooled[figure]["ci_high"]
    assert set(pooled["baselines"]) == {"majority", "reversal", "persistence"}
    assert pooled["majority_share"] == max(pooled["class_frequencies"].values())
    assert pooled["edge"]["source"] == "walk_forward" and pooled["edge"]["metric"] == "expectancy_after_costs_fraction"
    assert len(pooled["coverage"]) == 10 and pooled["reliability"]
    assert set(tiny_result.break_even) == {"BTC/USDT", "ETH/USDT"}
    assert all(0.5 < p < 1.0 for p in tiny_result.break_even.values())  # costs raise it above a coin flip
    assert tiny_result.horizon == 4 and tiny_result.data_range["train"]["last"] < tiny_result.data_range["val"]["first"]


def test_the_horizon_defaults_per_timeframe() -> None:
    assert {tf: TrainConfig().horizon_for(tf) for tf in DEFAULT_HORIZONS} == {"15m": 12, "1h": 10, "4h": 8, "1d": 6}


def test_a_learnable_market_shows_a_positive_edge_and_a_random_walk_does_not() -> None:
    """The gate's evidence is real: strongly autocorrelated returns (AR(1), phi 0.9) make the trade plan predictable
    and the walk-forward calls pay; a random walk's calls do not. No costs, so that only skill is measured."""
    config = TrainConfig(epochs=6, horizon=4, fee=0.0, slippage=0.0, batch_size=64, learning_rate=3e-3, folds=2)
    learnable = {"AAA/USDT": momentum_candles(2500, 0.9, 1), "BBB/USDT": momentum_candles(2500, 0.9, 2, 5.0)}
    result = train_pooled(learnable, "1h", config, TINY)
    pooled = result.walk_forward["pooled"]
    assert pooled["accuracy"]["ci_low"] > pooled["majority_share"] + 0.1
    assert pooled["calls"]["hit_rate"]["ci_low"] > pooled["calls"]["break_even_hit_rate"]
    assert pooled["edge"]["verdict"] == "positive" and pooled["edge"]["ci_low"] > 0
    assert result.pair_edge("AAA/USDT")["verdict"] == "positive" and result.fit.threshold is not None
    # ... and it survives the universe-wide rule at the full universe's m (136), confirmed on the held-back block
    final = apply_rule(cnn_lstm_candidates([result]), universe=136)
    assert final["AAA/USDT 1h"]["verdict"] == "positive", final["AAA/USDT 1h"]["rule"]
    assert final["AAA/USDT 1h"]["rule"]["confirmation"]["n_calls"] >= MIN_CALLS

    noise = train_pooled(
        {"AAA/USDT": momentum_candles(2500, 0.0, 1), "BBB/USDT": momentum_candles(2500, 0.0, 2, 5.0)},
        "1h",
        config,
        TINY,
    )
    assert noise.walk_forward["pooled"]["edge"]["verdict"] != "positive"
    final = apply_rule(cnn_lstm_candidates([noise]), universe=136)
    assert all(edge["verdict"] != "positive" for edge in final.values())


def test_same_seed_gives_identical_weights_and_calibration() -> None:
    first, second = (train_pooled(two_pairs(700), "1h", QUICK, TINY) for _ in range(2))
    for key, value in first.network.state_dict().items():
        assert torch.equal(value, second.network.state_dict()[key]), key
    assert first.fit.temperature == second.fit.temperature and first.fit.threshold == second.fit.threshold


def test_a_network_that_learned_nothing_is_flagged(tiny_result: TrainingResult) -> None:
    flat = tiny_result.fit
    flat_validation = {**flat.validation, "sharpness": 0.001, "largest_class_share": 0.99}
    issues = health_issues(
        type(flat)(**{**flat.__dict__, "validation": flat_validation, "best_epoch": 1, "temperature": 20.0})
    )
    assert any("best epoch 1 with flat probabilities" in i for i in issues)
    assert any("temperature at its bound" in i for i in issues)
    assert any("predicts one class" in i for i in issues)
    flagged = type(tiny_result)(**{**tiny_result.__dict__, "health": issues})
    assert flagged.pair_edge("BTC/USDT")["verdict"] != "positive" and "flat" in flagged.pair_edge("BTC/USDT")["reason"]


# --- the store --------------------------------------------------------------------------------------------
def test_one_entry_per_pair_with_its_own_calibration_and_a_shared_network(tiny_result: TrainingResult) -> None:
    stored = save_cnn_lstm_models(tiny_result, exchange="binance")
    assert [s.name for s in stored] == ["cnn-lstm-btc-usdt-1h", "cnn-lstm-eth-usdt-1h"]
    btc, eth = (load_cnn_lstm(s.tag) for s in stored)
    assert btc.network_id == eth.network_id  # one pooled network, stored twice
    assert btc.stored.metadata["training"]["pooled_symbols"] == ["BTC/USDT", "ETH/USDT"]
    for predictor, symbol in ((btc, "BTC/USDT"), (eth, "ETH/USDT")):
        meta = predictor.stored.metadata
        assert predictor.temperature == pytest.approx(tiny_result.fit.temperature_of(symbol))
        assert meta["metrics"]["n"] == tiny_result.walk_forward["pairs"][symbol]["n"]
        assert meta["edge"]["verdict"] == tiny_result.pair_edge(symbol)["verdict"]
        assert meta["break_even_hit_rate"] == pytest.approx(tiny_result.break_even[symbol])
        assert meta["horizon"] == 4 and meta["costs"]["round_trip"] == pytest.approx(0.003)
    samples = build_samples(two_pairs(900), "1h", 4, 1.5)
    btc_rows = np.flatnonzero(samples.pair == 0)[-50:]
    expected = predict_proba(tiny_result.fit, samples, btc_rows)
    np.testing.assert_allclose(btc.predict_proba(samples.windows(btc_rows)), expected, atol=1e-6)


@pytest.mark.realdata
def test_real_data_slice_trains_and_round_trips() -> None:
    candles = {"ETH/USDT": shared_candles("ETH_USDT", "1h").iloc[-1200:].reset_index(drop=True)}
    result = train_pooled(candles, "1h", QUICK, TINY)
    (stored,) = save_cnn_lstm_models(result, exchange="binance")
    samples = build_samples(candles, "1h", result.horizon, 1.5)
    windows = samples.windows(np.arange(len(samples))[-50:])
    again = load_cnn_lstm(stored.tag).predict_proba(windows)
    np.testing.assert_array_equal(again, load_cnn_lstm(stored.tag).predict_proba(windows))
    np.testing.assert_allclose(again.sum(axis=1), 1.0, atol=1e-5)
    assert result.walk_forward["pooled"]["n"] > 200


def test_tampered_file_is_refused_naming_model_and_file(tiny_result: TrainingResult) -> None:
    stored = save_cnn_lstm_models(tiny_result, exchange="binance")[0]
    scaler = stored.file(SCALER_FILE)
    scaler.chmod(0o644)
    scaler.write_text(scaler.read_text().replace("mean", "mean ", 1))
    with pytest.raises(ModelIntegrityError, match=rf"{stored.name}.*scaler\.json.*SHA-256"):
        load_cnn_lstm(stored.tag)


def test_feature_hash_mismatch_is_refused_naming_the_field(
    tiny_result: TrainingResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = save_cnn_lstm_models(tiny_result, exchange="binance")[1]
    monkeypatch.setattr(cnn_features, "FEATURE_HASH", "0" * 64)
    with pytest.raises(ModelIntegrityError, match=rf"{stored.name}.*'feature_hash'"):
        load_cnn_lstm(stored.tag)


def test_edited_feature_names_in_model_yaml_are_refused(tiny_result: TrainingResult) -> None:
    stored = save_cnn_lstm_models(tiny_result, exchange="binance")[0]
    model_yaml = Path(stored.path) / "model.yaml"
    info = yaml.safe_load(model_yaml.read_text())
    info["metadata"]["feature_names"] = list(reversed(info["metadata"]["feature_names"]))
    model_yaml.chmod(0o644)
    model_yaml.write_text(yaml.safe_dump(info))
    with pytest.raises(ModelIntegrityError, match=rf"{stored.name}.*'feature_names'"):
        load_cnn_lstm(stored.tag)


def test_retrain_makes_a_new_version_that_latest_resolves_to(tiny_result: TrainingResult) -> None:
    first = save_cnn_lstm_models(tiny_result, exchange="binance")[0]
    second = save_cnn_lstm_models(train_pooled(two_pairs(700, seed=5), "1h", QUICK, TINY), exchange="binance")[0]
    assert first.version != second.version
    assert load_model(model_name("BTC/USDT", "1h")).tag == second.tag
    assert load_cnn_lstm(f"{second.name}:latest").tag == second.tag


# --- the commands -----------------------------------------------------------------------------------------
def test_cli_train_models_and_evaluate(tmp_path: Path) -> None:
    runner = CliRunner()
    train_store, later_store = tmp_path / "train", tmp_path / "later"
    for i, symbol in enumerate(("ADA/USDT", "DOT/USDT")):
        CandleStore(train_store).write("binance", symbol, "15m", random_walk_candles(1400, seed=11 + i))
    later = random_walk_candles(700, seed=21, start="2024-03-01")
    CandleStore(later_store).write("binance", "ADA/USDT", "15m", later)  # DOT has no later candles
    trained = runner.invoke(
        app,
        ["train", "cnn-lstm", "--symbols", "ADAUSDT,DOT-USDT", "--timeframes", "15m", "--epochs", "1"]
        + ["--folds", "2", "--data-dir", str(train_store), "--exchange", "binance", "--json"],
        env=WIDE,
    )
    assert trained.exit_code == 0, trained.output
    rows = json.loads(trained.stdout)
    assert rows[0]["model"] == "pooled 15m" and rows[0]["n"] > 0
    assert [r["model"].split(":")[0] for r in rows[1:]] == ["cnn-lstm-ada-usdt-15m", "cnn-lstm-dot-usdt-15m"]
    assert {"accuracy", "baselines", "calls", "edge"} <= set(rows[1])

    table = runner.invoke(app, ["models"], env=WIDE)
    assert table.exit_code == 0, table.output
    assert "cnn-lstm-ada-usdt-15m" in table.stdout and "ADA/USDT" in table.stdout
    assert "rule" in table.stdout and "edge rule universe-bh-1: a pair-model is positive only when" in table.stdout
    listed = json.loads(runner.invoke(app, ["models", "--json"], env=WIDE).stdout)
    row = next(r for r in listed if r["model"] == "cnn-lstm-ada-usdt-15m")
    assert row["family"] == "cnn-lstm" and row["timeframe"] == "15m" and row["data_first"] < row["data_last"]
    assert row["edge"]["verdict"] in {"positive", "none", "negative", "insufficient_data"}
    assert row["edge"]["rule"]["m"] >= 2 and row["rule"].startswith(("passed", "failed"))  # trained together
    assert row["walk_forward"]["pooled"]["n"] == rows[0]["n"] and row["metrics"]["n"] == rows[1]["n"]

    args = ["evaluate", "--data-dir", str(later_store), "--exchange", "binance", "--symbols", "ADA/USDT,DOT/USDT"]
    scored = runner.invoke(app, [*args, "--json"], env=WIDE)
    assert scored.exit_code == 0, scored.output
    result = json.loads(scored.stdout)
    assert [r["model"].split(":")[0] for r in result] == ["cnn-lstm-ada-usdt-15m"]
    assert result[0]["n"] > 300 and 0 <= result[0]["ece"] <= 1 and result[0]["purged"] == 0
    assert set(result[0]["baselines"]) == {"majority", "reversal", "persistence"}
    assert "no 15m candles for DOT/USDT" in scored.stderr
    on_its_training_data = runner.invoke(
        app, [*args[:2], str(train_store), *args[3:], "--json"], env=WIDE
    )  # samples sharing bars with the fitted ones are purged: only the held-back confirmation block is left
    assert on_its_training_data.exit_code == 0, on_its_training_data.output
    purged = json.loads(on_its_training_data.stdout)
    assert purged[0]["purged"] > 300 and 0 < purged[0]["n"] < purged[0]["purged"]
    scored_table = runner.invoke(app, args, env={**WIDE, "COLUMNS": "400"})
    assert "cnn-lstm-ada-usdt-15m" in scored_table.stdout and "accuracy" in scored_table.stdout


# --- the confirmation block and the universe-wide rule ------------------------------------------------------------
def uneven_histories() -> dict[str, pd.DataFrame]:
    """BTC 2024-01-01 on; ETH starts 700 bars later (a shorter history, the same end); SOL ends 600 bars in (no
    sample in the newest block)."""
    return {
        "BTC/USDT": random_walk_candles(1300, timeframe="1h", seed=3),
        "ETH/USDT": random_walk_candles(600, timeframe="1h", seed=4, start="2024-01-30 04:00", price=3000.0),
        "SOL/USDT": random_walk_candles(600, timeframe="1h", seed=5, price=150.0),
    }


@pytest.fixture(scope="module")
def ruled(tmp_path_factory: pytest.TempPathFactory) -> TrainedTimeframe:
    store = CandleStore(tmp_path_factory.mktemp("candles"))
    for symbol, candles in uneven_histories().items():
        store.write("binance", symbol, "1h", candles)
    (trained,) = train_cnn_lstm_models(
        store,
        "binance",
        list(uneven_histories()),
        ["1h"],
        TrainConfig(**{**QUICK.model_dump(), "epochs": 1}),
        TINY,
        universe=136,
    )
    return trained


def test_the_confirmation_block_is_the_newest_fifth_of_the_samples_and_no_fit_saw_it(ruled: TrainedTimeframe) -> None:
    """Folds, threshold and the served fit end (label horizon and embargo included) before the block starts; the
    block is the same instant for every pair, and a pair with no samples in it is fine (nothing to confirm)."""
    result = ruled.result
    samples = build_samples(uneven_histories(), "1h", horizon=4, stop_atr=result.train_config.stop_atr)
    start = confirmation_start(samples, result.train_config.confirm_share)
    assert start is not None and result.confirmation["span"]["start"] == iso(start)
    assert 0.2 <= (samples.time_ns >= start).mean() < 0.2 + 4 / len(samples)  # a fifth of the samples (ties: all)
    assert (samples.time_ns < start).any()
    reach = label_span_ns(samples) + LOOKBACK * 3600 * NS  # a label's horizon plus the embargo
    block = np.flatnonzero(samples.time_ns >= start)
    for span in (result.data_range["train"], result.data_range["val"]):  # the served fit
        assert to_ns(span["last"]) + reach < start
    for fold in result.walk_forward["folds"]:
        assert "skipped" in fold or (
            to_ns(fold["train"]["last"]) + reach < start and to_ns(fold["test"]["last"]) < start
        )
    assert result.walk_forward["folds"] and all("skipped" not in f for f in result.walk_forward["folds"])
    assert to_ns(result.confirmation["span"]["first"]) == samples.time_ns[block].min() >= start
    assert result.confirmation["span"]["samples"] == len(block)
    btc, eth, sol = (result.pair_confirmation(s) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT"))
    assert btc.first == eth.first == result.confirmation["span"]["first"]  # one instant for every pair
    assert sol.first is None and sol.n_calls == 0 and "no confirmation block" in str(sol.failure())
    assert result.walk_forward["pairs"]["ETH/USDT"]["n"] > 0  # the late starter is tested in the folds it has


def test_the_stored_edge_carries_the_final_verdict_and_every_input_of_the_rule(ruled: TrainedTimeframe) -> None:
    for stored in ruled.stored:
        symbol, edge = stored.metadata["symbol"], stored.metadata["edge"]
        rule = edge["rule"]
        assert edge["verdict"] != "positive" or rule["passed"]  # the final verdict, the one the gate reads
        assert edge["walk_forward_verdict"] == ruled.result.pair_edge(symbol)["verdict"]
        assert rule["m"] == 136 and rule["tested"] == 3 and rule["universe"] == 136 and rule["q"] == 0.05
        assert rule["bh_critical"] == pytest.approx(rule["rank"] * 0.05 / 136) and rule["text"] == RULE_TEXT
        assert rule["pooled_verdict"] == ruled.result.pooled_verdict and isinstance(rule["passed_bh"], bool)
        # (the store leaves None out: a block with no calls has no expectancy or p)
        assert rule["confirmation"] == without_none(ruled.result.pair_confirmation(symbol).as_dict())
        assert {"p", "rank", "passed_pooled", "version", "p_method"} <= set(rule) and ("reason" in rule) != rule[
            "passed"
        ]
        assert stored.metadata["confirmation"]["span"] == ruled.result.confirmation["span"]
    entry = ModelEntry("cnn-lstm", "x", "x:v", "v", "BTC/USDT", "1h", ruled.stored[0].metadata)
    info = model_info(entry)  # /models: the stored inputs and the rule's text beside the edge
    assert info.rule is not None and info.rule["m"] == 136 and "text" not in info.rule and info.rule_text == RULE_TEXT
    assert info.edge is not None and info.edge.rule_status in {"passed", "failed"}
    assert info.edge.walk_forward_verdict == ruled.stored[0].metadata["edge"]["walk_forward_verdict"]


def iso(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def to_ns(stamp: str) -> int:
    return int(pd.Timestamp(stamp).value)
