"""`deploy/kubernetes`: the manifests hold together, and the topology they describe runs here as processes.

One Deployment and Service per BentoML service (the API, the CNN-LSTM runner, the PPO runner), an autoscaler on
each runner, the API reaching the runners by their Services' URLs, PostgreSQL by URL from a Secret, the ledger
migration as a Job. The test then starts exactly that: the Job's command, each runner by the command its
Deployment runs, and the API's replicas with the ConfigMap and Secret as environment (URLs pointed at the local
ports, candles from the test world instead of an exchange), and asks the API through both replicas.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import sqlalchemy as sa
import yaml

from signals.api.access import key_hash, new_key
from tests.support.paths import REPO_ROOT
from tests.support.postgres import Postgres
from tests.support.servers import Server, bentoml_server
from tests.support.world import World, copy_world

pytestmark = pytest.mark.slow
MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"
EXAMPLE_SECRET = MANIFESTS / "optional" / "secret.example.yaml"
DESK_KEY, _ = new_key()
AUTH = {"Authorization": f"Bearer {DESK_KEY}"}
WORKLOADS = ("signals-api", "signals-cnn-lstm", "signals-ppo")


def documents() -> list[dict[str, Any]]:
    out = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_the_manifests_describe_one_deployment_and_service_per_bentoml_service() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    deployments, services, autoscalers = of_kind("Deployment"), of_kind("Service"), of_kind("HorizontalPodAutoscaler")
    assert set(deployments) == set(services) == {"signals-api", "signals-cnn-lstm", "signals-ppo"}
    for name, deployment in deployments.items():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert services[name]["spec"]["selector"].items() <= pod_labels.items()
        spec = container(deployment)
        assert spec["image"] == "trading-signals"
        assert {p["name"]: p["containerPort"] for p in spec["ports"]} == {"http": 3000}
        assert services[name]["spec"]["ports"][0]["targetPort"] == "http"
        assert (
            spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
            and spec["livenessProbe"]["httpGet"]["path"] == "/livez"
        )
    assert {a["spec"]["scaleTargetRef"]["name"] for a in autoscalers.values()} == {"signals-cnn-lstm", "signals-ppo"}
    config = of_kind("ConfigMap")["signals-config"]["data"]
    for setting, service in (("SIGNALS_CNN_LSTM_URL", "signals-cnn-lstm"), ("SIGNALS_PPO_URL", "signals-ppo")):
        url = urlparse(config[setting])
        assert url.hostname == service and url.port == services[service]["spec"]["ports"][0]["port"]
    assert not of_kind("Secret")  # outside the kustomization: `kubectl apply -k` never overwrites the real one
    secret = example_secret()
    assert secret["SIGNALS_DATABASE_URL"].startswith("postgresql+psycopg://")
    job = container(of_kind("Job")["signals-ledger-migrate"])
    assert job["command"] == ["python", "-m", "signals", "ledger", "migrate"]
    assert {"secretRef": {"name": "signals-secrets"}} in job["envFrom"]
    for name in ("signals-cnn-lstm", "signals-ppo"):  # each runner's command names a BentoML service of ours
        target = container(deployments[name])["command"][2]
        module, attribute = target.split(":")
        assert type(getattr(importlib.import_module(module), attribute)).__name__ == "Service"


def example_secret() -> dict[str, str]:
    (secret,) = (d for d in yaml.safe_load_all(EXAMPLE_SECRET.read_text()) if d)
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "signals-secrets"
    return dict(secret["stringData"])


def test_the_cluster_fails_closed_without_api_keys() -> None:
    """The API pods require keys and name the Secret's key (a missing key: the pod does not start), and the
    settings refuse an empty list with a message that says how to make one."""
    from pydantic import ValidationError

    from signals.core.settings import Settings

    api = container(of_kind("Deployment")["signals-api"])
    assert {"name": "SIGNALS_REQUIRE_API_KEYS", "value": "true"} in api["env"]
    (named,) = (e for e in api["env"] if e["name"] == "SIGNALS_API_KEYS")
    assert named["valueFrom"]["secretKeyRef"] == {"name": "signals-secrets", "key": "SIGNALS_API_KEYS"}
    assert "optional" not in named["valueFrom"]["secretKeyRef"]
    with pytest.raises(ValidationError, match="signals keys new"):
        Settings(require_api_keys=True, api_keys=[])
    assert Settings(require_api_keys=True, api_keys=[{"name": "desk", "sha256": "0" * 64}]).api_keys


def test_every_pod_runs_unprivileged_with_probes_budgets_and_limits() -> None:
    deployments = of_kind("Deployment")
    budgets = {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for b in of_kind("PodDisruptionBudget").values()
    }
    assert budgets == set(WORKLOADS)
    assert of_kind("PodDisruptionBudget")["signals-api"]["spec"]["minAvailable"] == 1
    workloads = [*(deployments[name] for name in WORKLOADS), of_kind("Job")["signals-ledger-migrate"]]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        spec = container(workload)
        assert spec["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"cpu", "memory"} <= spec["resources"]["requests"].keys()
        assert {"cpu", "memory"} <= spec["resources"]["limits"].keys()
    for name in WORKLOADS:
        deployment = deployments[name]
        spec = container(deployment)
        startup = spec["startupProbe"]
        assert startup["httpGet"]["path"] == "/livez"
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 240  # a loaded node took 97 s to be ready
        mounts = {m["mountPath"] for m in spec["volumeMounts"]}
        assert "/tmp" in mounts  # the read-only root's one scratch space
        volumes = {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert {m["name"] for m in spec["volumeMounts"]} <= volumes
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    (monitor,) = (d for d in yaml.safe_load_all((MANIFESTS / "optional" / "servicemonitor.yaml").read_text()) if d)
    assert monitor["kind"] == "ServiceMonitor" and monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def runner_target(deployment: dict[str, Any]) -> str:
    command = container(deployment)["command"]
    assert command[:2] == ["bentoml", "serve"] and "--working-dir" in command  # the image's src; here the repo
    return str(command[2])


@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    return copy_world(trained_world, tmp_path_factory.mktemp("deploy-world"))


@pytest.fixture(scope="module")
def topology(world: World, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """The manifests' topology as local processes: the migration Job, the runners, two API replicas."""
    logs = tmp_path_factory.mktemp("deploy-logs")
    deployments = of_kind("Deployment")
    config = dict(of_kind("ConfigMap")["signals-config"]["data"])
    secret = example_secret()
    database = postgres.create_database("deploy_topology")
    local = {
        **config,
        **secret,
        **world.env(),  # candles from the test world's store instead of the exchange, and its universe
        "SIGNALS_DATABASE_URL": database,
        "SIGNALS_MODEL_SIGNING_KEY": "",
        "SIGNALS_LOG_FORMAT": "json",  # what a platform parses: one object per line, with the request's id
        "SIGNALS_WARM_UP": "false",  # each replica's first /predict computes (and calls the runner) in the request
        "SIGNALS_API_KEYS": json.dumps([{"name": "desk", "sha256": key_hash(DESK_KEY), "scopes": ["read", "admin"]}]),
        "BENTOML_HOME": os.environ["BENTOML_HOME"],  # the session's model store (the image's is the bento's)
    }
    local = {k: v for k, v in local.items() if v != ""}
    job = container(of_kind("Job")["signals-ledger-migrate"])["command"]
    done = subprocess.run(
        [sys.executable, *job[1:]],
        env={**os.environ, **local},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    runners = {**local, "SIGNALS_ACCESS_LOG": "true"}  # off by default: its lines carry the request's id
    with ExitStack() as stack:
        cnn = stack.enter_context(
            bentoml_server(runners, logs, name="cnn", target=runner_target(deployments["signals-cnn-lstm"]))
        )
        ppo = stack.enter_context(
            bentoml_server(runners, logs, name="ppo", target=runner_target(deployments["signals-ppo"]))
        )
        api_spec = container(deployments["signals-api"])
        named = {e["name"]: e["value"] for e in api_spec["env"] if "value" in e}  # SIGNALS_REQUIRE_API_KEYS
        api_env = {**local, **named, "SIGNALS_CNN_LSTM_URL": cnn.url, "SIGNALS_PPO_URL": ppo.url}
        replicas = deployments["signals-api"]["spec"]["replicas"]
        apis = [stack.enter_context(bentoml_server(api_env, logs, name=f"api-{i}")) for i in range(replicas)]
        yield [cnn, ppo, *apis]


def test_the_topology_runs_as_separate_processes_and_serves_through_every_api_replica(
    topology: list[Server], postgres: Postgres
) -> None:
    cnn, ppo, *apis = topology
    assert len(apis) == 2
    for server in (cnn, ppo):  # the runners are services of their own, not children of an API
        assert all(server.process.pid != api.process.pid for api in apis)
    answers, first_ids = [], []
    for api in apis:
        assert httpx.post(f"{api.url}/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}).status_code == 401
        signal = httpx.post(
            f"{api.url}/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}, timeout=60, headers=AUTH
        )
        action = httpx.post(f"{api.url}/action", json={"symbol": "BTC/USDT"}, timeout=60, headers=AUTH)
        assert signal.status_code == 200 and action.status_code == 200, (signal.text, action.text)
        answers.append(signal.json())
        first_ids.append(signal.headers["x-request-id"])
        workers = subprocess.run(["pgrep", "-P", str(api.process.pid), "-a"], capture_output=True, text=True).stdout
        assert "cnn_lstm_runner" not in workers and "ppo_runner" not in workers  # reached by URL, not spawned
    assert answers[0]["probabilities"] == answers[1]["probabilities"]
    request_id = signal.headers["x-request-id"]  # the last replica's first /predict: a cache miss, a runner call
    first = first_ids[0]  # the first replica's /predict computed and recorded BTC/USDT 1h: its record names it
    with sa.create_engine(postgres.url("deploy_topology")).connect() as db:
        recorded_by = db.execute(sa.text("SELECT request_id FROM signal_records WHERE mode = 'live'")).scalars().all()
    assert recorded_by == [first]
    runner_lines = [json.loads(line) for line in cnn.log.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == request_id for line in runner_lines), (
        request_id,
        [(line.get("request_id"), line.get("message", "")[:80]) for line in runner_lines[-8:]],
    )
    runner = httpx.post(f"{apis[0].url}/status", json={}, timeout=60, headers=AUTH).json()["cnn_lstm"]
    assert runner["loaded"] and runner["device"] == "cpu"  # the status came from the remote runner
    ledger = httpx.post(f"{apis[1].url}/status", json={}, timeout=60, headers=AUTH).json()["ledger"]
    assert ledger["status"] == "ok" and ledger["backend"] == "postgresql"
    history = httpx.post(
        f"{apis[1].url}/history", json={"symbol": "BTC/USDT", "timeframe": "1h"}, timeout=60, headers=AUTH
    ).json()
    assert len(history["items"]) == 1  # recorded once, through either replica


def test_make_image_and_the_readme_name_the_bento_that_exists() -> None:
    bentofile = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"IMAGE_TAG ?= {bentofile['name']}:latest" in makefile
    assert "deploy/image/build.py --tag $(IMAGE_TAG)" in makefile
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make image" in readme and f"{bentofile['name']}:latest" in readme
    assert Path(REPO_ROOT / "deploy" / "image" / "base.sh").stat().st_mode & 0o111
