"""Domain errors, each carrying the HTTP status it maps to.

They subclass BentoML's exception classes so that an API method can simply let them propagate:
BentoML answers with ``error_code`` and, for 4xx, the message. Messages say what to fix.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException


class SignalsError(BentoMLException):
    """Base of every error this project raises on purpose. `retry_after_s`: when a caller may try again (503, 429)."""

    error_code = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.errors: list[dict[str, Any]] = []  # the parts of a failure of several (the error shape's `errors`)


class InvalidInput(SignalsError, ValueError):
    """The caller sent something malformed (400)."""

    error_code = HTTPStatus.BAD_REQUEST


class InvalidSymbol(InvalidInput):
    """A symbol that does not match the accepted spellings."""


class InvalidTimeframe(InvalidInput):
    """A timeframe outside the supported set."""


class CandleDataError(SignalsError, ValueError):
    """Candles that break the candle-frame contract (NaN, unsorted, off-grid, ...): 422."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


class NotEnoughCandles(CandleDataError):
    """Fewer closed candles than a window needs: 422, saying how many were found and needed."""


class DataNotFound(SignalsError, LookupError):
    """The store holds no candles for a (symbol, timeframe): 404."""

    error_code = HTTPStatus.NOT_FOUND


class ExchangeUnavailable(SignalsError):
    """The exchange timed out, rate-limited us past our retries, or answered 5xx: 503."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


class ModelNotFound(SignalsError, LookupError):
    """No stored model for the asked (family, symbol, timeframe): 404, listing what exists."""

    error_code = HTTPStatus.NOT_FOUND


class ModelIntegrityError(SignalsError):
    """A stored model file is missing, fails its SHA-256, or was built for other features: 503 for that model."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


class LedgerUnavailable(SignalsError):
    """The ledger database does not answer (down, full disk, read-only): 503 for what needs it."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


class PayloadTooLarge(InvalidInput):
    """A body or a list larger than the server accepts: 413, saying the limit."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaType(InvalidInput):
    """A body that is not JSON: 415."""

    error_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class Unauthorized(SignalsError):
    """No API key, or one the server does not know: 401."""

    error_code = HTTPStatus.UNAUTHORIZED


class Forbidden(SignalsError):
    """A known API key without the scope the route needs: 403."""

    error_code = HTTPStatus.FORBIDDEN


class TooManyRequests(SignalsError):
    """An API key over its rate limit: 429 with Retry-After."""

    error_code = HTTPStatus.TOO_MANY_REQUESTS


class RunnerUnavailable(SignalsError):
    """A model runner does not answer (restarting after a crash, overloaded): 503 with Retry-After."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


class StorageUnavailable(SignalsError):
    """The data directory cannot be written (disk full, read-only): 503 in the server, one line in the CLI."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


class Conflict(SignalsError):
    """The request is well-formed but the state does not allow it (nothing to roll back to): 409."""

    error_code = HTTPStatus.CONFLICT


class RequestTimeout(InvalidInput):
    """A request body that did not arrive within the request budget (a trickled body): 408."""

    error_code = HTTPStatus.REQUEST_TIMEOUT


class OverBudget(SignalsError):
    """A request that could not be answered within the request budget: 503 with Retry-After."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


class StillComputing(SignalsError):
    """A signal not cached yet whose computation outlasts the request budget: 503 with Retry-After (it goes on)."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE
