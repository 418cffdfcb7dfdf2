"""GET routes of the two older APIs, mounted into the service so existing dashboards and bots keep working.

Each route delegates to a `SignalEngine` that the app is given (dependency injection: `EngineSlot`), so the
routes run the same behind `bentoml serve` and in a plain test client. Domain errors keep their status and
message. Symbols in paths are written without a slash: `BTCUSDT` or `BTC-USDT`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from signals.core.errors import SignalsError
from signals.models.families import PPO
from signals.serving import schemas
from signals.serving.engine import SignalEngine
from signals.serving.http import retry_headers


class EngineSlot:
    """Where a service puts its engine once built, for routes that were mounted before it existed.

    A stack, not a variable: a second service instance in the same process (tests do this) binds its own
    engine and releases it on shutdown, and the first one's is current again.
    """

    def __init__(self) -> None:
        self._engines: list[SignalEngine] = []

    def bind(self, engine: SignalEngine) -> None:
        self._engines.append(engine)

    def release(self, engine: SignalEngine) -> None:
        if engine in self._engines:
            self._engines.remove(engine)

    def __call__(self) -> SignalEngine:
        if not self._engines:
            raise HTTPException(503, "the service is starting; retry in a few seconds", {"Retry-After": "5"})
        return self._engines[-1]


def _engine(request: Request) -> SignalEngine:
    engine: SignalEngine = request.app.state.engine()
    return engine


EngineDep = Annotated[SignalEngine, Depends(_engine)]
router = APIRouter()


def _split(values: str | None) -> list[str] | None:
    return [v.strip() for v in values.split(",") if v.strip()] if values else None


@router.get("/predictions", response_model=schemas.BatchResponse)
async def predictions(
    engine: EngineDep,
    timeframe: str = "1h",
    symbols: Annotated[str | None, Query(description="Comma-separated")] = None,
) -> schemas.BatchResponse:
    return await engine.batch(_split(symbols), timeframe)


@router.get("/predictions/{symbol}", response_model=schemas.Signal)
async def prediction(engine: EngineDep, symbol: str, timeframe: str = "1h") -> schemas.Signal:
    return await engine.predict(symbol, timeframe)


@router.get("/predictions/{symbol}/summary", response_model=schemas.SummaryResponse)
async def prediction_summary(
    engine: EngineDep, symbol: str, timeframes: Annotated[str | None, Query(description="Comma-separated")] = None
) -> schemas.SummaryResponse:
    return await engine.summary(symbol, _split(timeframes))


@router.get("/v1/prediction/predict/{symbol}", response_model=schemas.Action)
async def ppo_prediction(
    engine: EngineDep,
    symbol: str,
    include_explanation: bool = False,
    timeframe: str | None = None,
    position: Literal["flat", "long"] = "flat",
    entry_price: Annotated[float | None, Query(gt=0)] = None,
) -> schemas.Action:
    try:
        held = schemas.Position(side=position, entry_price=entry_price)
    except ValidationError as error:
        raise HTTPException(400, f"bad position: {error.errors()[0]['msg']}") from error
    request = schemas.ActionRequest(
        symbol=symbol, timeframe=timeframe, position=held, include_explanation=include_explanation
    )
    return await engine.action(request)


@router.get("/v1/prediction/model/info")
async def model_info(engine: EngineDep) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in engine.models() if m.family == PPO.name]


@router.get("/v1/prediction/model/health")
async def model_health(engine: EngineDep) -> dict[str, Any]:
    models = engine.models()
    unavailable = [m.name for m in models if m.status != "ok"]
    healthy = bool(models) and len(unavailable) < len(models)
    return {
        "status": "healthy" if healthy and not unavailable else "degraded" if healthy else "unhealthy",
        "models": len(models),
        "unavailable": unavailable,
    }


def create_compat_app(engine: Callable[[], SignalEngine]) -> FastAPI:
    """The compatibility routes, answering from `engine()` (an `EngineSlot`, or any function returning one)."""
    app = FastAPI(title="Compatibility routes", description="GET routes of the earlier prediction APIs.")
    app.state.engine = engine

    @app.exception_handler(SignalsError)
    async def _domain_error(_: Request, error: SignalsError) -> JSONResponse:
        """FastAPI's body shape (`{"detail": ...}`), with the same status and Retry-After as the POST routes."""
        return JSONResponse({"detail": str(error)}, status_code=int(error.error_code), headers=retry_headers(error))

    app.include_router(router)
    return app
