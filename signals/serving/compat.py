"""GET routes of the two older APIs, in the shapes their clients read (`legacy.py`), mounted under /api.

Each route asks the `SignalEngine` the service binds into a `Slot` (dependency injection), so the routes run the
same behind `bentoml serve` and in a plain test client. Symbols in paths are written without a slash: `BTCUSDT`
or `BTC-USDT`. Every error, ours or the framework's, answers `{success: false, error, detail}` with its status
(and `Retry-After` on a 503), the envelope the older clients check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from signals.core.errors import SignalsError
from signals.serving import legacy, schemas
from signals.serving.engine import SignalEngine
from signals.serving.http import retry_headers

DEFAULT_TIMEFRAME = "15m"  # the first older API's default
SERVICE_NAME = "signal_service"


def _engine(request: Request) -> SignalEngine:
    engine: SignalEngine = request.app.state.engine()
    return engine


EngineDep = Annotated[SignalEngine, Depends(_engine)]
CommaSeparated = Annotated[str | None, Query(description="Comma-separated, e.g. BTCUSDT,ETH-USDT")]
router = APIRouter()


def split_csv(values: str | None) -> list[str] | None:
    return [v.strip() for v in values.split(",") if v.strip()] if values else None


@router.get("/predictions")
async def predictions(
    engine: EngineDep, timeframe: str = DEFAULT_TIMEFRAME, symbols: CommaSeparated = None
) -> dict[str, Any]:
    """Every symbol with a model on the timeframe (or `symbols`), keyed by its compact name."""
    return legacy.predictions_envelope(await engine.batch(split_csv(symbols), timeframe))


@router.get("/predictions/{symbol}")
async def prediction(engine: EngineDep, symbol: str, timeframe: str = DEFAULT_TIMEFRAME) -> dict[str, Any]:
    return legacy.prediction_envelope(await engine.predict(symbol, timeframe))


@router.get("/predictions/{symbol}/summary")
async def prediction_summary(engine: EngineDep, symbol: str, timeframes: CommaSeparated = None) -> dict[str, Any]:
    return legacy.summary_envelope(await engine.summary(symbol, split_csv(timeframes)))


@router.get("/v1/prediction/predict/{symbol}")
async def ppo_prediction(
    engine: EngineDep,
    symbol: str,
    include_explanation: bool = False,
    timeframe: str | None = None,
    position: Literal["flat", "long"] = "flat",
    entry_price: Annotated[float | None, Query(gt=0)] = None,
) -> dict[str, Any]:
    """The PPO policy's action; `symbol` is answered as written."""
    try:
        held = schemas.Position(side=position, entry_price=entry_price)
    except ValidationError as error:
        raise HTTPException(400, f"bad position: {error.errors()[0]['msg']}") from error
    request = schemas.ActionRequest(
        symbol=symbol, timeframe=timeframe, position=held, include_explanation=include_explanation
    )
    action = await engine.action(request)
    return legacy.ppo_prediction(action, symbol_as_written=symbol, at=engine.clock())


@router.get("/v1/prediction/model/info")
async def model_info(engine: EngineDep) -> dict[str, Any]:
    return legacy.ppo_model_info(engine.models(), engine.settings.ppo_timeframe)


@router.get("/v1/prediction/model/health")
async def model_health(engine: EngineDep) -> JSONResponse:
    """200 `healthy` when the default policy serves, else 503 `unavailable` (with the reason in `message`)."""
    body = legacy.ppo_model_health(engine.models(), engine.settings.ppo_timeframe, SERVICE_NAME)
    return JSONResponse(body, status_code=200 if body["model_loaded"] else 503)


def error_body(status: int, message: str) -> dict[str, Any]:
    """The older APIs' error envelope: `error` is the reason phrase's kind, `detail` what to fix."""
    kind = "client error" if status < 500 else "service unavailable" if status == 503 else "server error"
    return {"success": False, "error": message if status < 500 else kind, "detail": message, "status": status}


def add_error_envelopes(app: FastAPI) -> None:
    """Every error of `app` in the older envelope (domain errors, HTTP errors, request validation -> 400)."""

    @app.exception_handler(SignalsError)
    async def _domain_error(_: Request, error: SignalsError) -> JSONResponse:
        status = int(error.error_code)
        return JSONResponse(error_body(status, str(error)), status_code=status, headers=retry_headers(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(error.status_code, str(error.detail)), status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path"))
        return JSONResponse(error_body(400, f"{where}: {first.get('msg')}".strip(": ")), status_code=400)


def create_compat_app(engine: Callable[[], SignalEngine]) -> FastAPI:
    """The compatibility routes, answering from `engine()` (a `Slot`, or any function returning an engine)."""
    app = FastAPI(title="Compatibility routes", description="GET routes of the earlier prediction APIs.")
    app.state.engine = engine
    add_error_envelopes(app)
    app.include_router(router)
    return app
