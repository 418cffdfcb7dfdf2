"""The HTTP edge: how domain errors become responses.

BentoML answers a 4xx `BentoMLException` with its message but hides the message of every 5xx. Our 503s
carry what the caller needs (which model file failed, that the exchange timed out and when to retry), so
API methods return those as a JSON response themselves, in BentoML's own 4xx body shape.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, ParamSpec, TypeVar

from starlette.responses import JSONResponse

from signals.core.errors import SignalsError
from signals.core.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")
RETRY_AFTER_S = 30


def retry_headers(error: SignalsError) -> dict[str, str] | None:
    """`Retry-After` for a 503 (the exchange or a model is unavailable for now), nothing otherwise."""
    return {"Retry-After": str(RETRY_AFTER_S)} if error.error_code == HTTPStatus.SERVICE_UNAVAILABLE else None


def error_response(error: SignalsError) -> JSONResponse:
    """BentoML's own body shape for errors: `[{"error": message}]`."""
    return JSONResponse([{"error": str(error)}], status_code=int(error.error_code), headers=retry_headers(error))


def answer_server_errors(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Let 4xx domain errors reach BentoML (which answers them), and answer 5xx ones with their message."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return await method(*args, **kwargs)
        except SignalsError as error:
            if int(error.error_code) < 500:
                raise
            return error_response(error)

    return wrapper


def cors_config(settings: Settings) -> dict[str, Any]:
    """BentoML's `http` service config: CORS for `SIGNALS_CORS_ORIGINS` on every route (the mounted apps too) and
    their preflight `OPTIONS`; none when the list is empty (the default: same origin only)."""
    if not settings.cors_origins:
        return {}
    return {
        "cors": {
            "enabled": True,
            "access_control_allow_origins": list(settings.cors_origins),
            "access_control_allow_methods": ["GET", "POST", "OPTIONS"],
            "access_control_allow_headers": ["Content-Type", "Authorization", "Last-Event-ID", "X-API-Key"],
            "access_control_expose_headers": ["Retry-After"],
            "access_control_max_age": 600,
        }
    }
