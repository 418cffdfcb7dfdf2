"""The track record for a trader's page (mounted with the dashboard, `web.py`): the equity curve of the served and
the paper calls beside buy-and-hold, CSV downloads of a pair's history and of the scorecard, and the alert
subscriptions (list and add; `/admin/` needs the admin scope, as every admin route).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from signals.api import export
from signals.api.openapi import published
from signals.contract import schemas
from signals.core.errors import LedgerUnavailable
from signals.core.symbols import SYMBOL_PATTERN
from signals.live.operations import Operations

M = TypeVar("M", bound=BaseModel)
# The symbol publishes the request schemas' pattern (as `compat.SymbolPath` does) and is checked by the same
# function (`schemas.checked_symbol`), so what the document calls valid is what the route accepts.
SymbolQuery = Annotated[
    str,
    Query(description="BTC/USDT, BTCUSDT or BTC-USDT", json_schema_extra={"pattern": SYMBOL_PATTERN, "maxLength": 32}),
]
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV with a header row"}
}


def query_model(model: type[M], **values: Any) -> M:
    """`model` of a route's query parameters; what it refuses is the caller's 400 with the field and what to fix
    (FastAPI's request validation, in the one error shape), not a 500 from inside the route."""
    try:
        return model(**values)
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from error


def csv_response(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def add_track_record_routes(app: FastAPI, ops: Callable[[], Operations] | None) -> None:
    """The routes above on `app`; `ops()` is the service's slot (None: a server without a track record)."""

    def operations() -> Operations:
        if ops is None:
            raise LedgerUnavailable("this server keeps no track record")
        return ops()

    @app.get("/equity", **published(schemas.EquityResponse))
    async def equity(
        timeframe: schemas.TimeframeName | None = None,
        symbol: SymbolQuery | None = None,
        calls: Annotated[
            Literal["served", "paper"], Query(description="served: trade plans; paper: probation's")
        ] = "served",
        mode: Annotated[schemas.Mode | None, Query(description="ledger records of this mode; default live")] = None,
    ) -> dict[str, Any]:
        """The equity curve of the served (or paper) calls from the resolved records after costs, beside
        buy-and-hold of the same pairs over the same period (the scorecard's after-cost returns)."""
        pair = None if symbol is None else schemas.checked_symbol(symbol)
        answer = await asyncio.to_thread(operations().equity, timeframe=timeframe, symbol=pair, calls=calls, mode=mode)
        return answer.model_dump(mode="json")

    @app.get("/export/history.csv", response_class=Response, responses=CSV_RESPONSE)
    async def history_csv(
        symbol: SymbolQuery,
        timeframe: schemas.TimeframeName | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
        mode: schemas.Mode | None = None,
    ) -> Response:
        """A pair's recorded signals and their outcomes (as `/history` answers), one CSV row each."""
        request = query_model(schemas.HistoryRequest, symbol=symbol, timeframe=timeframe, limit=limit, mode=mode)
        answer = await asyncio.to_thread(operations().history, request)
        name = f"history-{answer.symbol.replace('/', '')}-{timeframe or 'all'}.csv"
        return csv_response(export.history_csv(answer), name)

    @app.get("/export/scorecard.csv", response_class=Response, responses=CSV_RESPONSE)
    async def scorecard_csv(
        timeframe: schemas.TimeframeName | None = None,
        symbol: SymbolQuery | None = None,
        mode: schemas.Mode | None = None,
    ) -> Response:
        """The scorecard (as `/scorecard` answers), one `metric,value` row per figure."""
        request = query_model(schemas.ScorecardRequest, timeframe=timeframe, symbol=symbol, mode=mode)
        card = await asyncio.to_thread(operations().scorecard, request)
        return csv_response(export.scorecard_csv(card.model_dump(mode="json")), f"scorecard-{timeframe or 'all'}.csv")

    @app.get("/admin/alerts", **published(list[schemas.AlertSubscription]))
    async def alert_list() -> list[dict[str, Any]]:
        """The active alert subscriptions (the admin scope)."""
        return [s.model_dump(mode="json") for s in await asyncio.to_thread(operations().alert_subscriptions)]

    @app.post("/admin/alerts", **published(schemas.AlertSubscription))
    async def alert_add(body: schemas.AlertSubscriptionRequest) -> dict[str, Any]:
        """Subscribe a webhook to actionable signals (`signals alerts add URL`); the answer shows its secret once."""
        added = await asyncio.to_thread(operations().add_alert_subscription, body)
        return added.model_dump(mode="json")
