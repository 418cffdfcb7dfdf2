"""A model family installed as its own package, through the public seam only (docs/add-a-model-family.md).

The package in tests/plugins/signals_family_demo is pip-installed (`--target`, a path entry) so that its entry
point is found in installed metadata, as a user's would be; then, with no edit to `signals/`: `signals train
demo-logreg` trains it on the session world's candles, `signals evaluate` scores it, the gate reads its ruled edge,
the in-process service serves it through the families runner, the ledger records it and `/replay` rebuilds it; per
(symbol, timeframe) the family with the better walk-forward log-loss skill serves and the other runs in shadow.
Bad input: a package that fails to import, one that declares an unknown feature, and a stored artifact that fails
verification are skipped and named, the rest serve; an unknown family name lists the known ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signals.models import plugin
from signals.models.registry import list_models
from tests.support.fakes import separate_metrics
from tests.support.families import cli, train_family
from tests.support.servers import local_client
from tests.support.world import World, copy_world, environment

PACKAGE = Path(__file__).parents[1] / "plugins" / "signals_family_demo"
FAMILY = "demo-logreg"
BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"


def _broken_packages(site: Path) -> None:
    """Two installed distributions written as pip writes them (dist-info with entry points): one whose module fails
    to import, one that declares a feature the registry does not know."""
    for dist, name, module, source in (
        ("broken_import", "demo-broken", "broken_family", "raise ImportError('no module named lightgbmx')\n"),
        (
            "bad_feature",
            "demo-badfeature",
            "bad_feature_family",
            "from signals_family_demo import DemoFamily\n\n\nclass Bad(DemoFamily):\n    name = 'demo-badfeature'\n"
            "    features = ('log_return_1', 'moon_phase')\n\n\nfamily = Bad()\n",
        ),
    ):
        (site / f"{module}.py").write_text(source)
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[signals.families]\n{name} = {module}:family\n")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    source = tmp_path_factory.mktemp("src") / "signals_family_demo"
    shutil.copytree(PACKAGE, source)  # pip may write build files beside the source: not into the checkout
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--target", str(site), str(source)],
        check=True,
    )
    _broken_packages(site)
    sys.path.insert(0, str(site))
    plugin.rediscover()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for module in [m for m in sys.modules if m.startswith(("signals_family_demo", "bad_feature_family"))]:
            del sys.modules[module]
        plugin.rediscover()


@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory, installed: Path) -> Iterator[World]:
    built = copy_world(trained_world, tmp_path_factory.mktemp("plugin-world"))
    with environment(built.env()):  # its models leave the shared store at the module's end (tests/conftest.py)
        yield built


@pytest.fixture(scope="module")
def trained(world: World) -> list[dict[str, Any]]:
    return train_family(FAMILY, world)


def test_discovery_takes_the_installed_family_and_names_the_broken_ones(installed: Path) -> None:
    found = plugin.discover()
    assert FAMILY in found.names and set(found.names) <= {FAMILY, "gbm"}  # ours, found the same way
    reasons = {s.name: s.reason for s in found.skipped}
    assert "ImportError: no module named lightgbmx" in reasons["demo-broken"]
    assert "unknown feature(s) ['moon_phase']" in reasons["demo-badfeature"]


def test_train_an_unknown_family_lists_the_known_ones(world: World) -> None:
    result = cli("train", "no-such-family")
    assert result.exit_code == 2
    text = " ".join(result.output.replace("│", " ").split())  # rich draws a box around the error
    assert "unknown model family 'no-such-family'" in text and f"cnn-lstm, ppo, {FAMILY}" in text
    assert "skipped demo-broken" in text


def test_train_and_evaluate_the_installed_family(world: World, trained: list[dict[str, Any]]) -> None:
    tags = {str(m.tag) for m in list_models(FAMILY)}
    stored = [row for row in trained if row["model"] in tags]
    assert {row["verdict_of"] for row in stored} == {BTC, ETH, SOL}
    for model in list_models(FAMILY):
        meta = model.info.metadata
        # the project's recipe: walk-forward folds, the confirmation block, the universe rule's verdict
        assert meta["walk_forward"]["folds"] and meta["confirmation"]["span"]["samples"] > 0
        assert meta["edge"]["rule"]["text"] and meta["feature_names"] == list(
            plugin.discover().plugins[FAMILY].features
        )
        assert set(meta["sha256"]) == {"logreg.json", "calibration.json"}
    result = cli(
        "evaluate", "--timeframes", "1h", "--data-dir", str(world.data_dir), "--exchange", "synthetic", "--json"
    )
    assert result.exit_code == 0, result.output
    evaluated = {row["model"] for row in json.loads(result.stdout)}
    assert tags <= evaluated


def test_served_gated_recorded_and_replayed_and_chosen_by_evidence(world: World, trained: list[dict[str, Any]]) -> None:
    from service import SignalService

    with separate_metrics(), local_client(SignalService.to_asgi()) as client:
        signal = client.post("/predict", json={"symbol": SOL, "timeframe": "1h"}).json()  # only the family has SOL 1h
        assert signal["family"] == FAMILY, signal
        stored = next(m for m in list_models(FAMILY) if m.info.labels["symbol"] == SOL)
        assert signal["model_version"] == stored.tag.version
        assert signal["edge"]["verdict"] == stored.info.metadata["edge"]["verdict"]  # the gate read the ruled edge
        if signal["edge"]["verdict"] != "positive":
            assert signal["actionable"] is False and signal["levels"] is None

        models = client.post("/models", json={}).json()
        by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for info in models:
            by_pair.setdefault((info["symbol"], info["timeframe"]), []).append(info)
        both = by_pair[(ETH, "1h")]  # the CNN-LSTM and the family: one serves, the other in shadow, both with figures
        assert sorted(i["role"] for i in both) == ["served", "shadow"] and {i["family"] for i in both} == {
            "cnn-lstm",
            FAMILY,
        }
        served = next(i for i in both if i["role"] == "served")
        skills = {i["family"]: i["metrics"]["walk_forward"]["log_loss_skill"]["value"] for i in both}
        assert skills[served["family"]] == max(skills.values())
        assert "log-loss skill" in served["note"]
        summary = client.post("/summary", json={"symbol": ETH, "timeframes": ["1h"]}).json()
        assert summary["signals"]["1h"]["family"] == served["family"]
        skipped = {i["name"]: i for i in models if i["role"] == "skipped"}
        assert (
            set(skipped) == {"demo-broken", "demo-badfeature"} and "moon_phase" in skipped["demo-badfeature"]["error"]
        )

        status = client.post("/status", json={}).json()
        assert any(FAMILY in name for name in json.dumps(status).split('"'))

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
        assert body["match"] is True and body["differences"] == [], body
        assert body["rebuilt"]["probabilities"] == signal["probabilities"]


def test_an_artifact_that_fails_verification_is_refused_and_the_rest_serve(
    world: World, trained: list[dict[str, Any]]
) -> None:
    from service import SignalService

    model = next(m for m in list_models(FAMILY) if m.info.labels["symbol"] == SOL)
    artifact = Path(model.path) / "logreg.json"
    original = artifact.read_bytes()
    artifact.write_bytes(original.replace(b"[", b"[ ", 1))  # same JSON, other bytes: its SHA-256 fails
    try:
        with separate_metrics(), local_client(SignalService.to_asgi()) as client:
            refused = client.post("/predict", json={"symbol": SOL, "timeframe": "1h"})
            assert refused.status_code == 503 and "logreg.json" in refused.text
            infos = {i["name"]: i for i in client.post("/models", json={}).json() if i["role"] != "skipped"}
            assert infos[model.tag.name]["status"] == "unavailable"
            assert client.post("/predict", json={"symbol": BTC, "timeframe": "1h"}).status_code == 200
    finally:
        artifact.write_bytes(original)
