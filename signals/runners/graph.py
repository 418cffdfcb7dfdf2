"""The service graph without the API: the API service's name, config and runner dependencies, no routes.

BentoML imports the root module (`service:SignalService`) in every process. The arbiter (`bentoml serve`) reads
from it only the graph (each service's config and dependencies) to start the workers, and a runner's worker only
looks its own service up among the root's dependencies (`--service-name`). The API's routes, mounted apps and
composition root cost each of those processes about half a second of CPU at start, the arbiter's before any worker
starts; `service.py` imports this graph there instead (`graph_only`), the whole API everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import bentoml

from signals.api.cors import cors_config
from signals.core.errors import InvalidInput
from signals.core.settings import TRAFFIC_TIMEOUT_S, Settings, get_settings
from signals.runners.cnn_lstm import CnnLstmRunner
from signals.runners.families import FamiliesRunner
from signals.runners.ppo import PpoRunner

API_SERVICE_NAME = "signal_service"
WORKER_SCRIPT = ("_bentoml_impl", "worker", "service.py")  # BentoML 1.4's `python -m _bentoml_impl.worker.service`


def api_service_config(settings: Settings) -> dict[str, Any]:
    """`@bentoml.service` arguments of the API service, the same in the graph and in `api_service.py`: the arbiter
    starts the API's workers from it and every worker reads its server config (traffic, logging, http) from it.

    runner_probe off: `__is_ready__` asks the runners itself. BentoML 1.4.39's probe raised aiohttp's TimeoutError
    (uncaught) while a runner was still loading, so /readyz answered nothing until the traffic timeout, then a bare
    500 and "ASGI callable returned without starting response" in the log, at every start.
    """
    return {
        "name": API_SERVICE_NAME,
        "traffic": {"timeout": TRAFFIC_TIMEOUT_S},
        "workers": settings.api_workers,
        "http": cors_config(settings),
        "runner_probe": {"enabled": False},
        "logging": {"access": {"enabled": settings.access_log}},  # SIGNALS_ACCESS_LOG (off: a sixth of a request)
    }


def refuse_an_impossible_device(settings: Settings) -> None:
    """Exit in one line when SIGNALS_DEVICE names a device this machine lacks: `service.py` asks in every process,
    so the arbiter stops the start once instead of every runner worker crash-looping."""
    if settings.device != "cuda":  # 'auto' and 'cpu' always resolve; only this one imports torch here
        return
    from signals.models.device import resolve_device

    try:
        resolve_device(settings.device)
    except InvalidInput as error:
        raise SystemExit(f"signals: cannot start: {error}") from None


def graph_only(argv: Sequence[str]) -> bool:
    """Whether this process needs the graph only: BentoML's arbiter (`bentoml serve`) or a runner's worker (its
    `--service-name` is not the API's). An API worker, `bentoml build`, a test or a script gets the whole API."""
    if not argv:
        return False
    program = PurePath(argv[0])
    if program.name == "bentoml" or program.parts[-2:] == ("bentoml", "__main__.py"):
        return len(argv) > 1 and argv[1] == "serve"
    if program.parts[-3:] != WORKER_SCRIPT or "--service-name" not in argv:
        return False
    at = list(argv).index("--service-name") + 1
    return at < len(argv) and argv[at] != API_SERVICE_NAME


def service_graph() -> bentoml.Service[Any]:
    """The API service's name, config and dependencies as a service with no routes (built on call: an API worker
    imports this module too, for `api_service_config`, and needs no second service)."""
    settings = get_settings()

    @bentoml.service(**api_service_config(settings))
    class SignalService:
        """The API service's dependencies only (`api_service.SignalService` declares the same three)."""

        cnn_lstm = bentoml.depends(CnnLstmRunner, url=settings.cnn_lstm_url)
        ppo = bentoml.depends(PpoRunner, url=settings.ppo_url)
        families = bentoml.depends(FamiliesRunner, url=settings.families_url)

    return SignalService
