"""Runners in process: grouping by model, request order, NaN rows, a tampered model refused, devices, PPO parity.

Tiny models are trained into the session's BENTOML_HOME (a second or two each); the runner classes are
instantiated directly (`Service.inner(settings=...)`), so these tests run the loading and batching code
without a server. One slow test serves both runners behind a stand-in front service with a real
`bentoml serve` and checks what crosses the `bentoml.depends` HTTP hop: batches, NaN rows, the row types.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from signals.contract.wire import NO_ACTION, ObservationRequest, WindowRequest
from signals.core.errors import InvalidInput
from signals.core.settings import Settings
from signals.features.ppo import PPO_OBS_SHAPE
from signals.models.cnn_lstm import artifact as cnn_artifact_module
from signals.models.cnn_lstm.artifact import WEIGHTS_FILE, load_cnn_lstm, model_name
from signals.models.device import configure_torch, resolve_device
from signals.models.local import group_by_model
from signals.models.ppo.artifact import import_ppo, load_ppo
from signals.models.ppo.training import PpoHyperParameters, train_ppo
from signals.models.registry import StoredModel
from signals.runners.cnn_lstm import CnnLstmRunner
from signals.runners.common import batching_options, declare_models, model_attr
from signals.runners.ppo import PpoRunner
from tests.support.factories import random_walk_candles
from tests.support.models import tiny_cnn_lstm
from tests.support.paths import REPO_ROOT
from tests.support.probe import fresh_python
from tests.support.servers import stop

torch.set_num_threads(1)

SYMBOLS = ("BTC/USDT", "ETH/USDT")
TAMPERED_SYMBOL = "XRP/USDT"
TF = "1h"


def train_tiny_cnn(symbol: str, timeframe: str = TF, seed: int = 0) -> StoredModel:
    return tiny_cnn_lstm(symbol, timeframe, seed=seed)


def train_tiny_ppo(timeframe: str = TF) -> StoredModel:
    histories = {"BTC/USDT": random_walk_candles(300, timeframe=timeframe, seed=5)}
    hyper = PpoHyperParameters(n_steps=64, batch_size=32, n_epochs=1)
    return import_ppo(train_ppo(histories, timeframe, timesteps=64, seed=0, hyper_parameters=hyper))


@pytest.fixture(scope="module")
def cnn_models() -> dict[str, StoredModel]:
    return {model_name(symbol, TF): train_tiny_cnn(symbol, seed=i) for i, symbol in enumerate(SYMBOLS)}


@pytest.fixture(scope="module")
def ppo_model() -> StoredModel:
    return train_tiny_ppo()


def settings(*symbols: str, device: str = "cpu") -> Settings:
    return Settings(universe=list(symbols), timeframes=[TF], device=device)


def windows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.02, (n, 60, 15)).astype(np.float32)


def test_group_by_model_keeps_first_seen_order_and_positions() -> None:
    groups = group_by_model(["b", "a", "b", "c", "a"])
    assert list(groups) == ["b", "a", "c"]
    assert [list(g) for g in groups.values()] == [[0, 2], [1, 4], [3]]


def test_cnn_runner_groups_by_model_keeps_order_and_matches_each_model_alone(
    cnn_models: dict[str, StoredModel],
) -> None:
    runner = CnnLstmRunner.inner(settings=settings(*SYMBOLS))
    assert set(runner.local.models) == set(cnn_models)
    names = list(cnn_models)
    # Interleaved models, plus one nobody trained, in one batch.
    order = [names[0], names[1], names[1], "cnn-lstm-doge-usdt-1h", names[0], names[1], names[0]]
    batch = windows(len(order))
    requests = [WindowRequest(model=m, window=w) for m, w in zip(order, batch, strict=True)]
    rows = np.asarray(asyncio.run(runner.predict(requests)))
    assert rows.shape == (len(order), 3)
    for position, name in enumerate(order):
        if name not in cnn_models:
            assert np.isnan(rows[position]).all()  # unknown model: NaN row, the rest of the batch answers
            continue
        alone = load_cnn_lstm(str(cnn_models[name].tag)).predict_proba(batch[position : position + 1])[0]
        np.testing.assert_allclose(rows[position], alone, rtol=1e-5, atol=1e-6)
        assert math.isclose(float(rows[position].sum()), 1.0, rel_tol=1e-5)
    status = runner.status()
    assert status.loaded == {name: str(stored.tag) for name, stored in cnn_models.items()}
    assert status.failed == {} and status.device == "cpu"
    assert status.batching.calls == 1 and status.batching.items == len(order)
    assert status.batching.histogram == {len(order): 1} and status.batching.max_batch_size == len(order)
    direct = asyncio.run(runner.predict_many(requests))
    np.testing.assert_array_equal(np.asarray(direct), rows)  # same answers without the queue
    assert runner.status().batching.calls == 1  # the counters count only what the dispatcher batched


def test_a_version_read_from_the_store_is_loaded_off_the_event_loop(cnn_models: dict[str, StoredModel]) -> None:
    """Models in memory answer on the runner's loop; a version named for the first time is loaded in a thread (the
    loop keeps answering meanwhile), then answers on the loop like the others."""
    runner = CnnLstmRunner.inner(settings=settings(SYMBOLS[0]))
    other = cnn_models[model_name(SYMBOLS[1], TF)]  # stored, but not served: not loaded at start
    tag = str(other.tag)
    assert runner.local.settled(model_name(SYMBOLS[0], TF)) and not runner.local.settled(tag)
    loaded_in: list[str] = []
    family_load = runner.local.family.load

    def load(key: str, device: torch.device) -> object:
        loaded_in.append("loop" if _on_a_loop() else "thread")
        return family_load(key, device)

    runner.local.family = dataclasses.replace(runner.local.family, load=load)
    batch = windows(2)
    first = asyncio.run(runner.predict_many([WindowRequest(model=tag, window=w) for w in batch]))
    assert loaded_in == ["thread"] and runner.local.settled(tag)
    again = asyncio.run(runner.predict_many([WindowRequest(model=tag, window=w) for w in batch]))
    assert loaded_in == ["thread"]  # in memory now: no second load
    expected = load_cnn_lstm(tag).predict_proba(batch)
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again, first)


def _on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_runner_answers_state_their_media_type() -> None:
    """BentoML derives a list answer's media type from a JSON schema it builds per response unless it is stated; the
    stated one is the one it derived, and the published schema is unchanged."""
    for runner, method in ((CnnLstmRunner, "predict"), (CnnLstmRunner, "predict_many"), (PpoRunner, "act")):
        spec = runner.apis[method].output_spec
        assert spec.media_type == "application/json"
        derived = spec.model_json_schema()
        assert derived["type"] == "array" and "content_type" not in json.dumps(derived)


def test_cnn_runner_loads_only_the_configured_universe(cnn_models: dict[str, StoredModel]) -> None:
    runner = CnnLstmRunner.inner(settings=settings(SYMBOLS[0]))
    assert list(runner.local.models) == [model_name(SYMBOLS[0], TF)]


def test_window_request_validates_shape_and_dtype() -> None:
    ok = WindowRequest.model_validate({"model": "m", "window": np.zeros((60, 15), np.float64).tolist()})
    assert ok.window.dtype == np.float32 and ok.window.shape == (60, 15)
    for bad in (np.zeros((59, 15)), np.zeros(900), [[1.0] * 15] * 60 + [[1.0]]):
        with pytest.raises(ValueError, match="shape"):
            WindowRequest(model="m", window=bad)


@pytest.fixture()
def tampered_model(cnn_models: dict[str, StoredModel]) -> Iterator[StoredModel]:
    """A stored model whose weights file no longer matches its SHA-256; restored afterwards for other tests."""
    stored = train_tiny_cnn(TAMPERED_SYMBOL, seed=9)
    path: Path = stored.file(WEIGHTS_FILE)
    original = path.read_bytes()
    path.write_bytes(original[:-8] + bytes(8))
    try:
        yield stored
    finally:
        path.write_bytes(original)


def test_tampered_model_is_left_out_and_named_while_others_load(
    cnn_models: dict[str, StoredModel], tampered_model: StoredModel
) -> None:
    runner = CnnLstmRunner.inner(settings=settings(*SYMBOLS, TAMPERED_SYMBOL))
    bad = model_name(TAMPERED_SYMBOL, TF)
    assert set(runner.local.models) == set(cnn_models)
    assert list(runner.status().failed) == [bad]
    message = runner.status().failed[bad]
    assert WEIGHTS_FILE in message and "SHA-256" in message and "ModelIntegrityError" in message
    rows = asyncio.run(
        runner.predict(
            [WindowRequest(model=bad, window=w) for w in windows(2)]
            + [WindowRequest(model=model_name(SYMBOLS[0], TF), window=windows(1)[0])]
        )
    )
    assert np.isnan(rows[0]).all() and np.isnan(rows[1]).all() and not np.isnan(rows[2]).any()


def test_resolve_device_auto_picks_cuda_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_resolve_device_cuda_without_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(InvalidInput, match="CUDA is not available.*SIGNALS_DEVICE=auto or cpu"):
        resolve_device("cuda")
    with pytest.raises(InvalidInput, match="not one of"):
        resolve_device("tpu")


def test_runner_refuses_cuda_setting_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidInput, match="CUDA is not available"):
        CnnLstmRunner.inner(settings=settings(*SYMBOLS, device="cuda"))
    with pytest.raises(InvalidInput, match="CUDA is not available"):
        PpoRunner.inner(settings=settings(device="cuda"))


def test_runner_auto_device_loads_models_on_cuda_when_available(
    cnn_models: dict[str, StoredModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU path on a CPU box: 'auto' with CUDA reported available hands `cuda` to the loader."""
    seen: list[torch.device] = []

    real_load = cnn_artifact_module.load_cnn_lstm

    def fake_load(tag: str, device: torch.device) -> object:
        seen.append(device)
        return real_load(tag, "cpu")  # what was asked for is recorded; the box has no GPU to load onto

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cnn_artifact_module, "load_cnn_lstm", fake_load)
    runner = CnnLstmRunner.inner(settings=settings(*SYMBOLS, device="auto"))
    assert runner.local.device == torch.device("cuda") and seen == [torch.device("cuda")] * len(cnn_models)


@pytest.mark.parametrize(("size", "batchable"), [(64, True), (2, True), (1, False)])
def test_batching_is_off_at_size_one(size: int, batchable: bool) -> None:
    """BentoML refuses max_batch_size 1, so 'batching off' is a non-batchable API (the benchmark's baseline)."""
    options = batching_options(Settings(max_batch_size=size))
    assert options["batchable"] is batchable and options["max_batch_size"] >= 2


def test_configure_torch_uses_one_thread_on_cpu() -> None:
    configure_torch(torch.device("cpu"))
    assert torch.get_num_threads() == 1


def test_model_attribute_names_are_identifiers() -> None:
    assert model_attr("cnn-lstm-btc-usdt-1h") == "model_cnn_lstm_btc_usdt_1h"
    assert model_attr("ppo-15m").isidentifier()


def test_ppo_runner_matches_load_ppo_act_and_answers_nan_for_unknown(ppo_model: StoredModel) -> None:
    runner = PpoRunner.inner(settings=settings())
    assert runner.status().loaded == {"ppo-1h": str(ppo_model.tag)}
    observations = np.random.default_rng(1).normal(0, 0.5, (4, *PPO_OBS_SHAPE)).astype(np.float32)
    order = ["ppo-1h", "ppo-4h", "ppo-1h", "ppo-1h"]
    rows = runner.act([ObservationRequest(model=m, observation=o) for m, o in zip(order, observations, strict=True)])
    actions, probs, values = load_ppo(str(ppo_model.tag)).act(observations[[0, 2, 3]])
    for row, position in enumerate([0, 2, 3]):
        assert rows[position].action == int(actions[row]) and not rows[position].missing
        np.testing.assert_allclose(rows[position].probabilities, probs[row], rtol=1e-6)
        assert math.isclose(rows[position].value, float(values[row]), rel_tol=1e-5, abs_tol=1e-6)
    assert rows[1].action == NO_ACTION and rows[1].missing and math.isnan(rows[1].value)
    assert runner.status().batching.items == 4


def test_loading_a_policy_builds_no_torch_optimizer(ppo_model: StoredModel) -> None:
    """Serving never steps the policy: a torch optimizer would import torch._dynamo (~1.3 s of the PPO runner's
    start), so loading one in a fresh interpreter (the session's store) must leave it out."""
    code = f"import sys\nfrom signals.models.ppo.artifact import load_ppo\nload_ppo({str(ppo_model.tag)!r})\n"
    assert fresh_python(code + "print('torch._dynamo' in sys.modules)").split() == ["False"]


FRONT = textwrap.dedent(
    """
    import asyncio
    import math

    import bentoml
    import numpy as np

    from signals.runners.cnn_lstm import CnnLstmRunner
    from signals.runners.ppo import PpoRunner
    from signals.contract.wire import ActionRow, ObservationRequest, WindowRequest


    def _plain(value):
        return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


    @bentoml.service(name="front")
    class Front:
        cnn = bentoml.depends(CnnLstmRunner)
        ppo = bentoml.depends(PpoRunner)

        @bentoml.api
        async def fan(self, models: list[str], seed: int = 0) -> dict:
            windows = np.random.default_rng(seed).normal(0, 0.02, (len(models), 60, 15)).astype(np.float32)
            # One runner call per request, concurrently: the runner's dispatcher has to batch them.
            answers = await asyncio.gather(
                *(self.cnn.to_async.predict([WindowRequest(model=m, window=w)]) for m, w in zip(models, windows))
            )
            rows = [answer[0] for answer in answers]
            observations = np.random.default_rng(seed).normal(0, 0.5, (3, 50, 10)).astype(np.float32)
            acts = await asyncio.gather(
                *(self.ppo.to_async.act([ObservationRequest(model=m, observation=o)])
                  for m, o in zip(["ppo-1h", "ppo-4h", "ppo-1h"], observations))
            )
            act_rows = [ActionRow.model_validate(a[0], from_attributes=True) for a in acts]
            return {
                "row_types": sorted({type(v).__name__ for row in rows for v in row}),
                "nan_rows": [all(v is None or math.isnan(v) for v in row) for row in rows],
                "rows": [[None if v is None or math.isnan(v) else v for v in row] for row in rows],
                "act_type": type(acts[0][0]).__name__,
                "acts": [[r.action, [None if math.isnan(p) else p for p in r.probabilities],
                          None if math.isnan(r.value) else r.value, r.missing] for r in act_rows],
                "cnn_status": _plain(await self.cnn.to_async.status()),
                "ppo_status": _plain(await self.ppo.to_async.status()),
            }
    """
)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_runners_behind_a_real_bentoml_serve_hop(
    cnn_models: dict[str, StoredModel], ppo_model: StoredModel, tmp_path: Path
) -> None:
    """Batches form across the hop, rows keep their order and types, NaN rows arrive as NaN (not an error)."""
    (tmp_path / "front.py").write_text(FRONT)
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(tmp_path)]),
        "BENTOML_DO_NOT_TRACK": "true",
        "SIGNALS_UNIVERSE": json.dumps(list(SYMBOLS)),
        "SIGNALS_TIMEFRAMES": json.dumps([TF]),
        "SIGNALS_DEVICE": "cpu",
    }
    bentoml_cli = str(Path(sys.executable).with_name("bentoml"))
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [bentoml_cli, "serve", "front:Front", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("server not ready in 90 s: " + (tmp_path / "serve.log").read_text()[-3000:])
        names = list(cnn_models)
        order = [names[i % 2] for i in range(40)]
        order[5] = "cnn-lstm-doge-usdt-1h"
        response = httpx.post(f"{base}/fan", json={"models": order, "seed": 1}, timeout=60)
        assert response.status_code == 200, response.text
        body = response.json()
    finally:
        stop(server)  # SIGTERM, then SIGKILL if the graceful stop outlasts 30 s
        log.close()
    assert body["row_types"] == ["float"], body["row_types"]  # NaN crosses the hop as a float NaN
    assert [i for i, nan in enumerate(body["nan_rows"]) if nan] == [5]
    batch = windows(40, seed=1)
    predictors = {name: load_cnn_lstm(str(stored.tag)) for name, stored in cnn_models.items()}
    for position, name in enumerate(order):
        if position != 5:
            expected = predictors[name].predict_proba(batch[position : position + 1])[0]
            np.testing.assert_allclose(body["rows"][position], expected, rtol=1e-5, atol=1e-6)
    stats = body["cnn_status"]["batching"]
    assert stats["items"] == 40 and stats["calls"] < 40 and stats["max_batch_size"] > 1, stats
    assert body["act_type"] == "ActionRow", body["act_type"]
    actions, probs, values = load_ppo(str(ppo_model.tag)).act(
        np.random.default_rng(1).normal(0, 0.5, (3, *PPO_OBS_SHAPE)).astype(np.float32)
    )
    for row in (0, 2):
        action, probabilities, value, missing = body["acts"][row]
        assert action == int(actions[row]) and not missing
        np.testing.assert_allclose(probabilities, probs[row], rtol=1e-5)
        assert math.isclose(value, float(values[row]), rel_tol=1e-5, abs_tol=1e-6)
    assert body["acts"][1] == [NO_ACTION, [None, None, None], None, True]
    assert body["ppo_status"]["loaded"] == {"ppo-1h": str(ppo_model.tag)}


def test_a_pinned_version_is_declared_and_the_rest_are_the_latest() -> None:
    """`make image` pins the served versions: the bento copies those, never a newer candidate held in shadow."""

    class Declared:
        pass

    declare_models(Declared, ["cnn-lstm-btc-usdt-1h", "ppo-1h"], {"cnn-lstm-btc-usdt-1h": "served1"})
    assert getattr(Declared, model_attr("cnn-lstm-btc-usdt-1h")).tag.version == "served1"
    assert hasattr(Declared, model_attr("ppo-1h"))  # unpinned: BentoML's `latest` of the store, as before
