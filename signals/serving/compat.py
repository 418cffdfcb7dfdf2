"""GET routes of the two older APIs, mounted into the service so existing dashboards and bots keep working.

Each route delegates to the running service's `SignalEngine`; domain errors keep their status and message.
Symbols in paths are written without a slash: `BTCUSDT` or `BTC-USDT`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import bentoml
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from signals.core.errors import SignalsError
from signals.serving import schemas
from signals.serving.engine import SignalEngine
from signals.serving.http import retry_headers

compat_app = FastAPI(title="Compatibility routes", description="GET routes of the earlier prediction APIs.")


@compat_app.exception_handler(SignalsError)
async def _domain_error(_: Request, error: SignalsError) -> JSONResponse:
    """FastAPI's body shape (`{"detail": ...}`), with the same status and Retry-After as the POST routes."""
    return JSONResponse({"detail": str(error)}, status_code=int(error.error_code), headers=retry_headers(error))


def _engine() -> SignalEngine:
    engine: SignalEngine = bentoml.get_current_service().engine
    return engine


def _split(values: str | None) -> list[str] | None:
    return [v.strip() for v in values.split(",") if v.strip()] if values else None


@compat_app.get("/predictions", response_model=schemas.BatchResponse)
async def predictions(
    timeframe: str = "1h", symbols: Annotated[str | None, Query(description="Comma-separated")] = None
) -> schemas.BatchResponse:
    return await _engine().batch(_split(symbols), timeframe)


@compat_app.get("/predictions/{symbol}", response_model=schemas.Signal)
async def prediction(symbol: str, timeframe: str = "1h") -> schemas.Signal:
    return await _engine().predict(symbol, timeframe)


@compat_app.get("/predictions/{symbol}/summary", response_model=schemas.SummaryResponse)
async def prediction_summary(
    symbol: str, timeframes: Annotated[str | None, Query(description="Comma-separated")] = None
) -> schemas.SummaryResponse:
    return await _engine().summary(symbol, _split(timeframes))


@compat_app.get("/v1/prediction/predict/{symbol}", response_model=schemas.Action)
async def ppo_prediction(
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
    return await _engine().action(request)


@compat_app.get("/v1/prediction/model/info")
async def model_info() -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in _engine().models() if m.family == "ppo"]


@compat_app.get("/v1/prediction/model/health")
async def model_health() -> dict[str, Any]:
    models = _engine().models()
    unavailable = [m.name for m in models if m.status != "ok"]
    healthy = bool(models) and len(unavailable) < len(models)
    return {
        "status": "healthy" if healthy and not unavailable else "degraded" if healthy else "unhealthy",
        "models": len(models),
        "unavailable": unavailable,
    }
