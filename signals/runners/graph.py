"""The service graph as a runner worker needs it: the API service's name and its runner dependencies, no routes.

BentoML starts every worker with the root import string (`service:SignalService`) and, in a runner's worker, looks
its service up among the root's dependencies (`--service-name`). The API's routes, mounted apps and composition root
are of no use there but cost each runner process about 0.5-0.8 s of CPU at start; `service.py` imports this graph
instead when `runner_worker` says the process serves a runner.
"""

from __future__ import annotations

from collections.abc import Sequence

import bentoml

from signals.core.settings import get_settings
from signals.runners.cnn_lstm import CnnLstmRunner
from signals.runners.families import FamiliesRunner
from signals.runners.ppo import PpoRunner

API_SERVICE_NAME = "signal_service"
WORKER_SCRIPT = "_bentoml_impl/worker/service.py"  # BentoML 1.4's worker (`python -m _bentoml_impl.worker.service`)


def runner_worker(argv: Sequence[str]) -> str | None:
    """The runner service this process serves, from BentoML's worker command line; None for any other process
    (the arbiter, an API worker, `bentoml build`, a test)."""
    if not argv or not argv[0].replace("\\", "/").endswith(WORKER_SCRIPT) or "--service-name" not in argv:
        return None
    at = list(argv).index("--service-name") + 1
    name = argv[at] if at < len(argv) else ""
    return name if name and name != API_SERVICE_NAME else None


settings = get_settings()


@bentoml.service(name=API_SERVICE_NAME)
class SignalService:
    """The API service's dependencies only (service.py declares the same three, the same way)."""

    cnn_lstm = bentoml.depends(CnnLstmRunner, url=settings.cnn_lstm_url)
    ppo = bentoml.depends(PpoRunner, url=settings.ppo_url)
    families = bentoml.depends(FamiliesRunner, url=settings.families_url)
