"""SignalService over HTTP, in process: the contract of ../shared/DESIGN.md ("HTTP contract", "Errors").

One tiny world (tests/world.py: synthetic candles for BTC/ETH/SOL x 15m/1h/4h/1d ending 2026-11-20,
CNN-LSTMs for BTC 15m, BTC 1h and ETH 1h, a PPO for 1h) is built once into the session's BENTOML_HOME,
and one `TestClient(SignalService.to_asgi())` serves the module: the real HTTP, validation and batching
stack, with `bentoml.depends` resolving to in-process runners. Expected values come from the candle
store and the model store, never from another response.

Where the tiny models cannot show a behaviour (they may only ever say one direction), the engine is run
directly with a stand-in runner and an injected clock. Tests that change a candle file restore it.
Tests that need another server (live candles through real ccxt against the local exchange, a tampered
weights file) start a second TestClient, then give BentoML's process-wide "current service" (which the
mounted compat app looks up per request) back to the module's server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest
import yaml
from starlette.testclient import TestClient, WebSocketDenialResponse

import service as service_module
from service import SignalService
from signals.api.errors import error_body, error_response
from signals.contract import schemas
from signals.contract.wire import WindowRequest
from signals.core.errors import StillComputing
from signals.core.settings import get_settings
from signals.core.timeframes import TIMEFRAME_SECONDS, timeframe_delta, timeframe_seconds
from signals.data.candles import empty_candles
from signals.data.store import CandleStore
from signals.features.cnn import MIN_CANDLES, SERVING_TAIL
from signals.features.indicators import atr as average_true_range
from signals.features.ppo import FLAT, LONG_POSITION, PPO_FEATURE_NAMES, PPO_MIN_CANDLES, serving_observation
from signals.models.cnn_lstm.artifact import WEIGHTS_FILE, model_name
from signals.models.ppo.artifact import load_ppo
from signals.models.registry import StoredModel, load_model
from signals.serving.catalog import ModelCatalog
from signals.serving.engine import BUDGET_RETRY_AFTER_S, SignalEngine
from signals.testing.local_exchange import LocalExchange
from tests.support.factories import next_bar
from tests.support.fakes import FakeCnnLstm, FakePpo, separate_metrics
from tests.support.servers import local_client
from tests.support.world import EXCHANGE, World, copy_world, environment

BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"
WORLD_MODELS = ((BTC, "15m"), (BTC, "1h"), (ETH, "1h"))
CLASSES = ("SHORT", "NO_TRADE", "LONG")
STOP_ATR = 1.5  # Settings' defaults: stop 1.5 ATR, take-profits at 1R, 2R, 3R
R_MULTIPLES = (1.0, 2.0, 3.0)
SYMBOL_HELP = "BTC/USDT, BTCUSDT, BTC-USDT"


# --- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = copy_world(trained_world, tmp_path_factory.mktemp("world"))
    with environment(built.env()):
        yield built


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with separate_metrics(), local_client(SignalService.to_asgi()) as test_client:
        yield test_client


@contextmanager
def another_server() -> Iterator[TestClient]:
    """A second SignalService instance (its own catalog and market data) from the current environment.

    Its engine is bound to the compat routes while it runs and released when it stops (`EngineSlot`), so the
    module's server answers them again afterwards.
    """
    with separate_metrics(), local_client(SignalService.to_asgi()) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def catalog(world: World) -> ModelCatalog:
    settings = get_settings()
    return ModelCatalog.from_store(settings)


# --- helpers -------------------------------------------------------------------------------------------
def store(world: World) -> CandleStore:
    return CandleStore(world.data_dir)


def serving_tail(world: World, symbol: str, timeframe: str) -> pd.DataFrame:
    """The closed candles a signal is computed from: the last SERVING_TAIL stored bars."""
    candles = store(world).read(EXCHANGE, symbol, timeframe)
    return candles.iloc[-SERVING_TAIL:].reset_index(drop=True)


def last_atr(candles: pd.DataFrame) -> float:
    values = average_true_range(
        candles["high"].to_numpy(np.float64), candles["low"].to_numpy(np.float64), candles["close"].to_numpy(np.float64)
    )
    return float(values[-1])


def stored_model(symbol: str, timeframe: str) -> StoredModel:
    return load_model(f"{model_name(symbol, timeframe)}:latest")


@contextmanager
def restored_file(path: Path) -> Iterator[Path]:
    """Whatever a test does to `path` (rewrite, delete), its original bytes are back afterwards."""
    original = path.read_bytes()
    try:
        yield path
    finally:
        path.write_bytes(original)


def bento_error(response: Any) -> str:
    """The message of an error in the one shape: `{"success": false, "status", "error", "detail"}`."""
    body = response.json()
    assert isinstance(body, dict) and body["success"] is False and body["status"] == response.status_code, body
    message = body["error"]
    assert isinstance(message, str) and message and body["detail"] == message
    return message


def validation_errors(response: Any) -> list[tuple[str, list[str]]]:
    """A request that failed validation: the one shape with `errors: [{field, message, type}]`."""
    bento_error(response)
    items = response.json()["errors"]
    assert all(item["message"] for item in items)
    return [(item["type"], item["field"].split(".") if item["field"] else []) for item in items]


def compat_error(response: Any) -> str:
    """The message of a compatibility route's error: the older envelope `{success: false, error, detail}`."""
    body = response.json()
    assert isinstance(body, dict) and body.get("success") is False and isinstance(body.get("detail"), str), body
    return body["detail"]


def post(client: TestClient, route: str, body: dict[str, Any]) -> Any:
    return client.post(route, json=body)


def predict(client: TestClient, symbol: str, timeframe: str) -> Any:
    return post(client, "/predict", {"symbol": symbol, "timeframe": timeframe})


def stamp(text: str) -> pd.Timestamp:
    assert isinstance(text, str) and text.endswith("Z"), f"not ISO-8601 UTC with Z: {text!r}"
    return pd.Timestamp(text)


def assert_levels(levels: dict[str, Any] | None, direction: str, close: float, atr: float, timeframe: str) -> None:
    """DESIGN's levels: entry = last close, stop = entry -/+ 1.5 ATR, take-profit r = entry +/- r x risk,
    eta = ceil((distance / ATR)^2) bars (signals/risk.py); no levels for NO_TRADE."""
    if direction == "NO_TRADE":
        assert levels is None
        return
    assert levels is not None and set(levels) == set(schemas.Levels.model_fields)
    sign = 1.0 if direction == "LONG" else -1.0
    risk = STOP_ATR * atr
    minutes_per_bar = timeframe_seconds(timeframe) // 60
    assert levels["entry"] == float(f"{close:.10g}")  # no tick size in the store: 10 significant digits
    assert levels["atr"] == pytest.approx(atr, rel=1e-9)
    assert levels["stop_loss"] == pytest.approx(close - sign * risk, rel=1e-9)
    assert levels["risk_reward"] == max(R_MULTIPLES)
    assert [tp["level"] for tp in levels["take_profits"]] == [1, 2, 3]
    for tp, r in zip(levels["take_profits"], R_MULTIPLES, strict=True):
        assert set(tp) == set(schemas.TakeProfitLevel.model_fields)
        assert tp["r_multiple"] == r
        assert tp["price"] == pytest.approx(close + sign * r * risk, rel=1e-9)
        assert tp["eta_minutes"] == math.ceil((r * risk / atr) ** 2) * minutes_per_bar
    if direction == "LONG":
        assert levels["stop_loss"] < levels["entry"] < levels["take_profits"][0]["price"]
    else:
        assert levels["stop_loss"] > levels["entry"] > levels["take_profits"][0]["price"]


def assert_signal(signal: dict[str, Any], world: World, symbol: str, timeframe: str) -> None:
    """Every Signal field present and typed, and each one what the store and the model store say."""
    assert set(signal) == set(schemas.Signal.model_fields)
    candles = serving_tail(world, symbol, timeframe)
    candle_time = candles["timestamp"].iloc[-1]
    close = float(candles["close"].iloc[-1])
    assert signal["symbol"] == symbol and signal["timeframe"] == timeframe
    assert stamp(signal["candle_time"]) == candle_time  # open time of the last stored (closed) bar
    assert stamp(signal["valid_until"]) == candle_time + 2 * timeframe_delta(timeframe)  # close of the next bar
    assert stamp(signal["prediction_time"]) > candle_time
    probabilities = signal["probabilities"]
    assert tuple(probabilities) == CLASSES
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probabilities.values())
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert signal["confidence"] == max(probabilities.values())
    assert signal["direction"] == max(CLASSES, key=probabilities.__getitem__)
    model = stored_model(symbol, timeframe)
    metadata = model.metadata
    assert signal["model_version"] == model.version
    # Both figures come from the same walk-forward test samples of this pair, out of sample.
    assert signal["model_accuracy"] == pytest.approx(metadata["metrics"]["accuracy"]["value"], rel=1e-12)
    accuracy = metadata["metrics"]["accuracy"]
    assert signal["model_accuracy_ci"] == pytest.approx([accuracy["ci_low"], accuracy["ci_high"]], rel=1e-12)
    assert signal["model_accuracy_ci"][0] <= signal["model_accuracy"] <= signal["model_accuracy_ci"][1]
    assert signal["baseline_accuracy"] == pytest.approx(metadata["metrics"]["majority_share"], rel=1e-12)
    assert signal["break_even_hit_rate"] == pytest.approx(metadata["break_even_hit_rate"], rel=1e-12)
    assert signal["edge"]["verdict"] == metadata["edge"]["verdict"] and signal["edge"]["source"] == "walk_forward"
    assert signal["horizon_bars"] == metadata["horizon"]
    assert stamp(signal["expires_at"]) == candle_time + (metadata["horizon"] + 1) * timeframe_delta(timeframe)
    assert signal["current_price"] == close
    assert signal["data_source"] == "synthetic"
    assert signal["stale"] is True  # the world ends 2026-11-20; the clock is later
    # Tiny models on a synthetic market show no edge: the signal says so and serves no trade plan.
    assert metadata["edge"]["verdict"] != "positive"
    assert signal["actionable"] is False and signal["levels"] is None
    assert signal["abstain_reason"].startswith("no demonstrated edge")


def engine_answering(
    catalog: ModelCatalog, probabilities: Sequence[float], clock: Any = None
) -> tuple[SignalEngine, list[WindowRequest]]:
    """An engine whose CNN-LSTM runner answers `probabilities` to every window (and records the requests). Probation
    is off: these tests drive the walk-forward gate (tests/unit/serving/test_engine.py drives probation)."""
    runner = FakeCnnLstm(probabilities)
    settings = get_settings().model_copy(update={"probation_calls": 0})
    extra = {} if clock is None else {"clock": clock}
    return SignalEngine.offline(settings, catalog, cnn_lstm=runner, ppo=FakePpo(), **extra), runner.requests


# --- health --------------------------------------------------------------------------------------------
def wait_ready(client: TestClient, timeout_s: float = 60) -> None:
    """Until /readyz answers 200: the warm-up at start runs beside this client's requests."""
    deadline = time.monotonic() + timeout_s
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the server never turned ready"
        time.sleep(0.05)


def test_livez_and_readyz_answer_200_once_started(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    wait_ready(client)
    assert client.get("/readyz").status_code == 200


def test_a_freshly_started_server_answers_every_served_pair_from_its_cache(world: World) -> None:
    """Every served (symbol, timeframe) is computed once before /readyz turns ready: no request after start meets a
    cold pair (a cold timeframe on a loaded box once outlasted the framework's 10 s timeout)."""
    with another_server() as server:
        wait_ready(server)
        before = server.post("/status", json={}).json()["cache"]
        for symbol, timeframe in WORLD_MODELS:
            assert predict(server, symbol, timeframe).status_code == 200
        assert server.post("/batch", json={"timeframe": "1h"}).status_code == 200
        after = server.post("/status", json={}).json()["cache"]
    asked = len(WORLD_MODELS) + len([s for s, tf in WORLD_MODELS if tf == "1h"])
    assert after["cache_lookups"] - before["cache_lookups"] == asked
    assert after["cache_hits"] - before["cache_hits"] == asked  # every one a hit


def test_a_signal_past_the_request_budget_answers_503_with_retry_after_in_the_one_shape() -> None:
    response = error_response(StillComputing("still computing", retry_after_s=BUDGET_RETRY_AFTER_S))
    assert response.status_code == 503 and response.headers["Retry-After"] == str(BUDGET_RETRY_AFTER_S)
    assert json.loads(response.body) == error_body(503, "still computing")


# --- /predict ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("symbol", "timeframe"), WORLD_MODELS)
def test_predict_answers_a_complete_signal_from_the_stored_candles_and_model(
    client: TestClient, world: World, symbol: str, timeframe: str
) -> None:
    response = predict(client, symbol, timeframe)
    assert response.status_code == 200, response.text
    assert_signal(response.json(), world, symbol, timeframe)


def test_predict_accepts_every_symbol_spelling_and_answers_in_ccxt_form(client: TestClient) -> None:
    answers = [predict(client, spelling, "1h") for spelling in ("BTC/USDT", "BTCUSDT", "BTC-USDT", "btc_usdt")]
    assert [a.status_code for a in answers] == [200] * 4
    assert {a.json()["symbol"] for a in answers} == {BTC}
    assert all(a.json() == answers[0].json() for a in answers)  # the same (cached) signal


def with_edge(catalog: ModelCatalog, verdict: str = "positive", threshold: float | None = 0.5) -> ModelCatalog:
    """The world's catalog, its models given a stored edge verdict and threshold (what a real, skilled model
    would carry), so that the gate's every rule can be driven from the probabilities."""
    edge = {
        "verdict": verdict,
        "metric": "expectancy_after_costs_fraction",
        "value": 0.004,
        "ci_low": 0.001,
        "ci_high": 0.007,
        "n": 250,
        "source": "walk_forward",
        "walk_forward_verdict": verdict,
        "rule": {"version": "test", "passed": verdict == "positive", "reason": None},  # the universe rule's outcome
    }
    entries = []
    for entry in catalog.entries:
        metadata = {**entry.metadata, "edge": edge, "threshold": threshold}
        entries.append(dataclasses.replace(entry, metadata=metadata))
    return ModelCatalog(entries)


def fresh_clock(world: World, symbol: str, timeframe: str) -> Any:
    """A clock just after the last stored candle closed: its signal is not stale."""
    candle_time = serving_tail(world, symbol, timeframe)["timestamp"].iloc[-1]
    return lambda: candle_time + timeframe_delta(timeframe) + pd.Timedelta(seconds=5)


@pytest.mark.parametrize(
    ("probabilities", "direction"),
    [((0.1, 0.2, 0.7), "LONG"), ((0.6, 0.3, 0.1), "SHORT"), ((0.25, 0.5, 0.25), "NO_TRADE")],
)
def test_direction_is_the_argmax_and_an_actionable_call_carries_its_levels(
    world: World, catalog: ModelCatalog, probabilities: tuple[float, ...], direction: str
) -> None:
    engine, seen = engine_answering(with_edge(catalog), probabilities, clock=fresh_clock(world, BTC, "1h"))
    signal = asyncio.run(engine.predict(BTC, "1h")).model_dump(mode="json")
    assert [r.model for r in seen] == [str(stored_model(BTC, "1h").tag)]  # the served version, by tag
    assert signal["direction"] == direction
    assert signal["confidence"] == max(probabilities)
    assert tuple(signal["probabilities"].values()) == pytest.approx(probabilities)
    assert signal["actionable"] is (direction != "NO_TRADE")
    candles = serving_tail(world, BTC, "1h")
    assert_levels(signal["levels"], direction, float(candles["close"].iloc[-1]), last_atr(candles), "1h")
    if direction != "NO_TRADE":  # 1h bars: 1R, 2R, 3R are 1.5, 3 and 4.5 ATR away -> 3, 9 and 21 bars
        assert [tp["eta_minutes"] for tp in signal["levels"]["take_profits"]] == [180, 540, 1260]
        assert signal["abstain_reason"] is None
    else:
        assert signal["abstain_reason"].startswith("the most likely outcome is NO_TRADE")


@pytest.mark.parametrize(
    ("verdict", "threshold", "probabilities", "stale", "reason"),
    [
        ("none", 0.5, (0.1, 0.2, 0.7), False, "no demonstrated edge (none): after-cost expectancy +0.40 %"),
        ("negative", 0.5, (0.1, 0.2, 0.7), False, "no demonstrated edge (negative)"),
        ("insufficient_data", 0.5, (0.1, 0.2, 0.7), False, "no demonstrated edge: too little out-of-sample"),
        ("positive", None, (0.1, 0.2, 0.7), False, "no confidence level of this model paid its costs"),
        ("positive", 0.8, (0.1, 0.2, 0.7), False, "confidence 0.700 is below this model's threshold 0.800"),
        ("positive", 0.5, (0.1, 0.2, 0.7), True, "the candles are stale"),
    ],
)
def test_the_gate_serves_no_trade_plan_without_edge_threshold_and_fresh_candles(
    world: World,
    catalog: ModelCatalog,
    verdict: str,
    threshold: float | None,
    probabilities: tuple[float, ...],
    stale: bool,
    reason: str,
) -> None:
    candle_time = serving_tail(world, BTC, "1h")["timestamp"].iloc[-1]
    clock = (
        (lambda: candle_time + 3 * timeframe_delta("1h") + pd.Timedelta(hours=1))
        if stale
        else fresh_clock(world, BTC, "1h")
    )
    engine, _ = engine_answering(with_edge(catalog, verdict, threshold), probabilities, clock=clock)
    signal = asyncio.run(engine.predict(BTC, "1h"))
    assert signal.direction == "LONG" and signal.actionable is False and signal.levels is None
    assert signal.abstain_reason is not None and signal.abstain_reason.startswith(reason), signal.abstain_reason
    assert signal.stale is stale


def test_a_signal_is_stale_only_once_its_successor_should_have_closed(world: World, catalog: ModelCatalog) -> None:
    candle_time = serving_tail(world, BTC, "1h")["timestamp"].iloc[-1]
    grace = pd.Timedelta(seconds=get_settings().stale_grace_s)
    just_closed = candle_time + timeframe_delta("1h") + pd.Timedelta(seconds=5)
    engine, _ = engine_answering(catalog, (0.2, 0.3, 0.5), clock=lambda: just_closed)
    signal = asyncio.run(engine.predict(BTC, "1h"))
    assert signal.stale is False
    assert pd.Timestamp(signal.prediction_time) == just_closed
    successor_closed = candle_time + 2 * timeframe_delta("1h")
    assert engine.is_stale(candle_time, "1h") is False
    engine.clock = lambda: successor_closed + grace
    assert engine.is_stale(candle_time, "1h") is False
    engine.clock = lambda: successor_closed + grace + pd.Timedelta(seconds=1)
    assert engine.is_stale(candle_time, "1h") is True


# --- the signal cache ----------------------------------------------------------------------------------
def test_a_signal_is_cached_until_a_new_candle_is_stored(client: TestClient, world: World) -> None:
    path = store(world).path_for(EXCHANGE, BTC, "15m")
    first = predict(client, BTC, "15m").json()
    again = predict(client, BTC, "15m").json()
    assert again["prediction_time"] == first["prediction_time"]
    with restored_file(path):
        bar = next_bar(store(world).read(EXCHANGE, BTC, "15m"), "15m")
        store(world).write(EXCHANGE, BTC, "15m", bar)
        fresh = predict(client, BTC, "15m").json()
        assert stamp(fresh["candle_time"]) == bar["timestamp"].iloc[0]
        assert stamp(fresh["prediction_time"]) > stamp(first["prediction_time"])
        assert fresh["current_price"] == bar["close"].iloc[0]
    back = predict(client, BTC, "15m").json()  # the file is back: its candle's signal is still cached
    assert back == first


# --- /batch --------------------------------------------------------------------------------------------
def test_batch_defaults_to_every_symbol_with_a_model_on_the_timeframe(
    client: TestClient, world: World, catalog: ModelCatalog
) -> None:
    for timeframe in ("15m", "1h"):
        response = post(client, "/batch", {"timeframe": timeframe})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["timeframe"] == timeframe and body["errors"] == []
        symbols = [s["symbol"] for s in body["signals"]]
        assert symbols == catalog.cnn_symbols(timeframe)
        assert set(symbols) >= {s for s, tf in WORLD_MODELS if tf == timeframe}
        for signal in body["signals"]:
            assert_signal(signal, world, signal["symbol"], timeframe)


def test_batch_answers_what_it_can_and_lists_each_failure(client: TestClient, world: World) -> None:
    malformed = post(client, "/batch", {"timeframe": "1h", "symbols": ["eth-usdt", "NOT A SYMBOL"]})
    assert malformed.status_code == 400 and validation_errors(malformed) == [("value_error", ["symbols", "1"])]
    assert SYMBOL_HELP in bento_error(malformed)  # a spelling mistake is the caller's to fix before anything runs
    body = post(client, "/batch", {"timeframe": "1h", "symbols": ["eth-usdt", "SOL/USDT"]})
    assert body.status_code == 200, body.text
    body = body.json()
    assert [s["symbol"] for s in body["signals"]] == [ETH]
    for signal in body["signals"]:
        assert_signal(signal, world, signal["symbol"], "1h")
    errors = {e["symbol"]: e for e in body["errors"]}
    assert set(errors) == {"SOL/USDT"}
    assert errors["SOL/USDT"]["status"] == 404
    assert "no CNN-LSTM model for SOL/USDT 1h" in errors["SOL/USDT"]["message"]
    assert "BTC/USDT 1h" in errors["SOL/USDT"]["message"]  # it lists what exists
    assert all(e["timeframe"] == "1h" for e in body["errors"])


def test_batch_asks_for_at_most_the_universe_and_answers_a_failure_when_nothing_answered(client: TestClient) -> None:
    too_many = post(client, "/batch", {"timeframe": "1h", "symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT"]})
    assert too_many.status_code == 400 and "at most 3 (the served universe)" in too_many.json()["error"]
    huge = post(client, "/batch", {"timeframe": "1h", "symbols": ["BTCUSDT"] * 5000})
    assert huge.status_code == 400 and huge.json()["errors"][0]["field"] == "symbols"  # refused by validation
    none_served = post(client, "/batch", {"timeframe": "1h", "symbols": ["SOLUSDT"]})
    assert none_served.status_code == 404 and "no pair could be answered" in none_served.json()["error"]


# --- /summary ------------------------------------------------------------------------------------------
def test_summary_covers_the_four_timeframes_and_their_consensus(client: TestClient, world: World) -> None:
    response = post(client, "/summary", {"symbol": "btcusdt"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["symbol"] == BTC
    assert set(body["signals"]) == {"15m", "1h"}
    for timeframe, signal in body["signals"].items():
        assert_signal(signal, world, BTC, timeframe)
    assert {e["timeframe"]: e["status"] for e in body["errors"]} == {"4h": 404, "1d": 404}
    assert all("no CNN-LSTM model for BTC/USDT" in e["message"] for e in body["errors"])

    # No timeframe is actionable (no edge): nothing votes, the consensus is NO_TRADE and says why.
    assert body["consensus"] == {
        "direction": "NO_TRADE",
        "score": 0.0,
        "agreeing": 0,
        "actionable": 0,
        "answered": 2,
        "rule": "mean of P(LONG) - P(SHORT) over the actionable signals only; LONG above +0.15, SHORT below -0.15, "
        "else NO_TRADE (also when no signal is actionable)",
    }


def test_the_consensus_counts_only_actionable_signals(world: World, catalog: ModelCatalog) -> None:
    closed = serving_tail(world, BTC, "1h")["timestamp"].iloc[-1] + timeframe_delta("1h")
    twenty_past = closed + pd.Timedelta(minutes=20)  # the next 15m candle closed at :15 (+2 min grace): stale
    engine, _ = engine_answering(with_edge(catalog, threshold=0.65), (0.1, 0.2, 0.7), clock=lambda: twenty_past)
    summary = asyncio.run(engine.summary(BTC, ["15m", "1h"]))
    # 15m is stale, so not actionable and not voting; 1h is fresh and clears the threshold 0.65.
    assert {tf: s.actionable for tf, s in summary.signals.items()} == {"15m": False, "1h": True}
    assert summary.consensus is not None
    assert (summary.consensus.direction, summary.consensus.actionable, summary.consensus.agreeing) == ("LONG", 1, 1)
    assert summary.consensus.score == pytest.approx(0.6)


def test_summary_with_explicit_timeframes_and_no_model_is_a_404_naming_each(client: TestClient) -> None:
    response = post(client, "/summary", {"symbol": "SOL-USDT", "timeframes": ["1h", "1d"]})
    assert response.status_code == 404
    message = bento_error(response)
    assert "no pair could be answered" in message and "SOL/USDT 1h" in message and "SOL/USDT 1d" in message
    partly = post(client, "/summary", {"symbol": BTC, "timeframes": ["1h", "1d"]}).json()
    assert list(partly["signals"]) == ["1h"] and [(e["timeframe"], e["status"]) for e in partly["errors"]] == [
        ("1d", 404)
    ]
    response = post(client, "/summary", {"symbol": BTC, "timeframes": ["1h", "3h"]})
    assert response.status_code == 400 and validation_errors(response) == [("literal_error", ["timeframes", "1"])]


# --- /action -------------------------------------------------------------------------------------------
def _policy_answer(world: World, symbol: str, position: float) -> tuple[int, np.ndarray, float, np.ndarray]:
    observation = serving_observation(serving_tail(world, symbol, "1h"), position)
    actions, probabilities, values = load_ppo("ppo-1h:latest").act(observation[None])
    return int(actions[0]), probabilities[0], float(values[0]), observation


def test_action_for_a_flat_caller_is_the_policy_answer_without_explanation(client: TestClient, world: World) -> None:
    response = post(client, "/action", {"symbol": "BTCUSDT"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == set(schemas.Action.model_fields)
    action_id, probabilities, _, _ = _policy_answer(world, BTC, FLAT)
    candles = serving_tail(world, BTC, "1h")
    candle_time = candles["timestamp"].iloc[-1]
    assert body["symbol"] == BTC and body["timeframe"] == "1h"  # the configured PPO timeframe
    assert body["action_id"] == action_id
    assert body["action_name"] == ("HOLD", "BUY", "SELL")[action_id]
    assert tuple(body["probabilities"]) == ("HOLD", "BUY", "SELL")
    assert list(body["probabilities"].values()) == pytest.approx(probabilities.tolist(), abs=1e-6)
    assert body["confidence"] == pytest.approx(float(probabilities[action_id]), abs=1e-6)
    assert body["current_price"] == float(candles["close"].iloc[-1])
    assert stamp(body["candle_time"]) == candle_time
    assert stamp(body["valid_until"]) == candle_time + 2 * timeframe_delta("1h")
    assert body["model_version"] == load_model("ppo-1h:latest").version
    assert body["data_source"] == "synthetic" and body["stale"] is True
    assert body["explanation"] is None


def test_action_position_reaches_the_policy_as_the_last_observation_column(client: TestClient, world: World) -> None:
    flat = post(client, "/action", {"symbol": ETH, "position": {"side": "flat"}}).json()
    held = post(client, "/action", {"symbol": ETH, "position": {"side": "long", "entry_price": 3000}}).json()
    expected_flat, expected_long = _policy_answer(world, ETH, FLAT), _policy_answer(world, ETH, LONG_POSITION)
    assert np.all(expected_long[3][:, -1] == LONG_POSITION) and np.all(expected_flat[3][:, -1] == FLAT)
    assert not np.allclose(expected_flat[1], expected_long[1], atol=1e-7, rtol=0)  # the column matters to it
    assert list(flat["probabilities"].values()) == pytest.approx(expected_flat[1].tolist(), abs=1e-6)
    assert list(held["probabilities"].values()) == pytest.approx(expected_long[1].tolist(), abs=1e-6)


def test_action_explanation_names_the_moves_and_the_open_return(client: TestClient, world: World) -> None:
    entry_price = 3000.0
    request = {"symbol": ETH, "position": {"side": "long", "entry_price": entry_price}, "include_explanation": True}
    response = post(client, "/action", request)
    assert response.status_code == 200, response.text
    body = response.json()
    explanation = body["explanation"]
    assert set(explanation) == set(schemas.Explanation.model_fields)
    action_id, _, value, observation = _policy_answer(world, ETH, LONG_POSITION)
    close = float(serving_tail(world, ETH, "1h")["close"].iloc[-1])
    assert explanation["position"] == "long"
    assert explanation["unrealized_return"] == pytest.approx(close / entry_price - 1.0, abs=1e-6)
    assert explanation["value_estimate"] == pytest.approx(value, abs=1e-5)
    assert explanation["summary"].startswith(f"{body['action_name']} while long")
    assert "since entry" in explanation["summary"]
    # the three market features whose last bar stands out most (|z|) against the 50-bar window
    market = observation[:, :-1].astype(np.float64)
    z = (market[-1] - market.mean(axis=0)) / market.std(axis=0)
    top = np.argsort(-np.abs(z))[:3]
    moves = explanation["top_features"]
    assert [m["name"] for m in moves] == [PPO_FEATURE_NAMES[i] for i in top]
    assert "position" not in [m["name"] for m in moves]
    for move, i in zip(moves, top, strict=True):
        assert move["zscore"] == pytest.approx(z[i], abs=1e-3)
        assert move["value"] == pytest.approx(float(market[-1, i]), abs=1e-6)
        assert move["name"] in explanation["summary"]
    assert body["action_id"] == action_id

    flat = post(client, "/action", {"symbol": ETH, "include_explanation": True}).json()["explanation"]
    assert flat["position"] == "flat" and flat["unrealized_return"] is None
    assert " while flat:" in flat["summary"]


@pytest.mark.parametrize(
    ("position", "error_type", "where", "says"),
    [
        ({"side": "short"}, "literal_error", ["position", "side"], "'flat' or 'long'"),
        ({"side": "long", "entry_price": -5}, "greater_than_equal", ["position", "entry_price"], "greater than or"),
        ({"side": "long", "entry_price": 1e-320}, "greater_than_equal", ["position", "entry_price"], "greater than or"),
        ({"side": "flat", "entry_price": 100}, "value_error", ["position"], "entry_price applies only to side 'long'"),
        ({"side": "long", "size": 1}, "extra_forbidden", ["position", "size"], "not permitted"),
    ],
)
def test_action_refuses_a_bad_position_with_400(
    client: TestClient, position: dict[str, Any], error_type: str, where: list[str], says: str
) -> None:
    response = post(client, "/action", {"symbol": BTC, "position": position})
    assert response.status_code == 400, response.text
    assert validation_errors(response) == [(error_type, where)]
    assert says in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("number", [b"1e999", b"Infinity", b"NaN", b"-1e999"])
def test_an_entry_price_must_be_a_finite_number(client: TestClient, number: bytes) -> None:
    body = b'{"symbol": "BTC/USDT", "position": {"side": "long", "entry_price": ' + number + b"}}"
    response = client.post("/action", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert validation_errors(response)[0][1] in (["position", "entry_price"], [])


def test_include_explanation_must_be_a_real_boolean(client: TestClient) -> None:
    response = post(client, "/action", {"symbol": BTC, "include_explanation": "yes"})
    assert response.status_code == 400 and validation_errors(response) == [("bool_type", ["include_explanation"])]


def test_action_for_a_timeframe_without_policy_is_404_listing_the_policies(client: TestClient) -> None:
    response = post(client, "/action", {"symbol": BTC, "timeframe": "1d"})
    assert response.status_code == 404
    message = bento_error(response)
    assert "no PPO policy for timeframe 1d" in message and "available: " in message and "1h" in message


# --- /models -------------------------------------------------------------------------------------------
def test_models_lists_every_model_with_its_metadata(client: TestClient, catalog: ModelCatalog) -> None:
    response = post(client, "/models", {})
    assert response.status_code == 200, response.text
    listed = response.json()
    assert [m["name"] for m in listed] == [e.name for e in catalog.entries]
    for info in listed:
        assert set(info) == set(schemas.ModelInfo.model_fields)
        assert info["status"] == "ok" and info["error"] is None
    by_name = {m["name"]: m for m in listed}
    for symbol, timeframe in WORLD_MODELS:
        info, model = by_name[model_name(symbol, timeframe)], stored_model(symbol, timeframe)
        assert (info["family"], info["symbol"], info["timeframe"]) == ("cnn-lstm", symbol, timeframe)
        assert info["version"] == model.version
        walk_forward = info["metrics"]["walk_forward"]
        assert walk_forward == model.metadata["metrics"] and walk_forward["n"] > 0
        for key in ("accuracy", "majority_share", "balanced_accuracy", "log_loss_skill", "brier_skill", "ece"):
            assert key in walk_forward  # every figure with its baselines, out of sample
        assert set(walk_forward["baselines"]) == {"majority", "reversal", "persistence"}
        assert info["metrics"]["pooled_walk_forward"] == model.metadata["walk_forward"]["pooled"]
        assert info["metrics"]["horizon_bars"] == model.metadata["horizon"]
        assert info["edge"]["verdict"] == model.metadata["edge"]["verdict"]
        assert info["data_range"] == model.metadata["data_range"] and info["data_range"]
    ppo, policy = by_name["ppo-1h"], load_model("ppo-1h:latest")
    assert (ppo["family"], ppo["symbol"], ppo["timeframe"], ppo["version"]) == ("ppo", None, "1h", policy.version)
    assert ppo["metrics"]["evaluation"] == policy.metadata["evaluation"]
    assert ppo["edge"]["metric"] == "log_return_per_bar_vs_flat" and ppo["edge"]["source"] == "held_out"
    assert ppo["data_range"]["training_range"] == policy.metadata["training_range"]


# --- errors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "error_type", "where"),
    [
        (b'{"symbol": "BTC/USDT", "timeframe": ', "json_invalid", []),
        (b'["BTC/USDT", "1h"]', "model_type", []),
        (b'{"symbol": "BTC/USDT", "timeframe": "1h", "model": "x"}', "extra_forbidden", ["model"]),
        (b'{"symbol": "BTC/USDT"}', "missing", ["timeframe"]),
        (b'{"symbol": 5, "timeframe": "1h"}', "string_type", ["symbol"]),
    ],
    ids=["malformed-json", "not-an-object", "unknown-field", "missing-field", "wrong-type"],
)
def test_a_bad_request_body_is_400_saying_what_and_where(
    client: TestClient, body: bytes, error_type: str, where: list[str]
) -> None:
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert validation_errors(response) == [(error_type, where)]


@pytest.mark.parametrize("symbol", ["../etc/passwd", "BTC/XYZ", "BTC", "", "BTC USDT", "Ｂtc/USDT"])
def test_an_unknown_symbol_format_is_400_saying_what_is_accepted(client: TestClient, symbol: str) -> None:
    response = predict(client, symbol, "1h")
    assert response.status_code == 400
    message = bento_error(response)
    assert SYMBOL_HELP in message or ("unknown quote currency" in message and "accepted: " in message)


def test_an_unknown_timeframe_is_400_listing_the_accepted_ones(client: TestClient) -> None:
    response = predict(client, BTC, "3h")
    assert response.status_code == 400
    assert validation_errors(response) == [("literal_error", ["timeframe"])]
    assert all(f"'{tf}'" in bento_error(response) for tf in TIMEFRAME_SECONDS)


def test_no_model_is_404_listing_the_models(client: TestClient) -> None:
    response = predict(client, SOL, "1h")
    assert response.status_code == 404
    message = bento_error(response)
    assert "no CNN-LSTM model for SOL/USDT 1h" in message
    assert all(f"{s} {tf}" in message for s, tf in WORLD_MODELS)


def test_too_few_candles_is_422_saying_found_and_needed_and_others_still_serve(
    client: TestClient, world: World
) -> None:
    path = store(world).path_for(EXCHANGE, BTC, "15m")
    with restored_file(path):
        # 50 bars ending one bar earlier: a candle whose signal is not cached yet
        store(world).replace(EXCHANGE, BTC, "15m", store(world).read(EXCHANGE, BTC, "15m").iloc[-51:-1])
        response = predict(client, BTC, "15m")
        assert response.status_code == 422
        assert f"found 50 closed candles, need at least {MIN_CANDLES}" in bento_error(response)
        assert predict(client, BTC, "1h").status_code == 200
        assert predict(client, ETH, "1h").status_code == 200
    assert predict(client, BTC, "15m").status_code == 200


def test_too_few_candles_for_the_policy_is_422(client: TestClient, world: World) -> None:
    path = store(world).path_for(EXCHANGE, SOL, "1h")
    with restored_file(path):
        store(world).replace(EXCHANGE, SOL, "1h", store(world).read(EXCHANGE, SOL, "1h").iloc[-40:])
        response = post(client, "/action", {"symbol": SOL})
        assert response.status_code == 422
        assert "found 40 closed candles, need at least" in bento_error(response)
    assert post(client, "/action", {"symbol": SOL}).status_code == 200


def test_an_empty_candle_file_is_422_not_a_server_error(client: TestClient, world: World) -> None:
    needed = f"need at least {MIN_CANDLES} for a signal, {PPO_MIN_CANDLES} for an action"
    for symbol, timeframe, route, body in ((BTC, "15m", "/predict", {"timeframe": "15m"}), (SOL, "1h", "/action", {})):
        path = store(world).path_for(EXCHANGE, symbol, timeframe)
        with restored_file(path):
            store(world).replace(EXCHANGE, symbol, timeframe, empty_candles())
            response = post(client, route, {"symbol": symbol, **body})
            assert response.status_code == 422
            assert bento_error(response) == f"found 0 closed {timeframe} candles for {symbol} (synthetic); {needed}"
        assert post(client, route, {"symbol": symbol, **body}).status_code == 200


def test_nan_in_stored_candles_is_422_naming_the_bar(client: TestClient, world: World) -> None:
    path = store(world).path_for(EXCHANGE, BTC, "15m")
    with restored_file(path):
        candles = store(world).read(EXCHANGE, BTC, "15m")
        row = len(candles) - 3
        candles.loc[row, "close"] = np.nan
        candles.to_parquet(path, index=False)  # straight to the file: the store would refuse it
        response = predict(client, BTC, "15m")
        assert response.status_code == 422
        message = bento_error(response)
        assert "NaN in ['close']" in message
        assert candles["timestamp"].iloc[row].isoformat() in message  # the bar, by its time
        assert predict(client, BTC, "1h").status_code == 200


def test_a_missing_candle_file_is_404_naming_what_is_missing(client: TestClient, world: World) -> None:
    path = store(world).path_for(EXCHANGE, BTC, "15m")
    with restored_file(path):
        path.unlink()
        response = predict(client, BTC, "15m")
        assert response.status_code == 404
        message = bento_error(response)
        assert "no 15m candles for BTC/USDT on synthetic" in message and "signals sync" in message
        assert predict(client, BTC, "1h").status_code == 200
    assert predict(client, BTC, "15m").status_code == 200


# --- other servers: live candles through ccxt, a tampered model ------------------------------------------
def _live_frames(world: World, symbols: Sequence[str], now: pd.Timestamp) -> dict[tuple[str, str], pd.DataFrame]:
    """The world's 1h candles moved in time so that the last one is the bar forming now."""
    frames = {}
    for symbol in symbols:
        candles = store(world).read(EXCHANGE, symbol, "1h")
        candles["timestamp"] += now.floor("1h") - candles["timestamp"].iloc[-1]
        frames[(symbol, "1h")] = candles
    return frames


def test_exchange_down_is_503_with_retry_after_while_the_rest_serves(world: World, tmp_path: Path) -> None:
    # The exchange and the server both stand half-way through an hour (the server's clock shifted there, tests only):
    # the live cache's candle stays current for the whole test, whatever the time of day, with no wait for a close.
    real = pd.Timestamp.now(tz="UTC")
    now = real.floor("1h") + pd.Timedelta(minutes=30)
    frames = _live_frames(world, (BTC, ETH, SOL), now)
    sol = frames[(SOL, "1h")]
    frames[(SOL, "1h")] = sol.assign(timestamp=sol["timestamp"] - pd.Timedelta(days=60))  # delisted long ago
    with LocalExchange(frames=frames, now=now) as exchange:
        live = {
            "SIGNALS_CLOCK_OFFSET_S": str((now - real).total_seconds()),
            "SIGNALS_SOURCE": "live",
            "SIGNALS_EXCHANGE": "binance",
            "SIGNALS_EXCHANGE_URL": exchange.url,
            "SIGNALS_DATA_DIR": str(tmp_path / "live"),
            "SIGNALS_EXCHANGE_RETRIES": "1",
            "SIGNALS_EXCHANGE_BACKOFF_S": "0.01",
            "SIGNALS_EXCHANGE_TIMEOUT_MS": "500",
            "SIGNALS_WARM_UP": "false",  # a pair not cached yet meets the exchange (at start every pair is cached)
        }
        with environment(live), another_server() as server:
            healthy = predict(server, "BTCUSDT", "1h")
            assert healthy.status_code == 200, healthy.text
            signal = healthy.json()
            last_closed = now.floor("1h") - timeframe_delta("1h")
            assert signal["data_source"] == "ccxt:binance" and signal["stale"] is False
            assert stamp(signal["candle_time"]) == last_closed
            btc = frames[(BTC, "1h")]
            assert signal["current_price"] == float(btc.loc[btc["timestamp"] == last_closed, "close"].iloc[0])
            assert CandleStore(tmp_path / "live").last_timestamp("binance", BTC, "1h") == last_closed

            for _ in range(2):  # nothing recent on the exchange: 422 each time (nothing cached), never a 500
                empty = post(server, "/action", {"symbol": SOL})
                assert empty.status_code == 422
                assert bento_error(empty).startswith("found 0 closed 1h candles for SOL/USDT (ccxt:binance)")

            exchange.fail_next(100, 503)
            down = predict(server, ETH, "1h")  # not cached yet: it needs the exchange
            assert down.status_code == 503
            assert down.headers["Retry-After"].isdigit()
            message = bento_error(down)
            assert "binance unavailable for ETH/USDT 1h after 2 attempt(s)" in message and "retry later" in message
            assert server.post("/models", json={}).status_code == 200
            nothing = post(server, "/batch", {"timeframe": "1h", "symbols": ["ETHUSDT"]})  # every pair failed
            assert nothing.status_code == 503 and nothing.headers["Retry-After"].isdigit()
            assert "no pair could be answered: ETHUSDT 1h: binance unavailable" in bento_error(nothing)
            assert predict(server, BTC, "1h").json() == signal  # its candle is cached until the next one closes
            exchange.fail_next(0)
            assert predict(server, ETH, "1h").status_code == 200


def test_a_tampered_weights_file_makes_that_model_503_and_the_others_serve(world: World) -> None:
    """Every stored version of the model tampered: no earlier version to fall back to (tests/unit/serving covers
    the fallback), so that model answers 503 naming the file, and the others serve."""
    name = model_name(ETH, "1h")
    files = [Path(m.path) / WEIGHTS_FILE for m in bentoml.models.list() if m.tag.name == name]
    originals = {path: (path.read_bytes(), path.stat().st_mode) for path in files}
    try:
        for path, (original, _) in originals.items():
            path.chmod(0o644)
            path.write_bytes(original[:-16] + bytes(b ^ 0xFF for b in original[-16:]))
        with another_server() as server:  # a new service instance verifies its models again
            response = predict(server, ETH, "1h")
            assert response.status_code == 503
            assert "Retry-After" in response.headers
            message = bento_error(response)
            assert f"model {model_name(ETH, '1h')}" in message and "'weights.safetensors' fails its SHA-256" in message
            assert predict(server, BTC, "1h").status_code == 200
            eth = {m["name"]: m for m in server.post("/models", json={}).json()}[model_name(ETH, "1h")]
            assert eth["status"] == "unavailable" and WEIGHTS_FILE in eth["error"]
            compat = server.get("/api/predictions/ETH-USDT", params={"timeframe": "1h"})
            assert compat.status_code == 503 and "Retry-After" in compat.headers
            assert "'weights.safetensors' fails its SHA-256" in compat_error(compat)
            health = server.get("/api/v1/prediction/model/health").json()  # the policy's health; it still serves
            assert health["status"] == "healthy" and health["unavailable"] == [model_name(ETH, "1h")]
            batch = post(server, "/batch", {"timeframe": "1h"}).json()
            assert [s["symbol"] for s in batch["signals"]] == [BTC]
            assert [(e["symbol"], e["status"]) for e in batch["errors"]] == [(ETH, 503)]
    finally:
        for path, (original, mode) in originals.items():
            path.write_bytes(original)
            path.chmod(mode)


def test_with_a_signing_key_an_edited_verdict_makes_that_model_503_and_the_others_serve(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Every model signed, then ETH 1h's `model.yaml` edited (negative edge -> positive, a threshold added): the
    signature covers the whole metadata, so that pair answers 503 naming the metadata keys, `/models` names it,
    its refusal is logged once, and the other pairs serve."""
    from signals.models.registry import SIGNATURE_FILE, sign_model

    key = "the-servers-signing-key"
    name = model_name(ETH, "1h")
    models = bentoml.models.list()
    yamls = {
        Path(m.path) / "model.yaml": (Path(m.path) / "model.yaml").read_bytes() for m in models if m.tag.name == name
    }
    try:
        for model in models:
            sign_model(str(model.tag), key)
        for path in yamls:
            info = yaml.safe_load(path.read_text())
            info["metadata"]["edge"]["verdict"] = "positive"
            info["metadata"]["threshold"] = 0.30
            path.chmod(0o644)
            path.write_text(yaml.safe_dump(info, sort_keys=False))
        with environment({"SIGNALS_MODEL_SIGNING_KEY": key}), another_server() as server:
            for _ in range(3):
                response = predict(server, ETH, "1h")
                assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
            message = bento_error(response)
            assert f"model {name}" in message and "does not match its signature" in message
            assert "metadata 'edge'" in message and "metadata 'threshold'" in message
            assert predict(server, BTC, "1h").status_code == 200
            assert predict(server, BTC, "15m").status_code == 200
            listed = {m["name"]: m for m in server.post("/models", json={}).json()}
            assert listed[name]["status"] == "unavailable" and "metadata 'edge'" in listed[name]["error"]
            assert {m["status"] for n, m in listed.items() if n != name} == {"ok"}
        refusals = [
            r
            for r in caplog.records
            if r.name == "signals.serving.catalog" and "does not match its signature" in r.message
        ]
        assert len(refusals) == len(yamls), [r.message for r in refusals]  # one line per refused version
    finally:
        for path, original in yamls.items():
            path.write_bytes(original)
        for model in models:
            (Path(model.path) / SIGNATURE_FILE).unlink(missing_ok=True)


# --- the track record over HTTP --------------------------------------------------------------------------------
def test_served_signals_are_recorded_and_can_be_listed_scored_and_replayed(client: TestClient, world: World) -> None:
    answer = predict(client, ETH, "1h")
    signal, request_id = answer.json(), answer.headers["x-request-id"]
    assert len(request_id) == 32 and int(request_id, 16)  # the request's trace id, the one its runner call carried
    status = client.post("/status", json={}).json()
    assert status["ledger"]["status"] == "ok" and status["ledger"]["backend"] == "sqlite"
    assert status["versions"]["served"][model_name(ETH, "1h")] == signal["model_version"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the writer records in the background
        history = post(client, "/history", {"symbol": "ETHUSDT", "timeframe": "1h"}).json()
        if history["items"]:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the served signal was not recorded within 10 s: {history}")
    item = history["items"][0]
    assert history["symbol"] == ETH and item["mode"] == "live" and item["signal"] == signal | {"stale": False}
    with sqlite3.connect(world.data_dir / "signals.db") as db:  # the request that computed it, or the start's warm-up
        (recorded_by,) = db.execute(
            "SELECT request_id FROM signal_records WHERE symbol = ? AND timeframe = '1h'", (ETH,)
        ).fetchone()
    assert recorded_by in (None, request_id)  # which came first varies; tests/e2e/test_deploy.py pins the request
    assert item["outcome"] is None  # its horizon has not ended in the store yet

    replay = post(client, "/replay", {"symbol": ETH, "timeframe": "1h", "candle_time": signal["candle_time"]})
    assert replay.status_code == 200, replay.text
    body = replay.json()
    assert body["match"] is True and body["features_match"] is True and body["differences"] == []
    assert body["rebuilt"]["probabilities"] == signal["probabilities"]

    card = post(client, "/scorecard", {"timeframe": "1h"})
    assert card.status_code == 200, card.text
    assert card.json()["verdict"] == "insufficient_data" and card.json()["n"] == 0

    models = {m["name"]: m for m in client.post("/models", json={}).json()}
    figures = models[model_name(ETH, "1h")]["metrics"]
    assert figures["live"]["recorded"] >= 1 and figures["live"]["mode"] == "live"
    assert set(figures["by_mode"]) == {"live"} and figures["by_mode"]["live"] == figures["live"]

    reloaded = client.post("/admin/reload", json={})
    assert reloaded.status_code == 200 and reloaded.json()["changed"] == {}


def test_a_computed_signal_is_recorded_under_the_x_request_id_of_the_request_that_computed_it(
    trained_world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """X-Request-ID is the request's trace id (BentoML's OpenTelemetry span) and the ledger row names it; BentoML's
    access log is off by default (SIGNALS_ACCESS_LOG) and that changes neither."""
    built = copy_world(trained_world, tmp_path / "data")
    with environment({**built.env(), "SIGNALS_WARM_UP": "false"}), another_server() as server:
        with caplog.at_level("INFO", logger="bentoml.access"):
            answer = predict(server, ETH, "1h")  # nothing computed at start: this request computes and records
        assert answer.status_code == 200, answer.text
        assert not [r for r in caplog.records if r.name == "bentoml.access"]
        request_id = answer.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id) and request_id != "0" * 32
        ops = service_module.ops_slot.current()  # this server's: the last one bound
        assert ops is not None and ops.writer is not None and ops.writer.flush()
        with sqlite3.connect(built.data_dir / "signals.db") as db:
            rows = db.execute(
                "SELECT request_id FROM signal_records WHERE symbol = ? AND timeframe = '1h'", (ETH,)
            ).fetchall()
    assert rows == [(request_id,)]


def test_rollback_honours_the_version_and_force_it_is_given(client: TestClient) -> None:
    model = model_name(BTC, "1h")
    never = post(client, "/admin/rollback", {"model": model, "version": "nope"})
    assert never.status_code == 409 and "never served version 'nope'" in bento_error(never)
    forced = post(client, "/admin/rollback", {"model": model, "version": "nope", "force": True})
    assert forced.status_code == 404 and "has no version 'nope'" in bento_error(forced)


def test_docs_json_names_the_model_of_every_json_answer(client: TestClient) -> None:
    document = client.get("/docs.json").json()
    schemas_published = document["components"]["schemas"]
    loose = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation["responses"]["200"].get("content", {}).get("application/json")
            if content is None or path == "/api/stream":  # text answers; the stream is text/event-stream
                continue
            schema = content["schema"].get("items", content["schema"])
            ref = schema.get("$ref", "")
            if not ref or not schemas_published[ref.rsplit("/", 1)[1]].get("properties"):
                loose.append(f"{method} {path}")
    assert loose == []


def test_status_reload_and_scorecard_answer_their_published_models(client: TestClient) -> None:
    status = client.post("/status", json={})
    assert status.status_code == 200, status.text
    body = schemas.StatusResponse.model_validate(status.json())
    assert {"cnn_lstm", "ppo", "ledger", "versions"} <= set(status.json()) and "error" not in body.cnn_lstm
    assert body.versions.served[model_name(ETH, "1h")]
    reloaded = schemas.ReloadResponse.model_validate(client.post("/admin/reload", json={}).json())
    assert reloaded.served == body.versions.served and reloaded.changed == {}
    card = client.post("/scorecard", json={"timeframe": "4h"}).json()
    assert card == {
        "filters": {"timeframe": "4h"},
        "modes": [],
        "n": 0,
        "verdict": "insufficient_data",
        "reason": "no resolved signal matches the filters",
        "edge": None,
        "calls": None,
        "accuracy": None,
    }


def test_track_record_requests_say_what_is_wrong(client: TestClient) -> None:
    missing = post(client, "/replay", {"symbol": BTC, "timeframe": "1h", "candle_time": "2020-01-01T00:00:00Z"})
    assert missing.status_code == 404 and "no recorded signal" in bento_error(missing)
    bad = post(client, "/scorecard", {"mode": "sometimes"})
    assert bad.status_code == 400
    assert post(client, "/history", {"symbol": "NOPE!"}).status_code == 400


def wire_times(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) of a JSON answer that is a time: an ISO-looking string, or a number under a time key."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, int | float) and not isinstance(item, bool) and key.endswith(("_at", "time")):
                yield f"{path}.{key}", item
            yield from wire_times(item, f"{path}.{key}")
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from wire_times(item, f"{path}[{number}]")
    elif isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10:11] == "T":
        yield path, value


def test_every_time_on_the_wire_is_iso_8601_utc_with_z(client: TestClient) -> None:
    """One time format (README, "Times"): no `+00:00`, no epoch numbers beside `Z` on the contract's routes."""
    assert post(client, "/admin/refresh", {"timeframe": "1h"}).status_code == 200  # the writer's times, a history
    answers = {
        route: post(client, route, body).json()
        for route, body in (
            ("/predict", {"symbol": BTC, "timeframe": "1h"}),
            ("/status", {}),
            ("/models", {}),
            ("/scorecard", {"timeframe": "1h"}),
            ("/history", {"symbol": BTC, "timeframe": "1h", "limit": 3}),
        )
    }
    found = [(route, *item) for route, answer in answers.items() for item in wire_times(answer)]
    assert any(route == "/status" and "writer.last_success_at" in path for route, path, _ in found)
    assert any(route == "/history" for route, *_ in found)
    wrong = [item for item in found if not (isinstance(item[2], str) and item[2].endswith("Z"))]
    assert wrong == []


def test_the_docs_page_loads_nothing_remote_and_the_document_says_what_and_which_version(client: TestClient) -> None:
    from importlib.metadata import version

    page = client.get("/docs")
    assert page.status_code == 200 and "googletagmanager" not in page.text
    loads = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', page.text)
    assert loads and not [url for url in loads if url.startswith(("http:", "https:", "//"))]
    for url in loads:  # served by this server (BentoML's Swagger UI assets)
        assert client.get("/" + url.removeprefix("./")).status_code == 200, url
    info = client.get("/docs.json").json()["info"]
    assert info["version"] == version("trading-signals")
    assert info["description"].endswith(".") and "Times are ISO-8601 UTC with `Z`" in info["description"]


# --- the edge: closed by default, one shape ---------------------------------------------------------------------
def test_without_keys_admin_routes_refuse_other_machines_and_reads_stay_open(client: TestClient) -> None:
    remote = TestClient(client.app, base_url="http://127.0.0.1:3000", client=("203.0.113.9", 40000))
    for route, body in (("/admin/reload", {}), ("/admin/promote", {"model": "x", "force": True})):
        refused = remote.post(route, json=body)
        assert refused.status_code == 403 and "SIGNALS_API_KEYS" in bento_error(refused), route
    assert remote.post("/predict", json={"symbol": BTC, "timeframe": "1h"}).status_code == 200
    assert client.post("/admin/reload", json={}).status_code == 200  # this machine


def test_the_no_cors_post_a_page_can_send_is_refused_before_any_route_runs(client: TestClient) -> None:
    """`fetch("http://127.0.0.1:3000/admin/refresh", {method: "POST", mode: "no-cors", body})`: text/plain, or
    no type at all for a Blob; refused whatever the Origin, so the refresh never runs."""
    body = b'{"timeframe": "1h"}'
    before = client.post("/status", json={}).json()["ledger"]["records"]
    for headers in ({"content-type": "text/plain;charset=UTF-8"}, {}, {"origin": "https://evil.example"}):
        refused = client.post("/admin/refresh", content=body, headers=headers)
        assert refused.status_code in (403, 415), refused.text
        bento_error(refused)
    assert client.post("/status", json={}).json()["ledger"]["records"] == before


def test_other_hosts_and_origins_are_refused_the_websocket_before_its_handshake(client: TestClient) -> None:
    rebound = client.post("/predict", json={"symbol": BTC, "timeframe": "1h"}, headers={"host": "evil.example"})
    assert rebound.status_code == 400 and "SIGNALS_ALLOWED_HOSTS" in bento_error(rebound)
    assert client.get("/livez", headers={"host": "10.0.0.7:3000"}).status_code == 200  # a kubelet's probe
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect("ws://127.0.0.1:3000/ws/evil", headers={"origin": "https://evil.example"}):
            pass
    assert denied.value.status_code == 403 and "SIGNALS_ALLOWED_ORIGINS" in bento_error(denied.value)


@pytest.mark.parametrize("path", ["/livez/x", "/metrics/x", "/readyz/../x", "/healthz/x"])
def test_the_frameworks_404s_are_in_the_one_shape(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404 and bento_error(response).startswith("no route GET")


def test_status_names_no_file_and_no_host(client: TestClient, world: World) -> None:
    status = client.post("/status", json={})
    assert status.status_code == 200
    text = status.text
    assert status.json()["ledger"]["backend"] == "sqlite" and "url" not in status.json()["ledger"]
    assert str(world.data_dir) not in text and str(Path.home()) not in text and "sqlite:" not in text
    assert not re.search(r'"/[A-Za-z]', text), "an absolute path in /status"
    assert not re.search(r"(localhost|127\.0\.0\.1|\d+\.\d+\.\d+\.\d+):\d{2,5}", text), "a host:port in /status"


def test_the_stream_is_documented_as_server_sent_events(client: TestClient) -> None:
    stream = client.get("/docs.json").json()["paths"]["/api/stream"]["get"]
    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]
