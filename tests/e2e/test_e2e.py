"""End to end: a real `bentoml serve` on 127.0.0.1 with models trained into the test store.

One server for the session (`e2e_server` in tests/e2e/conftest.py, shared with test_readme.py). The signal cache
is off so that every request is cold and reaches the runner: that is what the batching proof needs.
"""

from __future__ import annotations

import asyncio
import time

import bentoml
import httpx
import numpy as np
import pytest

from signals.data.store import CandleStore
from signals.features.cnn import training_windows
from signals.models.cnn_lstm.artifact import load_cnn_lstm, model_name
from tests.support.servers import Server
from tests.support.world import EXCHANGE, World

pytestmark = pytest.mark.slow
CONCURRENT = 32


@pytest.fixture(scope="module")
def world(e2e_world: World) -> World:
    return e2e_world


@pytest.fixture(scope="module")
def server(e2e_server: Server) -> str:
    return e2e_server.url


def test_the_access_log_turned_on_names_each_request_by_its_x_request_id(e2e_server: Server) -> None:
    """SIGNALS_ACCESS_LOG=true (the shared server's) brings back BentoML's line per request, with the trace id that
    X-Request-ID carries."""
    answer = httpx.post(f"{e2e_server.url}/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}, timeout=60)
    assert answer.status_code == 200, answer.text
    mark = f"trace={answer.headers['x-request-id']}"
    deadline = time.monotonic() + 10  # written by the worker just after the answer, through the server's stdout
    while not (lines := [line for line in e2e_server.log_tail(200_000).splitlines() if mark in line]):
        assert time.monotonic() < deadline, f"no access line with {mark}: {e2e_server.log_tail()}"
        time.sleep(0.05)
    assert any("path=/predict" in line and "status=200" in line for line in lines), lines


def test_generated_client_serves_every_api(server: str) -> None:
    with bentoml.SyncHTTPClient(server, timeout=60) as client:
        signal_ = client.predict(symbol="BTCUSDT", timeframe="1h")
        batch = client.batch(timeframe="1h")
        summary = client.summary(symbol="BTC-USDT")
        action = client.action(
            symbol="ETH/USDT", position={"side": "long", "entry_price": 2000.0}, include_explanation=True
        )
        models = client.models()
    assert signal_["symbol"] == "BTC/USDT" and signal_["timeframe"] == "1h"
    assert signal_["direction"] in ("LONG", "SHORT", "NO_TRADE")
    assert signal_["candle_time"].endswith("Z") and signal_["data_source"] == EXCHANGE
    assert {s["symbol"] for s in batch["signals"]} == {"BTC/USDT", "ETH/USDT"}
    assert set(summary["signals"]) == {"15m", "1h"}
    assert {e["timeframe"] for e in summary["errors"]} == {"4h", "1d"}
    assert action["action_name"] in ("HOLD", "BUY", "SELL") and action["explanation"]["position"] == "long"
    assert {m["name"] for m in models} >= {"cnn-lstm-btc-usdt-1h", "cnn-lstm-eth-usdt-1h", "ppo-1h"}


def test_compatibility_routes_and_health_answer_over_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as http:
        one = http.get("/api/predictions/BTCUSDT", params={"timeframe": "15m"}).json()
        assert one["success"] is True and one["prediction"]["timeframe"] == "15m"
        assert http.get("/api/predictions", params={"timeframe": "1h"}).json()["count"] == 2
        assert http.get("/api/predictions/BTCUSDT/summary").json()["symbol"] == "BTCUSDT"
        assert http.get("/api/v1/prediction/predict/BTCUSDT").json()["action_name"] in ("HOLD", "BUY", "SELL")
        assert http.get("/api/v1/prediction/model/info").json()["model_type"] == "PPO"
        assert http.get("/api/v1/prediction/model/health").json()["status"] == "healthy"
        assert http.get("/livez").status_code == 200
        assert "bentoml" in http.get("/metrics").text
        refused = http.post("/predict", json={"symbol": "BTC/XYZ", "timeframe": "1h"})
        assert refused.status_code == 400 and "unknown quote currency" in refused.text


def test_concurrent_cold_requests_form_batches_and_match_one_at_a_time_answers(server: str) -> None:
    pairs = [("BTC/USDT", "15m"), ("BTC/USDT", "1h"), ("ETH/USDT", "1h")]
    bodies = [{"symbol": s, "timeframe": tf} for s, tf in pairs] * (CONCURRENT // len(pairs) + 1)
    bodies = bodies[:CONCURRENT]

    async def fire() -> list[dict]:
        async with httpx.AsyncClient(base_url=server, timeout=60) as http:
            responses = await asyncio.gather(*(http.post("/predict", json=body) for body in bodies))
        assert [r.status_code for r in responses] == [200] * CONCURRENT
        return [r.json() for r in responses]

    with httpx.Client(base_url=server, timeout=30) as http:
        before = http.post("/status", json={}).json()["cnn_lstm"]["batching"]
        concurrent = asyncio.run(fire())
        after = http.post("/status", json={}).json()["cnn_lstm"]["batching"]
        alone = {(b["symbol"], b["timeframe"]): http.post("/predict", json=b).json() for b in bodies[:3]}

    new_calls = after["calls"] - before["calls"]
    new_items = after["items"] - before["items"]
    # The counters count what went through the batching queue: a call that found the runner idle (the first one,
    # at least) took the runner's method without a queue (`SignalEngine.batching_path`).
    assert 0 < new_items <= CONCURRENT
    assert new_calls < new_items, f"no batch larger than 1 formed: {after['histogram']}"
    assert after["max_batch_size"] > 1
    for answer in concurrent:
        reference = alone[(answer["symbol"], answer["timeframe"])]
        got, want = answer["probabilities"], reference["probabilities"]
        assert got == pytest.approx(want, abs=1e-5)
        assert answer["candle_time"] == reference["candle_time"]


def test_served_window_equals_the_training_window(server: str, world: World) -> None:
    """Predict over HTTP, and call the stored model directly on the training-path window for the same candle."""
    candles = CandleStore(world.data_dir).read(EXCHANGE, "BTC/USDT", "1h")
    windows, ends = training_windows(candles)
    assert ends[-1] == candles["timestamp"].iloc[-1]
    direct = load_cnn_lstm(f"{model_name('BTC/USDT', '1h')}:latest").predict_proba(windows[-1:])[0]
    with httpx.Client(base_url=server, timeout=30) as http:
        served = http.post("/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}).json()
    probabilities = [served["probabilities"][name] for name in ("SHORT", "NO_TRADE", "LONG")]
    np.testing.assert_allclose(probabilities, direct, atol=1e-6)
