"""GET routes of the two older APIs, in the shapes their clients read (`legacy.py`), mounted under /api.

Each route asks the `SignalEngine` the service binds into a `Slot` (dependency injection), so the routes run the
same behind `bentoml serve` and in a plain test client. Symbols in paths are written without a slash: `BTCUSDT`
or `BTC-USDT`. Every error, ours or the framework's, answers `{success: false, error, detail}` with its status
(and `Retry-After` on a 503), the one error shape of `http.py`, which is the envelope the older clients check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from signals.api import legacy
from signals.api.errors import error_body, ledger_outage, retry_headers, validation_errors, validation_message
from signals.api.openapi import published
from signals.contract import schemas
from signals.core.errors import InvalidInput, SignalsError
from signals.core.symbols import SYMBOL_PATTERN, symbols_csv_pattern
from signals.core.timeframes import timeframes_csv_pattern
from signals.ledger.outage import is_outage
from signals.serving.engine import SignalEngine

DEFAULT_TIMEFRAME: Final = "15m"  # the first older API's default
SERVICE_NAME = "signal_service"


def _engine(request: Request) -> SignalEngine:
    engine: SignalEngine = request.app.state.engine()
    return engine


EngineDep = Annotated[SignalEngine, Depends(_engine)]
# Path and query parameters publish the request schemas' pattern and enum; the routes check them with the same
# functions as the POST bodies (`schemas.checked_symbol`), so the published schema and the answers agree.
SymbolPath = Annotated[
    str, Path(description="BTCUSDT or BTC-USDT", json_schema_extra={"pattern": SYMBOL_PATTERN, "maxLength": 32})
]
SymbolList = Annotated[
    str | None,
    Query(description="Comma-separated, e.g. BTCUSDT,ETH-USDT", json_schema_extra={"pattern": symbols_csv_pattern()}),
]
TimeframeList = Annotated[
    str | None,
    Query(description="Comma-separated, e.g. 15m,1h", json_schema_extra={"pattern": timeframes_csv_pattern()}),
]
router = APIRouter()


def split_csv(values: str | None) -> list[str] | None:
    """None when the parameter is absent; a list of the comma-separated items otherwise (400 when empty)."""
    if values is None:
        return None
    items = [v.strip() for v in values.split(",")]
    if not all(items):
        raise InvalidInput(f"empty item in {values[:60]!r}: a comma-separated list of one or more values, no blanks")
    return items


def symbols_of(values: str | None) -> list[str] | None:
    symbols = split_csv(values)
    return None if symbols is None else [schemas.checked_symbol(s) for s in symbols]


@router.get("/predictions", **published(schemas.LegacyPredictions))
async def predictions(
    engine: EngineDep, timeframe: schemas.TimeframeName = DEFAULT_TIMEFRAME, symbols: SymbolList = None
) -> dict[str, Any]:
    """Every symbol with a model on the timeframe (or `symbols`), keyed by its compact name."""
    return legacy.predictions_envelope(await engine.batch(symbols_of(symbols), timeframe))


@router.get("/predictions/{symbol}", **published(schemas.LegacyPredictionEnvelope))
async def prediction(
    engine: EngineDep, symbol: SymbolPath, timeframe: schemas.TimeframeName = DEFAULT_TIMEFRAME
) -> dict[str, Any]:
    return legacy.prediction_envelope(await engine.predict(schemas.checked_symbol(symbol), timeframe))


@router.get("/predictions/{symbol}/summary", **published(schemas.LegacySummary))
async def prediction_summary(engine: EngineDep, symbol: SymbolPath, timeframes: TimeframeList = None) -> dict[str, Any]:
    return legacy.summary_envelope(await engine.summary(schemas.checked_symbol(symbol), split_csv(timeframes)))


@router.get("/v1/prediction/predict/{symbol}", **published(schemas.LegacyPpoPrediction))
async def ppo_prediction(
    engine: EngineDep,
    symbol: SymbolPath,
    include_explanation: bool = False,
    timeframe: schemas.TimeframeName | None = None,
    position: Literal["flat", "long"] = "flat",
    entry_price: Annotated[
        float | None,
        Query(ge=schemas.MIN_PRICE, le=schemas.MAX_PRICE, description="Read only with position=long."),
    ] = None,
) -> dict[str, Any]:
    """The PPO policy's action; `symbol` is answered as written."""
    if position == "flat":
        entry_price = None  # a query string cannot tie two parameters together: a flat position has no entry
    try:
        held = schemas.Position(side=position, entry_price=entry_price)
    except ValidationError as error:
        raise HTTPException(400, f"bad position: {error.errors()[0]['msg']}") from error
    try:
        request = schemas.ActionRequest(
            symbol=symbol, timeframe=timeframe, position=held, include_explanation=include_explanation
        )
    except ValidationError as error:
        first = error.errors()[0]
        raise HTTPException(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from error
    action = await engine.action(request)
    return legacy.ppo_prediction(action, symbol_as_written=symbol, at=engine.clock())


@router.get("/v1/prediction/model/info", **published(schemas.LegacyModelInfo))
async def model_info(engine: EngineDep) -> dict[str, Any]:
    return legacy.ppo_model_info(engine.models(), engine.settings.ppo_timeframe)


@router.get("/v1/prediction/model/health", **published(schemas.LegacyModelHealth))
async def model_health(engine: EngineDep) -> dict[str, Any]:
    """`healthy` when the default policy serves, else `unavailable` with the reason in `message` (200 either way,
    as the older API answered: its clients read `status`, and our error shape has a numeric one)."""
    return legacy.ppo_model_health(engine.models(), engine.settings.ppo_timeframe, SERVICE_NAME)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on the request's path: Starlette's 405 names only the first
    route whose path matched (`GET` for `/admin/alerts`, whose `POST` is another route)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def add_error_envelopes(app: FastAPI) -> None:
    """Every error of `app` in the older envelope (domain errors, HTTP errors, request validation -> 400, the
    ledger's database down -> 503)."""

    @app.exception_handler(SignalsError)
    async def _domain_error(_: Request, error: SignalsError) -> JSONResponse:
        status = int(error.error_code)
        return JSONResponse(error_body(status, str(error)), status_code=status, headers=retry_headers(error))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = error.headers
        if error.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(
            error_body(error.status_code, str(error.detail)), status_code=error.status_code, headers=headers
        )

    @app.exception_handler(sa.exc.SQLAlchemyError)
    async def _database_error(request: Request, error: sa.exc.SQLAlchemyError) -> JSONResponse:
        if is_outage(error):
            return ledger_outage(error, request.url.path)
        raise error  # a bug, not an outage: the server's own 500

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        fields = validation_errors(error.errors())
        message = validation_message(fields)
        return JSONResponse(error_body(400, message or "invalid request", errors=fields), status_code=400)


def create_compat_app(engine: Callable[[], SignalEngine]) -> FastAPI:
    """The compatibility routes, answering from `engine()` (a `Slot`, or any function returning an engine)."""
    app = FastAPI(title="Compatibility routes", description="GET routes of the earlier prediction APIs.")
    app.state.engine = engine
    add_error_envelopes(app)
    app.include_router(router)
    return app
