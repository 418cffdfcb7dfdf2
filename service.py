"""BentoML's entry point (`bentoml serve service:SignalService`, bentofile.yaml): the API service in `api_service.py`.

BentoML imports this module in every process of the service graph. A runner's worker only looks its own service up
among SignalService's dependencies, so it gets the graph without the API's routes, apps and composition root
(`signals.runners.graph`); every other process (the arbiter, the API workers, `bentoml build`, tests) the whole API.
"""

from __future__ import annotations

import sys

from signals.runners.graph import runner_worker

if not runner_worker(sys.argv):
    from api_service import *  # noqa: F403
else:
    from signals.runners.graph import SignalService as SignalService  # type: ignore[assignment]
