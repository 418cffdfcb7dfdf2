"""`bentoml build` packages the code and references exactly the models the runners will serve.

Tiny models are trained into the session's temporary BENTOML_HOME; the build runs as a subprocess with
that home and a universe narrowed to those models (the runners decide their models at import time from
the settings and the store), then `bento.yaml` is read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from signals.models.cnn_lstm.artifact import model_name
from signals.models.ppo.artifact import import_ppo
from signals.models.ppo.training import PpoHyperParameters, train_ppo
from signals.models.registry import StoredModel
from tests.support.factories import random_walk_candles
from tests.support.models import tiny_cnn_lstm
from tests.support.paths import REPO_ROOT

torch.set_num_threads(1)

# A (symbols, timeframe) no other test trains, so the build's universe holds only these models.
SYMBOLS = ("LINK/USDT", "AVAX/USDT")
TF = "4h"


def _tiny_models() -> tuple[dict[str, StoredModel], StoredModel]:
    cnn = {}
    for seed, symbol in enumerate(SYMBOLS):
        cnn[model_name(symbol, TF)] = tiny_cnn_lstm(symbol, TF, seed=20 + seed)
    hyper = PpoHyperParameters(n_steps=64, batch_size=32, n_epochs=1)
    histories = {"LINK/USDT": random_walk_candles(300, timeframe=TF, seed=30)}
    ppo = import_ppo(train_ppo(histories, TF, timesteps=64, seed=0, hyper_parameters=hyper))
    return cnn, ppo


@pytest.mark.slow
def test_bentoml_build_references_the_runner_models(bentoml_home: Path) -> None:
    cnn, ppo = _tiny_models()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "SIGNALS_UNIVERSE": json.dumps(list(SYMBOLS)),
        "SIGNALS_TIMEFRAMES": json.dumps([TF]),
        "SIGNALS_DEVICE": "cpu",
    }
    bentoml_cli = str(Path(sys.executable).with_name("bentoml"))
    done = subprocess.run(
        [bentoml_cli, "build", "--output", "tag", "."],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 and "Failed to install uv" in done.stdout + done.stderr:
        pytest.skip("bentoml build pip-installs `uv` when it is missing, and no index offering uv is reachable")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tag = next(line for line in done.stdout.splitlines() if line.startswith("__tag__:")).removeprefix("__tag__:")
    name, version = tag.split(":")
    bento = bentoml_home / "bentos" / name / version
    info = yaml.safe_load((bento / "bento.yaml").read_text())

    assert info["service"] == "service:SignalService"
    services = {service["name"]: service for service in info["services"]}
    assert {dep["service"] for dep in services[info["entry_service"]]["dependencies"]} == {
        "cnn_lstm_runner",
        "ppo_runner",
        "families_runner",  # every family installed through the `signals.families` entry point (models/plugin.py)
    }
    assert sorted(m["tag"] for m in services["cnn_lstm_runner"]["models"]) == sorted(str(s.tag) for s in cnn.values())
    assert [m["tag"] for m in services["ppo_runner"]["models"]] == [str(ppo.tag)]
    # The dependency-connection fix of upstream issue #5540 travels with the bento.
    for runner in ("cnn_lstm_runner", "ppo_runner", "families_runner"):
        assert services[runner]["config"]["runner_connection"]["max_requests"] == 10**9
    src = bento / "src"
    assert (src / "service.py").is_file() and (src / "signals" / "runners" / "cnn_lstm.py").is_file()
    assert (src / "signals" / "cli" / "bootstrap.py").is_file() and (src / "signals" / "features" / "cnn.py").is_file()
    assert not (src / "tests").exists() and not (src / "data").exists() and not (src / ".venv").exists()
    assert not (src / "signals" / "testing").exists()  # test doubles do not ship
    shipped = {p.relative_to(src).as_posix() for p in (src / "signals").rglob("*") if p.is_file()}
    package = {
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "signals").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and "testing" not in p.parts
    }
    assert package <= shipped, sorted(package - shipped)  # every module (signals/data too), the page, migrations
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "bentoml==1.4.39" in requirements and "torch" in requirements
