"""SignalService: the HTTP API of the signal server (routes: the README, "Asking for signals"; the published
document at /docs.json; how it is built: docs/architecture.md).

A table of contents: the runners it depends on and the routes; each route is one call to the composition root
(`signals.live.operations.Operations`), which owns the engine, the catalog, the ledger and the background loops.
Compatibility GET routes are a FastAPI app mounted under /api; the dashboard (/ui), the OpenAPI page (/docs), the
event stream (/api/stream) and the WebSocket (/ws/{client_id}) one mounted at the root.
Run: `bentoml serve service:SignalService` (or `make serve`): `service.py` imports this module in every process
but the arbiter and the runners' workers (`signals.runners.graph`).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from datetime import datetime
from typing import Any

import bentoml

from signals.api.compat import create_compat_app
from signals.api.deadline import BodyDeadline
from signals.api.edge import Edge, EdgeRules
from signals.api.errors import answer_errors
from signals.api.exposure import warn_if_exposed
from signals.api.fastlane import FastLane
from signals.api.openapi import openapi_document, package_version
from signals.api.outermost import add_outermost_middleware, edge_outermost
from signals.api.readiness import runner_ready
from signals.api.request_log import quiet_client_errors
from signals.api.slots import Slot
from signals.api.web import create_web_app
from signals.contract import schemas
from signals.core.logs import configure_logging
from signals.core.settings import get_settings
from signals.live.operations import Operations
from signals.live.push import PushHub
from signals.runners.cnn_lstm import CnnLstmRunner
from signals.runners.families import FamiliesRunner
from signals.runners.graph import api_service_config
from signals.runners.ppo import PpoRunner
from signals.serving.engine import SignalEngine

logger = logging.getLogger(__name__)
engine_slot: Slot[SignalEngine] = Slot("the signal engine")
hub_slot: Slot[PushHub] = Slot("the push stream (it needs the ledger)")
ops_slot: Slot[Operations] = Slot("the track record")
settings = get_settings()


compat_app = create_compat_app(engine_slot)
web_app = create_web_app(
    engine_slot,
    hub_slot,
    ops_slot,
    heartbeat_s=settings.stream_heartbeat_s,
    max_message_bytes=settings.ws_max_message_bytes,
)


RUNNER_PROBE_TIMEOUT_S = 5  # BentoML's own probe waited as long; /readyz answers within TRAFFIC_TIMEOUT_S


@bentoml.service(**api_service_config(settings))  # name, traffic, workers, CORS, probe, access log: one place
@bentoml.asgi_app(compat_app, path="/api")
@bentoml.asgi_app(web_app, path="/")
class SignalService:
    """See the module doc."""

    # In one process tree by default; with SIGNALS_CNN_LSTM_URL / SIGNALS_PPO_URL set, each runner is its own
    # deployment (`bentoml serve signals.runners.cnn_lstm:CnnLstmRunner`), reached by URL, scaled on its own.
    cnn_lstm = bentoml.depends(CnnLstmRunner, url=settings.cnn_lstm_url)
    ppo = bentoml.depends(PpoRunner, url=settings.ppo_url)
    families = bentoml.depends(FamiliesRunner, url=settings.families_url)  # every installed family (plugin.py)

    def __init__(self) -> None:
        configure_logging(settings.log_format)  # in the worker, after BentoML installed its handlers
        # the composition root: the ledger and its writer, the catalog of served versions, the engine, the loops
        self.ops = Operations.start(get_settings(), self.cnn_lstm.to_async, self.ppo.to_async, self.families.to_async)
        self.engine = self.ops.engine
        engine_slot.bind(self.engine)
        ops_slot.bind(self.ops)
        if self.ops.hub is not None:
            hub_slot.bind(self.ops.hub)
        gc.freeze()  # what is loaded now lives as long as the process: keep it out of gen-2 collections

    @bentoml.on_startup
    async def start_background(self) -> None:
        # the push stream's tail, alerts, the candle-close loop, and the Telegram bot in the first worker only
        first_worker = bentoml.server_context.worker_index in (None, 1)
        self.ops.start_background(first_worker=first_worker)
        if first_worker:
            warn_if_exposed(get_settings())

    async def __is_ready__(self) -> bool:
        """Ready once a model is verified and every served pair computed once (a request meets the cache), and every
        runner answers its own /readyz in time."""
        if not self.ops.ready:
            return False
        runners = (self.cnn_lstm, self.ppo, self.families)
        return all(await asyncio.gather(*(runner_ready(r, RUNNER_PROBE_TIMEOUT_S) for r in runners)))

    @bentoml.on_shutdown
    async def close(self) -> None:
        engine_slot.release(self.engine)
        ops_slot.release(self.ops)
        if self.ops.hub is not None:
            hub_slot.release(self.ops.hub)
        await self.ops.stop()

    @bentoml.api(route="/predict", input_spec=schemas.PredictRequest)
    @answer_errors
    async def predict(self, symbol: str, timeframe: str) -> schemas.Signal:
        """The CNN-LSTM signal for one (symbol, timeframe): actionable with risk levels only when the model has an
        edge and the call clears its threshold."""
        return await self.engine.predict(symbol, timeframe)

    @bentoml.api(route="/batch", input_spec=schemas.BatchRequest)
    @answer_errors
    async def batch(self, timeframe: str, symbols: list[str] | None = None) -> schemas.BatchResponse:
        """Signals for many symbols on one timeframe (default: every symbol with a model); errors per symbol."""
        return await self.engine.batch(symbols, timeframe)

    @bentoml.api(route="/summary", input_spec=schemas.SummaryRequest)
    @answer_errors
    async def summary(self, symbol: str, timeframes: list[str] | None = None) -> schemas.SummaryResponse:
        """One symbol across timeframes (default 15m, 1h, 4h, 1d) and the consensus of the actionable ones."""
        return await self.engine.summary(symbol, timeframes)

    @bentoml.api(route="/action", input_spec=schemas.ActionRequest)
    @answer_errors
    async def action(
        self,
        symbol: str,
        timeframe: str | None = None,
        position: schemas.Position | None = None,
        include_explanation: bool = False,
    ) -> schemas.Action:
        """The PPO policy's action for a caller who is flat or long."""
        request = schemas.ActionRequest(
            symbol=symbol,
            timeframe=timeframe,
            position=position or schemas.Position(),
            include_explanation=include_explanation,
        )
        return await self.engine.action(request)

    @bentoml.api(route="/models", input_spec=schemas.EmptyRequest)
    @answer_errors
    async def models(self) -> list[schemas.ModelInfo]:
        """Every served model: family, symbol, timeframe, version, status, edge, walk-forward and live figures."""
        return await asyncio.to_thread(self.ops.model_infos)

    @bentoml.api(route="/scorecard", input_spec=schemas.ScorecardRequest)
    @answer_errors
    async def scorecard(
        self,
        timeframe: str | None = None,
        symbol: str | None = None,
        model_version: str | None = None,
        mode: schemas.Mode | None = None,
        since: datetime | None = None,
    ) -> schemas.Scorecard:
        """How the recorded signals did: accuracy and hit rate with intervals beside the baselines, calibration,
        after-cost expectancy of the actionable calls, and a verdict."""
        request = schemas.ScorecardRequest(
            timeframe=timeframe, symbol=symbol, model_version=model_version, mode=mode, since=since
        )
        return await asyncio.to_thread(self.ops.scorecard, request)

    @bentoml.api(route="/history", input_spec=schemas.HistoryRequest)
    @answer_errors
    async def history(
        self, symbol: str, timeframe: str | None = None, limit: int = 100, mode: schemas.Mode | None = None
    ) -> schemas.HistoryResponse:
        """A pair's recorded signals, newest first, each with its outcome once its horizon ended."""
        request = schemas.HistoryRequest(symbol=symbol, timeframe=timeframe, limit=limit, mode=mode)
        return await asyncio.to_thread(self.ops.history, request)

    @bentoml.api(route="/replay", input_spec=schemas.ReplayRequest)
    @answer_errors
    async def replay(self, symbol: str, timeframe: str, candle_time: datetime) -> schemas.ReplayResponse:
        """Rebuild a recorded signal from the stored candles and its model version; compare field by field."""
        request = schemas.ReplayRequest(symbol=symbol, timeframe=timeframe, candle_time=candle_time)
        return await self.ops.replay(request)

    @bentoml.api(route="/status", input_spec=schemas.EmptyRequest)
    @answer_errors
    async def status(self) -> schemas.StatusResponse:
        """Runners (what they loaded, device, batching), the ledger, the scheduler, the served versions."""
        return await self.ops.status_with_runners(
            {
                "cnn_lstm": ("CNN-LSTM", self.cnn_lstm.to_async.status),
                "ppo": ("PPO", self.ppo.to_async.status),
                "families": ("installed families", self.families.to_async.status),
            }
        )

    @bentoml.api(route="/admin/reload", input_spec=schemas.EmptyRequest)
    @answer_errors
    async def reload(self) -> schemas.ReloadResponse:
        """Pick up the model versions now in the store (new candidates go to shadow, promotions take effect)."""
        return await asyncio.to_thread(self.ops.reload)

    @bentoml.api(route="/admin/refresh", input_spec=schemas.RefreshRequest)
    @answer_errors
    async def refresh(self, timeframe: str) -> schemas.RefreshResponse:
        """Compute, record and push every signal of a timeframe now (e.g. after importing candles)."""
        return await self.ops.refresh_now(timeframe)

    @bentoml.api(route="/admin/promote", input_spec=schemas.VersionRequest)
    @answer_errors
    async def promote(self, model: str, version: str | None = None, force: bool = False) -> schemas.VersionDecision:
        """Serve a candidate version when its scorecard beats the served one's (versions.PROMOTION_RULE)."""
        return await asyncio.to_thread(self.ops.promote, model, version, force=force)

    @bentoml.api(route="/admin/rollback", input_spec=schemas.VersionRequest)
    @answer_errors
    async def rollback(self, model: str, version: str | None = None, force: bool = False) -> schemas.VersionDecision:
        """Serve again an earlier version: `version` (one served before; any stored one with `force`), by default
        the one served before the last promotion; a pinned model needs `force`."""
        return await asyncio.to_thread(self.ops.rollback, model, version, force=force)


# The decorators made SignalService a bentoml.Service (its stubs still say the class).
service: bentoml.Service[Any] = SignalService
# Outside BentoML's own middleware by default (signals.api.outermost): a refusal or a cached /predict answered by the
# edge skips BentoML's metrics, spans, access log and router; every other request passes the edge once, then all of it.
outside = edge_outermost(settings)  # SIGNALS_EDGE_OUTERMOST, unless the access log is on
add_middleware = functools.partial(add_outermost_middleware, service) if outside else service.add_asgi_middleware
add_middleware(BodyDeadline, timeout_s=settings.body_timeout_s)  # a trickled body: 408, not 504
add_middleware(  # host, key, body, budget, error shape; a cached /predict answered from its bytes
    Edge, rules=EdgeRules.from_settings(settings), lane=FastLane(engine_slot.current, service.name)
)
web_app.state.openapi = functools.cache(
    lambda: openapi_document(
        service,
        {"/api": compat_app, "": web_app},
        title="trading-signals",
        version=package_version(),
        keys=bool(settings.api_keys),
        universe=len(settings.universe),
    )
)
quiet_client_errors()
