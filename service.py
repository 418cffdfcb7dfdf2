"""SignalService: the HTTP API of the signal server (contract: ../shared/DESIGN.md, "HTTP contract").

A table of contents: the runners it depends on, the routes, and where each one's logic lives
(`signals.serving.engine.SignalEngine`). Compatibility GET routes are a FastAPI app mounted under /api.
Run: `bentoml serve service:SignalService` (or `make serve`).
"""

from __future__ import annotations

import gc

import bentoml

from signals.core.settings import get_settings
from signals.runners.cnn_lstm import CnnLstmRunner
from signals.runners.common import RunnerStatus
from signals.runners.ppo import PpoRunner
from signals.serving import schemas
from signals.serving.compat import EngineSlot, create_compat_app
from signals.serving.engine import SignalEngine
from signals.serving.http import answer_server_errors

engine_slot = EngineSlot()


@bentoml.service(name="signal_service", traffic={"timeout": 10}, workers=get_settings().api_workers)
@bentoml.asgi_app(create_compat_app(engine_slot), path="/api")
class SignalService:
    cnn_lstm = bentoml.depends(CnnLstmRunner)
    ppo = bentoml.depends(PpoRunner)

    def __init__(self) -> None:
        self.engine = SignalEngine.from_settings(get_settings(), self.cnn_lstm.to_async, self.ppo.to_async)
        engine_slot.bind(self.engine)
        gc.freeze()  # what is loaded now lives as long as the process: keep it out of gen-2 collections

    def __is_ready__(self) -> bool:
        return self.engine.catalog.ready

    @bentoml.on_shutdown
    async def close(self) -> None:
        engine_slot.release(self.engine)
        await self.engine.aclose()

    @bentoml.api(route="/predict", input_spec=schemas.PredictRequest)
    @answer_server_errors
    async def predict(self, symbol: str, timeframe: str) -> schemas.Signal:
        """The CNN-LSTM signal for one (symbol, timeframe), with risk levels."""
        return await self.engine.predict(symbol, timeframe)

    @bentoml.api(route="/batch", input_spec=schemas.BatchRequest)
    @answer_server_errors
    async def batch(self, timeframe: str, symbols: list[str] | None = None) -> schemas.BatchResponse:
        """Signals for many symbols on one timeframe (default: every symbol with a model); errors per symbol."""
        return await self.engine.batch(symbols, timeframe)

    @bentoml.api(route="/summary", input_spec=schemas.SummaryRequest)
    @answer_server_errors
    async def summary(self, symbol: str, timeframes: list[str] | None = None) -> schemas.SummaryResponse:
        """One symbol across timeframes (default 15m, 1h, 4h, 1d) and their consensus."""
        return await self.engine.summary(symbol, timeframes)

    @bentoml.api(route="/action", input_spec=schemas.ActionRequest)
    @answer_server_errors
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

    @bentoml.api(route="/status", input_spec=schemas.EmptyRequest)
    async def status(self) -> dict[str, RunnerStatus]:
        """What each runner loaded or refused, its device, and how it has batched (the batching proof)."""
        return {"cnn_lstm": await self.cnn_lstm.to_async.status(), "ppo": await self.ppo.to_async.status()}

    @bentoml.api(route="/models", input_spec=schemas.EmptyRequest)
    def models(self) -> list[schemas.ModelInfo]:
        """Every served model: family, symbol, timeframe, version, status, metrics, data range."""
        return self.engine.models()
