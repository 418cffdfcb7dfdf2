"""What every process of the service graph imports at start: BentoML imports `service.py` in its arbiter and in
each worker (the API and every runner), so a heavy import there is paid once per process. torch and its model
libraries are the runners' own (imported when a runner starts); ccxt is the live source's; alembic a migration's."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from signals.runners.graph import graph_only, service_graph
from tests.support.probe import fresh_python

RUNNER_ONLY = ("torch", "safetensors", "stable_baselines3", "gymnasium")
ON_DEMAND = ("ccxt", "alembic")

PROBE = textwrap.dedent(
    """
    import sys

    import service  # the service graph: the API service, its runners and the routes
    from signals.data.exchange import ExchangeConfig
    from signals.models.families import CNN_LSTM, PPO

    assert CNN_LSTM.name and PPO.name and ExchangeConfig().exchange_id
    print(" ".join(sorted(name for name in {modules!r} if name in sys.modules)) or "none")
    """
)


def test_the_service_graph_imports_without_torch_ccxt_or_alembic() -> None:
    assert fresh_python(PROBE.format(modules=RUNNER_ONLY + ON_DEMAND)).split() == ["none"]


FAMILIES_START = textwrap.dedent(
    """
    import os
    import sys

    os.environ["BENTOML_HOME"] = {home!r}  # an empty store: the start itself, without a model to load

    from signals.models.families import plugin_families
    from signals.runners.families import FamiliesRunner

    assert plugin_families() and not any(family.on_torch for family in plugin_families())
    runner = FamiliesRunner.inner()
    print(runner._status().device, "torch" in sys.modules)
    """
)


def test_the_families_runner_starts_without_torch_when_no_family_needs_it(tmp_path: Path) -> None:
    """The installed families (GBM) compute on their own libraries: the runner that serves them loads no torch."""
    assert fresh_python(FAMILIES_START.format(home=str(tmp_path))).split() == ["cpu", "False"]


RUNNER_WORKER = textwrap.dedent(
    """
    import logging
    import sys

    sys.argv = [{script!r}, "service:SignalService", "--service-name", "ppo_runner", "--fd", "3"]
    import service

    runner = service.SignalService.find_dependent_by_name("ppo_runner")
    api = [name for name in ("api_service", "signals.api.compat", "signals.live.operations") if name in sys.modules]
    request_log = logging.getLogger("bentoml._internal.server.http_app").filters
    quiet = any(type(f).__name__ == "ClientErrorsInOneLine" for f in request_log)
    print(runner.name, " ".join(api) or "none", quiet)
    """
)


def test_a_runner_worker_imports_the_graph_without_the_api() -> None:
    """BentoML's runner worker finds its service among the root's dependencies; the API's code stays out, and its
    request log still says a caller's mistake (or a caller that left) in one line, as the API's does."""
    script = "/venv/lib/python3.11/site-packages/_bentoml_impl/worker/service.py"
    assert fresh_python(RUNNER_WORKER.format(script=script)).split() == ["ppo_runner", "none", "True"]


@pytest.mark.parametrize(
    ("argv", "graph"),
    [
        (["/venv/bin/bentoml", "serve", "service:SignalService", "--port", "3000"], True),
        (["/venv/lib/python3.11/site-packages/bentoml/__main__.py", "serve", "."], True),
        (["/x/_bentoml_impl/worker/service.py", "service:SignalService", "--service-name", "cnn_lstm_runner"], True),
        (["/x/_bentoml_impl/worker/service.py", "service:SignalService", "--service-name", "signal_service"], False),
        (["/x/_bentoml_impl/worker/service.py", "service:SignalService"], False),
        (["/venv/bin/bentoml", "build"], False),
        (["/venv/bin/pytest", "-q"], False),
        ([], False),
    ],
)
def test_only_the_arbiter_and_runner_workers_take_the_graph_alone(argv: list[str], graph: bool) -> None:
    assert graph_only(argv) is graph


def test_the_graph_states_the_api_services_config_and_dependencies() -> None:
    """The arbiter starts the API's workers from the graph's config: it must be the API service's own."""
    import api_service

    graph = service_graph()
    assert graph.name == api_service.SignalService.name
    assert graph.config == api_service.SignalService.config
    assert sorted(graph.all_services()) == sorted(api_service.SignalService.all_services())
