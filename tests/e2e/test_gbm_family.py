"""The GBM as the family seam's first real user: found by its entry point (pyproject.toml), trained by `signals
train gbm` with the market context, evaluated, served by the families runner, recorded and replayed bit for bit,
and served or shadowed against the CNN-LSTM by the one rule (`serving.catalog.FAMILY_RULE`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from signals.features.registry import CONTEXT_WIDTH
from signals.models import plugin
from signals.models.registry import list_models
from tests.support.fakes import separate_metrics
from tests.support.families import cli, train_family
from tests.support.servers import local_client
from tests.support.world import World, copy_world, environment

FAMILY = "gbm"
BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"


@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = copy_world(trained_world, tmp_path_factory.mktemp("gbm-world"))
    with environment(built.env()):  # its models leave the shared store at the module's end (tests/conftest.py)
        yield built


@pytest.fixture(scope="module")
def trained(world: World) -> list[dict[str, Any]]:
    return train_family(FAMILY, world)


def test_the_gbm_is_found_by_its_entry_point() -> None:
    found = plugin.discover()
    assert FAMILY in found.names and plugin.reads_context(found.plugins[FAMILY])


def test_trained_with_the_context_and_evaluated(world: World, trained: list[dict[str, Any]]) -> None:
    models = list(list_models(FAMILY))
    assert {m.info.labels["symbol"] for m in models} == {BTC, ETH, SOL}
    meta = models[0].info.metadata
    assert set(meta["sha256"]) == {"model.txt", "gbm.json", "calibration.json"}
    assert "rank_return_16" in meta["feature_names"] and meta["training"]["pooled_symbols"] == [BTC, ETH, SOL]
    assert meta["walk_forward"]["folds"] and meta["edge"]["rule"]["text"]
    result = cli(
        "evaluate", "--timeframes", "1h", "--data-dir", str(world.data_dir), "--exchange", "synthetic", "--json"
    )
    assert result.exit_code == 0, result.output
    assert {str(m.tag) for m in models} <= {row["model"] for row in json.loads(result.stdout)}


def test_served_recorded_replayed_bit_for_bit_and_chosen_by_the_rule(
    world: World, trained: list[dict[str, Any]]
) -> None:
    from service import SignalService

    with separate_metrics(), local_client(SignalService.to_asgi()) as client:
        answer = client.post("/predict", json={"symbol": SOL, "timeframe": "1h"})  # only the GBM has SOL 1h
        assert answer.status_code == 200, answer.text
        signal = answer.json()
        assert signal["family"] == FAMILY, signal
        infos = [i for i in client.post("/models", json={}).json() if (i["symbol"], i["timeframe"]) == (ETH, "1h")]
        assert sorted(i["role"] for i in infos) == ["served", "shadow"]
        assert {i["family"] for i in infos} == {"cnn-lstm", FAMILY}
        skills = {i["family"]: i["metrics"]["walk_forward"]["log_loss_skill"]["value"] for i in infos}
        served = next(i for i in infos if i["role"] == "served")
        assert skills[served["family"]] == max(skills.values()) and "log-loss skill" in served["note"]
        summary = client.post("/summary", json={"symbol": ETH, "timeframes": ["1h"]}).json()
        assert summary["signals"]["1h"]["family"] == served["family"]

        history: dict[str, Any] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the writer records in the background
            history = client.post("/history", json={"symbol": SOL, "timeframe": "1h"}).json()
            if history["items"]:
                break
            time.sleep(0.05)
        assert history["items"] and history["items"][0]["signal"]["family"] == FAMILY
        replay = client.post("/replay", json={"symbol": SOL, "timeframe": "1h", "candle_time": signal["candle_time"]})
        assert replay.status_code == 200, replay.text
        body = replay.json()
        assert body["match"] is True and body["features_match"] is True and body["differences"] == [], body
        assert body["rebuilt"]["probabilities"] == signal["probabilities"]


def test_the_served_context_is_the_training_context(world: World, trained: list[dict[str, Any]]) -> None:
    """The window the server builds at the last candle equals, bit for bit, the one training built for that bar."""
    import asyncio

    from signals.core.settings import get_settings
    from signals.data.store import CandleStore
    from signals.features.cnn import SERVING_TAIL
    from signals.features.context import higher_candles
    from signals.models.cnn_lstm.dataset import build_samples
    from signals.serving.inputs import ModelInputs
    from signals.serving.market import MarketData, MarketSnapshot

    store = CandleStore(world.data_dir)
    candles = {s: store.read("synthetic", s, "1h") for s in (BTC, ETH, SOL)}
    higher = higher_candles(lambda s, tf: store.read_or_empty("synthetic", s, tf), candles, "1h")
    samples = build_samples(candles, "1h", 4, 1.5, context=True, higher=higher)
    last = int(np.flatnonzero(samples.pair == samples.symbols.index(ETH))[-1])  # the newest labelled bar
    eth = candles[ETH]
    upto = eth[eth["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64) <= samples.time_ns[last]]
    snapshot = MarketSnapshot(upto.iloc[-SERVING_TAIL:].reset_index(drop=True), "synthetic", None)
    meta = next(m for m in list_models(FAMILY) if m.info.labels["symbol"] == ETH).info.metadata
    served = asyncio.run(
        ModelInputs(MarketData(get_settings())).window(FAMILY, meta, ETH, "1h", snapshot, history=True)
    )
    assert served.shape == (60, CONTEXT_WIDTH)
    trained_window = samples.windows(np.array([last]))[0]
    np.testing.assert_array_equal(served[:, 15:], trained_window[:, 15:])  # the context, NaN where unknown


def test_a_refresh_serves_every_pair_the_training_context(world: World, trained: list[dict[str, Any]]) -> None:
    """Live, the context of a timeframe is computed once for every pooled pair at the candle (`context_windows`,
    the snapshots reading the longer tails in the same file read); each pair's window equals the training
    function's rows over the whole stored history, bit for bit."""
    import asyncio

    import pandas as pd

    from signals.core.settings import get_settings
    from signals.data.store import CandleStore
    from signals.features.context import context_matrix, higher_candles
    from signals.serving.inputs import ModelInputs
    from signals.serving.market import MarketData

    store = CandleStore(world.data_dir)
    candles = {s: store.read("synthetic", s, "1h") for s in (BTC, ETH, SOL)}
    higher = higher_candles(lambda s, tf: store.read_or_empty("synthetic", s, tf), candles, "1h")
    end = min(frame["timestamp"].iloc[-1] for frame in candles.values()) + pd.Timedelta(hours=1, seconds=1)
    market = MarketData(get_settings(), clock=lambda: end)
    inputs = ModelInputs(market)
    inputs.expect({FAMILY: ["1h"]})
    metas = {m.info.labels["symbol"]: m.info.metadata for m in list_models(FAMILY)}

    async def windows() -> dict[str, np.ndarray]:
        snapshots = {s: await market.snapshot(s, "1h") for s in metas}
        assert all(snapshot.history is not None for snapshot in snapshots.values())  # one read for both
        return {s: await inputs.window(FAMILY, metas[s], s, "1h", snapshots[s]) for s in metas}

    served = asyncio.run(windows())
    assert sorted(served) == [BTC, ETH, SOL]
    for symbol, window in served.items():
        mine = {tf: frames[symbol] for tf, frames in higher.items() if symbol in frames}
        full = context_matrix(symbol, "1h", candles, mine)[-60:]
        assert window[:, 15:].tobytes() == full.astype(np.float32).tobytes(), symbol
