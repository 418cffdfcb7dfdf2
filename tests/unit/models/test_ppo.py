"""PPO: the trading environment, the chronological split, training + store round trip, evaluation, CLI.

Everything runs on tiny seeded random-walk candles built here, so each test takes seconds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from signals.core.errors import ModelIntegrityError
from signals.core.vocab import BUY, HOLD, SELL
from signals.features.cnn import SERVING_TAIL
from signals.features.ppo import LONG_POSITION, PPO_LOOKBACK, PPO_OBS_SHAPE, serving_observation
from signals.models.evidence import PPO_RULE_TEXT
from signals.models.ppo.artifact import POLICY_FILE, PpoPolicy, import_ppo, load_ppo
from signals.models.ppo.env import FIRST_WINDOW_BAR, SymbolHistory, TradingEnv
from signals.models.ppo.training import (
    PpoHyperParameters,
    PpoTrainingResult,
    StrategyResult,
    SymbolEvaluation,
    evaluate,
    held_out_edge,
    split_history,
    train_ppo,
)
from signals.pipelines import ppo_ruled_edge
from tests.support.world import environment

torch.set_num_threads(1)
FEE, SLIP = 0.001, 0.0005


def random_walk(n: int, seed: int, start: float = 100.0, freq: str = "1h") -> pd.DataFrame:
    """Hourly candles of a log-normal random walk that pass the candle-frame validation."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[start], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq=freq, tz="UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.lognormal(10, 0.5, n),
        }
    )


def flat_history(n: int = 6, price: float = 100.0) -> SymbolHistory:
    return SymbolHistory(
        "FLAT/USDT",
        np.zeros((n, PPO_LOOKBACK, 9), np.float32),
        np.full(n, price),
        pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"),
    )


def test_env_passes_gymnasium_check_env() -> None:
    env = TradingEnv([SymbolHistory.from_candles("BTC/USDT", random_walk(300, 1))], max_steps=64)
    check_env(env, skip_render_check=True)


def test_round_trip_in_flat_market_costs_fees_and_slippage() -> None:
    env = TradingEnv([flat_history()], fee=FEE, slippage=SLIP)
    env.reset(options={"start": 0})
    _, r_buy, *_ = env.step(BUY)
    _, r_sell, *_, info = env.step(SELL)
    expected_log_equity = 2 * math.log(1 - FEE) + math.log(1 - SLIP) - math.log(1 + SLIP)
    assert r_buy + r_sell == pytest.approx(expected_log_equity, abs=1e-12)
    assert math.log(info["equity"]) == pytest.approx(expected_log_equity, abs=1e-12)
    assert info["trades"] == 2 and info["position"] == 0.0


def test_a_trade_penalty_makes_each_fill_cost_more_than_the_market_charges() -> None:
    plain = TradingEnv([flat_history()], fee=FEE, slippage=SLIP)
    penalised = TradingEnv([flat_history()], fee=FEE, slippage=SLIP, trade_penalty=0.002)
    rewards = []
    for env in (plain, penalised):
        env.reset(options={"start": 0})
        rewards.append([env.step(action)[1] for action in (BUY, HOLD, SELL)])
    assert np.subtract(rewards[1], rewards[0]) == pytest.approx([-0.002, 0.0, -0.002])
    assert penalised.equity == pytest.approx(plain.equity)  # the penalty shapes learning, not the account


def test_reward_is_change_in_log_equity_and_noops_do_not_trade() -> None:
    env = TradingEnv([SymbolHistory.from_candles("BTC/USDT", random_walk(300, 2))], max_steps=None)
    _, info = env.reset(seed=3, options={"start": 0})
    rng = np.random.default_rng(0)
    previous, trades, truncated = info["equity"], 0, False
    while not truncated:
        action = int(rng.integers(3))
        changes_position = (action == BUY and info["position"] == 0.0) or (action == SELL and info["position"] == 1.0)
        _, reward, terminated, truncated, info = env.step(action)
        trades += changes_position
        assert not terminated
        assert reward == pytest.approx(math.log(info["equity"] / previous), abs=1e-12)
        previous = info["equity"]
    assert info["trades"] == trades


def test_hold_when_flat_keeps_equity_constant_in_a_moving_market() -> None:
    env = TradingEnv([SymbolHistory.from_candles("BTC/USDT", random_walk(300, 4))], max_steps=50)
    env.reset(seed=5)
    for _ in range(50):
        _, reward, _, truncated, info = env.step(HOLD)
        assert reward == 0.0 and info["equity"] == 1.0
    assert truncated


@pytest.mark.parametrize("n_candles", [300, 700])
def test_env_observation_equals_serving_observation(n_candles: int) -> None:
    candles = random_walk(n_candles, 6)
    env = TradingEnv([SymbolHistory.from_candles("BTC/USDT", candles)], max_steps=None)
    obs, info = env.reset(options={"start": len(candles) - FIRST_WINDOW_BAR - 3})
    for action in (HOLD, BUY):
        bar = FIRST_WINDOW_BAR + info["index"]
        served = serving_observation(candles.iloc[: bar + 1], info["position"])
        assert obs.shape == served.shape == PPO_OBS_SHAPE
        if bar + 1 <= SERVING_TAIL:  # same candles in: same bits out
            np.testing.assert_array_equal(obs, served)
        else:  # the serving tail's indicator warm-up differs from the full history's by far less than float32 noise
            np.testing.assert_allclose(obs, served, rtol=0, atol=1e-5)
        obs, _, _, _, info = env.step(action)
    assert info["position"] == LONG_POSITION and obs[-1, -1] == LONG_POSITION


def test_split_is_chronological_without_overlap() -> None:
    candles = random_walk(500, 7)
    split = split_history("BTC/USDT", candles)
    boundary = int(len(candles) * 0.8)
    assert split.train.timestamps[-1] < split.held_out.timestamps[0]
    assert split.train.timestamps[-1] == candles["timestamp"].iloc[boundary - 1]
    assert split.held_out.timestamps[0] == candles["timestamp"].iloc[boundary]
    assert split.held_out.timestamps[-1] == candles["timestamp"].iloc[-1]
    np.testing.assert_array_equal(split.held_out.closes, candles["close"].to_numpy()[boundary:])


def test_evaluation_reports_the_three_strategies_with_fees() -> None:
    history = SymbolHistory.from_candles("BTC/USDT", random_walk(300, 8))
    result = evaluate(history, lambda _: HOLD, fee=FEE, slippage=SLIP)
    ratio = history.closes[-1] / history.closes[0]
    expected_hold = ratio * (1 - FEE) ** 2 * (1 - SLIP) / (1 + SLIP) - 1
    assert set(result.results) == {"policy", "buy_and_hold", "flat"}
    assert result.results["buy_and_hold"].total_return == pytest.approx(expected_hold, abs=1e-12)
    assert result.results["buy_and_hold"].trades == 2
    assert result.results["flat"].total_return == 0.0 and result.results["flat"].trades == 0
    assert result.results["flat"].max_drawdown == 0.0
    assert result.results["policy"] == result.results["flat"]  # this "policy" always holds
    assert 0.0 <= result.results["buy_and_hold"].max_drawdown < 1.0


@pytest.fixture(scope="module")
def trained() -> PpoTrainingResult:
    histories = {"BTC/USDT": random_walk(400, 10, 60_000.0), "ETH/USDT": random_walk(400, 11, 3_000.0)}
    hyper = PpoHyperParameters(n_steps=128, batch_size=64, n_epochs=2)
    return train_ppo(histories, "1h", timesteps=256, seed=0, hyper_parameters=hyper, max_episode_steps=64)


def test_ppo_trains_imports_loads_and_acts_like_the_in_memory_model(
    trained: PpoTrainingResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cloudpickle

    assert trained.model.num_timesteps == 256
    assert [e.symbol for e in trained.evaluation] == ["BTC/USDT", "ETH/USDT"]
    stored = import_ppo(trained)
    assert stored.name == "ppo-1h"
    assert stored.labels == {"family": "ppo", "timeframe": "1h", "symbol": "*"}
    assert stored.metadata["obs_shape"] == [50, 10] and stored.metadata["symbols"] == ["BTC/USDT", "ETH/USDT"]
    assert set(stored.metadata["evaluation"]["ETH/USDT"]) == {"policy", "buy_and_hold", "flat"}
    edge = stored.metadata["edge"]  # judged out of time, after costs, against staying flat
    assert edge["source"] == "held_out" and edge["metric"] == "log_return_per_bar_vs_flat"
    assert edge["verdict"] in {"positive", "none", "negative", "insufficient_data"}
    summary = stored.metadata["held_out_summary"]
    assert summary["symbols"] == 2 and set(summary["mean_total_return"]) == {"policy", "buy_and_hold", "flat"}
    assert stored.metadata["trade_penalty"] == pytest.approx(0.0015)  # each fill's cost counted twice
    assert (
        stored.metadata["training_range"]["BTC/USDT"]["last_bar"]
        < stored.metadata["held_out_range"]["BTC/USDT"]["first_bar"]
    )

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_ppo unpickled a part of policy.zip")

    with monkeypatch.context() as patch:  # a verified file still loads without unpickling anything
        patch.setattr(cloudpickle, "loads", no_unpickling)
        loaded = load_ppo(stored.tag)
    batch = np.stack([s.held_out.windows[i] for s in trained.splits for i in range(4)])
    batch = np.concatenate([batch, np.ones((*batch.shape[:2], 1), np.float32)], axis=2)
    batch[::2, :, -1] = 0.0
    actions, probabilities, values = loaded.act(batch)
    assert actions.shape == (8,) and probabilities.shape == (8, 3) and values.shape == (8,)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(actions, probabilities.argmax(axis=1))

    in_memory = PpoPolicy(stored.tag, stored.version, "1h", stored.metadata, trained.model.policy)
    mem_actions, mem_probabilities, mem_values = in_memory.act(batch)
    np.testing.assert_array_equal(probabilities, mem_probabilities)
    np.testing.assert_array_equal(values, mem_values)
    np.testing.assert_array_equal(actions, trained.model.predict(batch, deterministic=True)[0])

    with pytest.raises(ValueError, match=r"expected \(N, 50, 10\)"):
        loaded.act(batch[:, :, :9])


def test_tampered_policy_zip_is_refused_before_unpickling(
    trained: PpoTrainingResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cloudpickle
    from stable_baselines3 import PPO
    from stable_baselines3.common import save_util

    stored = import_ppo(trained)
    path = Path(stored.file(POLICY_FILE))
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the zip was read before its SHA-256 was checked")

    monkeypatch.setattr(PPO, "load", must_not_run)
    monkeypatch.setattr(save_util, "load_from_zip_file", must_not_run)
    monkeypatch.setattr(cloudpickle, "loads", must_not_run)
    with pytest.raises(ModelIntegrityError, match="policy.zip"):
        load_ppo(stored.tag)


def test_cli_train_ppo_writes_the_policy_to_the_store(tmp_path: Path) -> None:
    import bentoml
    from typer.testing import CliRunner

    from signals.cli import app
    from signals.data.store import CandleStore

    CandleStore(tmp_path).write("binance", "SOL/USDT", "4h", random_walk(300, 12, freq="4h"))
    args = ["train", "ppo", "--symbols", "SOL/USDT", "--timeframe", "4h", "--timesteps", "128"]
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path), "--exchange", "binance", "--json"])
    assert result.exit_code == 0, result.output
    model = bentoml.models.get("ppo-4h:latest")
    assert model.info.labels == {"family": "ppo", "timeframe": "4h", "symbol": "*"}
    assert model.info.metadata["symbols"] == ["SOL/USDT"]
    assert '"buy_hold"' in result.stdout

    missing = CliRunner().invoke(app, [*args, "--symbols", "DOGE/USDT", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 2


def _rewrite_zip(path: Path, change: Any) -> None:
    """Rewrite a policy zip through `change(entries)` (a dict name -> bytes), as an attacker with the file could."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    path.chmod(0o644)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def _record_new_hash(stored: Any) -> None:
    """Update the model's recorded SHA-256 of its zip, so that only the zip's content can refuse it."""
    import bentoml

    from signals.models.registry import sha256_of

    model = bentoml.models.get(stored.tag)
    yaml_path = Path(model.path) / "model.yaml"
    text = yaml_path.read_text()
    old = str(model.info.metadata["sha256"][POLICY_FILE])
    yaml_path.write_text(text.replace(old, sha256_of(Path(stored.file(POLICY_FILE)))))


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda entries: entries.__setitem__("evil.pkl", b"cos\nsystem\n."), "entries SB3 does not write"),
        (
            lambda entries: entries.__setitem__(
                "data",
                entries["data"].replace(
                    b'"verbose"', b'"sneaky": {":type:": "x", ":serialized:": "gAR9lC4="}, "verbose"'
                ),
            ),
            "pickled values the loader does not replace: ['sneaky']",
        ),
    ],
    ids=["extra-entry", "extra-pickled-value"],
)
def test_a_policy_zip_with_extra_pickled_parts_is_refused_even_with_a_matching_hash(
    trained: PpoTrainingResult, monkeypatch: pytest.MonkeyPatch, change: Any, says: str
) -> None:
    import cloudpickle
    from stable_baselines3 import PPO
    from stable_baselines3.common import save_util

    stored = import_ppo(trained)
    _rewrite_zip(Path(stored.file(POLICY_FILE)), change)
    _record_new_hash(stored)  # the hash check passes: the zip's own content must refuse it

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the zip was unpickled")

    monkeypatch.setattr(PPO, "load", must_not_run)
    monkeypatch.setattr(save_util, "load_from_zip_file", must_not_run)
    monkeypatch.setattr(cloudpickle, "loads", must_not_run)
    with pytest.raises(ModelIntegrityError, match=re.escape(says)):
        load_ppo(stored.tag)


def test_with_a_signing_key_a_swapped_zip_and_its_rewritten_hash_are_refused(trained: PpoTrainingResult) -> None:
    from signals.models.registry import SIGNATURE_FILE

    with environment({"SIGNALS_MODEL_SIGNING_KEY": "a-secret-the-model-store-does-not-hold"}):
        stored = import_ppo(trained)  # saved with the key: signed
        assert (Path(stored.path) / SIGNATURE_FILE).is_file()
        assert load_ppo(stored.tag).tag == stored.tag
        other = import_ppo(trained)  # another valid policy zip, with its own correct hash
        Path(stored.file(POLICY_FILE)).chmod(0o644)
        Path(stored.file(POLICY_FILE)).write_bytes(Path(other.file(POLICY_FILE)).read_bytes() + b"\0")
        _record_new_hash(stored)
        with pytest.raises(ModelIntegrityError, match="file .policy.zip. changed after signing"):
            load_ppo(stored.tag)
        (Path(other.path) / SIGNATURE_FILE).unlink()
        with pytest.raises(ModelIntegrityError, match="is not signed"):
            load_ppo(other.tag)
        with environment({"SIGNALS_MODEL_SIGNING_KEY": "another-key"}):
            fresh = import_ppo(trained)
        with pytest.raises(ModelIntegrityError, match="signed with another key"):
            load_ppo(fresh.tag)


def test_signals_models_sign_signs_what_passes_its_hashes(trained: PpoTrainingResult) -> None:
    from typer.testing import CliRunner

    from signals.cli import app
    from signals.models.registry import SIGNATURE_FILE

    stored = import_ppo(trained)  # unsigned: no key yet
    assert not (Path(stored.path) / SIGNATURE_FILE).exists()
    unset = CliRunner().invoke(app, ["models", "sign", stored.tag])
    assert unset.exit_code == 2 and "set SIGNALS_MODEL_SIGNING_KEY" in unset.output
    with environment({"SIGNALS_MODEL_SIGNING_KEY": "k"}):
        signed = CliRunner().invoke(app, ["models", "sign", stored.tag])
        assert signed.exit_code == 0 and f"signed {stored.tag}" in signed.output
        assert load_ppo(stored.tag).tag == stored.tag


def evaluation_of(symbol: str, returns: np.ndarray, fills: np.ndarray, start: str) -> SymbolEvaluation:
    first = pd.Timestamp(start, tz="UTC")
    policy = StrategyResult(float(np.expm1(returns.sum())), 0.0, int(fills.sum()), returns, fills)
    flat = StrategyResult(0.0, 0.0, 0, np.zeros(len(returns)), np.zeros(len(returns), int))
    return SymbolEvaluation(
        symbol, first, first + pd.Timedelta(hours=len(returns) - 1), len(returns),
        {"policy": policy, "buy_and_hold": flat, "flat": flat},
    )  # fmt: skip


def test_the_ppo_edge_reads_the_earlier_held_out_part_and_the_newest_part_confirms_it() -> None:
    """The held-out calendar span is cut once for every symbol: the verdict's bars end before the confirmation's
    first bar; round trips are counted in the part where their fills fell. A policy that earned on the earlier
    part and lost on the newest is not confirmed, so the rule keeps it off positive."""
    rng = np.random.default_rng(0)
    n = 2000
    returns = np.where(np.arange(n) < n // 2, 0.002, -0.002) + rng.normal(0, 0.001, n)
    fills = np.ones(n, dtype=np.int64)  # a fill every bar: n / 2 round trips
    evaluation = [evaluation_of(s, returns, fills, "2024-06-01") for s in ("BTC/USDT", "ETH/USDT")]
    edge, summary, confirmation = held_out_edge(evaluation, "1h", confirm_share=0.5)
    assert edge["verdict"] == "positive" and edge["p_value"] < 1e-6 and edge["n"] == 2 * (n // 2) // 2
    assert edge["span"]["last"] < str(confirmation.first) and confirmation.n_calls == 2 * (n // 2) // 2
    assert confirmation.expectancy is not None and confirmation.expectancy < 0 and not confirmation.passed
    assert summary["symbols"] == 2 and summary["bars_per_symbol"] == n
    result = PpoTrainingResult(
        None, "1h", [], evaluation, PpoHyperParameters(), 1, 0, FEE, SLIP, None, 0.0,  # type: ignore[arg-type]
        edge=edge, summary=summary, confirmation=confirmation,
    )  # fmt: skip
    (ruled,) = ppo_ruled_edge([result])
    assert ruled["verdict"] == "none" and ruled["walk_forward_verdict"] == "positive"
    assert ruled["rule"]["m"] == 1 and ruled["rule"]["passed_bh"] and ruled["rule"]["text"] == PPO_RULE_TEXT
    assert "confirmation block" in ruled["reason"]


def test_the_ppo_pipeline_stores_the_rule_beside_the_edge(trained: PpoTrainingResult) -> None:
    (ruled,) = ppo_ruled_edge([trained])
    assert ruled["rule"]["m"] == 1 and ruled["rule"]["tested"] == 1
    assert ruled["verdict"] in {"none", "negative", "insufficient_data"} or ruled["rule"]["passed"]
    assert trained.metadata()["confirmation"] == (trained.confirmation and trained.confirmation.as_dict())
