"""The HTTP edge: one error shape for every route, and how domain errors become responses.

Every error the contract's routes answer, whoever raised it (our domain errors, request validation, BentoML,
FastAPI, an unknown route), has one body:

    {"success": false, "status": 400, "error": "what is wrong and what to fix", "detail": "<the same message>",
     "errors": [{"field": "symbol", "message": "..."}]}      # `errors` only for request validation

`success` and `detail` are what the older clients read (`legacy.py`); `error` is the message. 503 and 429 carry
`Retry-After`. API methods answer domain errors themselves (`answer_errors`), so BentoML never logs a caller's
mistake as a traceback; the edge middleware (`edge.py`, `middleware.shaping_send`) rewrites what reaches the wire
otherwise.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from starlette.responses import JSONResponse

from signals.core.errors import SignalsError
from signals.ledger.outage import describe, is_outage, unavailable

P = ParamSpec("P")
R = TypeVar("R")
RETRY_AFTER_S = 30
RETRY_STATUSES = (HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.TOO_MANY_REQUESTS)


def error_body(status: int, message: str, *, errors: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The one error shape (see the module doc); absolute paths of this machine are left out of `message`."""
    message = public_message(message)
    body: dict[str, Any] = {"success": False, "status": status, "error": message, "detail": message}
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return body


def public_message(message: str) -> str:
    """`message` without this machine's absolute paths (the data directory, the model store, the home
    directory): what a caller needs is which file of which store, not where it lives."""
    from signals.core.settings import get_settings

    for path, label in _path_labels(get_settings().data_dir):
        message = message.replace(path, label)
    return message


@functools.cache
def _path_labels(data_dir: Path) -> tuple[tuple[str, str], ...]:
    """What `public_message` replaces, worked out once per data directory (resolving paths is file-system work, and
    every error body goes through it)."""
    replacements = [
        (str(data_dir.resolve()), "<data>"),
        (str(_model_store()), "<model store>"),
        (str(Path.home()), "~"),
    ]
    if data_dir.is_absolute():
        replacements.insert(1, (str(data_dir), "<data>"))
    return tuple((path, label) for path, label in replacements if path and path not in ("/", "."))


@functools.cache
def _model_store() -> str:
    try:
        from signals.models.registry import store_root

        return str(store_root())
    except Exception:  # no BentoML home configured: nothing to hide
        return ""


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's (or FastAPI's) error list as `[{field, message}]`, the field a dotted path of the input."""
    out = []
    for error in errors:
        where = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
        out.append(
            {
                "field": ".".join(where),
                "message": str(error.get("msg", "invalid value")),
                "type": str(error.get("type")),
            }
        )
    return out


def validation_message(fields: Sequence[Mapping[str, str]]) -> str:
    """The fields of `validation_errors` in one line: `field: message; ...`."""
    return "; ".join(f"{f['field']}: {f['message']}" if f["field"] else f["message"] for f in fields)


def retry_headers(error: SignalsError) -> dict[str, str] | None:
    """`Retry-After` for a 503 or 429 (the error's own delay when it knows one), nothing otherwise."""
    if error.error_code not in RETRY_STATUSES:
        return None
    delay = error.retry_after_s
    return {"Retry-After": str(max(1, math.ceil(delay)) if delay is not None else RETRY_AFTER_S)}


def error_response(error: SignalsError) -> JSONResponse:
    status = int(error.error_code)
    body = error_body(status, str(error), errors=getattr(error, "errors", None))
    return JSONResponse(body, status_code=status, headers=retry_headers(error))


def answer_errors(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Answer every domain error in the one shape (BentoML hides 5xx messages and logs 4xx as tracebacks), and the
    ledger database not answering as the 503 + Retry-After it is (`ledger_outage`)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return await method(*args, **kwargs)
        except SignalsError as error:
            if int(error.error_code) >= 500:
                logging.getLogger(method.__module__).warning("%s: %s", method.__name__, error)
            return error_response(error)
        except Exception as error:
            if not is_outage(error):
                raise
            return ledger_outage(error, method.__name__)

    return wrapper


def ledger_outage(error: BaseException, where: str) -> JSONResponse:
    """503 + Retry-After for a database error that says the ledger is down (stopped, locked, unreadable): the
    driver's words go to the log, not to the caller."""
    logging.getLogger(__name__).warning("%s: the ledger does not answer: %s", where, describe(error))
    return error_response(unavailable(error))
