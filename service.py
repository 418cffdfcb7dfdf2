"""BentoML's entry point (`bentoml serve service:SignalService`, bentofile.yaml): the API service in `api_service.py`.

BentoML imports this module in every process of the service graph. The arbiter (`bentoml serve`) and a runner's
worker need only the graph (the services' config and dependencies: `signals.runners.graph`), not the API's routes,
apps and composition root; every other process (the API workers, `bentoml build`, tests, scripts) the whole API.
"""

from __future__ import annotations

import sys

from signals.api.request_log import quiet_client_errors
from signals.core.settings import get_settings
from signals.runners.graph import graph_only, refuse_an_impossible_device, service_graph

refuse_an_impossible_device(get_settings())
if not graph_only(sys.argv):
    from api_service import *  # noqa: F403
else:
    SignalService = service_graph()  # type: ignore[misc]  # the star import made it the API class
    quiet_client_errors()  # a runner restarting meets the calls the API gave up on: one line, not tracebacks
