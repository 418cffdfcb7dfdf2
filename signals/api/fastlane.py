"""The fast lane: a `/predict` whose signal is cached, answered by the edge from the signal's JSON bytes.

Why: the engine answers a cache hit in microseconds, but BentoML's route around it (its request context, router,
request parsing and validation, response model, serialisation) was most of a warm request's CPU (docs/architecture.md,
"The warm path"). The edge has done by then what the contract asks of every request (Host and Origin, keys and rate
limits, the body's type and size, the request budget, `X-Request-ID`); the lane answers only what it can answer
exactly as the route would, byte for byte (body and headers), and hands everything else to the route untouched:
another path or method, a query string, an `Origin` (the CORS headers are BentoML's), a body the request model
would not take as it is, a pair whose signal is not cached, an engine not started yet, any error (the route
answers it in the one shape). The cached signal's JSON is made once per signal and form (fresh, stale) by the
engine (`SignalEngine.cached_json`), and a hit is counted in the same cache metrics as the route's. With the edge
outside BentoML's middleware (`outermost.py`, the default) a hit skips that too: BentoML's HTTP metrics, spans and
access log do not see it, and its ids are the edge's own (`ids.py`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Protocol

from pydantic import ValidationError

from signals.api.ids import span_id, trace_id
from signals.api.middleware import Scope, Send, header
from signals.contract.schemas import PredictRequest

logger = logging.getLogger(__name__)
PATH = "/predict"


class CachedAnswers(Protocol):
    async def cached_json(self, raw_symbol: str, raw_timeframe: str) -> bytes | None: ...


class FastLane:
    """See the module doc. `engine` gives the current engine (None while the service starts); `service_name` is
    BentoML's, for the `Server` header its routes send."""

    def __init__(self, engine: Callable[[], CachedAnswers | None], service_name: str) -> None:
        self.engine = engine
        self.service_name = service_name

    def wants(self, scope: Scope) -> bool:
        """Whether the request may be one the lane answers (its body decides the rest)."""
        return (
            scope.get("path") == PATH
            and scope.get("method") == "POST"
            and not scope.get("query_string")
            and header(scope, b"origin") is None
            and (header(scope, b"content-type") or "").split(";")[0].strip().lower() == "application/json"
        )

    async def answer(self, scope: Scope, body: bytes, send: Send) -> bool:
        """Answer from the cache and say True, or send nothing and say False (the route answers)."""
        engine = self.engine()
        if engine is None:
            return False
        try:
            request = PredictRequest.model_validate_json(body)
        except ValidationError:
            return False
        try:
            payload = await engine.cached_json(request.symbol, request.timeframe)
        except Exception:  # the route meets the same error and answers it in the one shape
            logger.debug("fast lane: handing %s on to the route", PATH, exc_info=True)
            return False
        if payload is None:
            return False
        headers = [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers + self._bentoml_headers(scope)})
        await send({"type": "http.response.body", "body": payload})
        return True

    def _bentoml_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """What BentoML's route adds to every answer (`ServiceAppFactory._add_response_headers`): `Server`, and the
        request's ids as its access log formats them: the span's when the edge runs inside BentoML's middleware,
        else the edge's own (`ids.py`)."""
        from bentoml._internal.context import trace_context

        out = [(b"server", self._server)]
        span_format, trace_format = self._id_formats
        request_id = trace_context.request_id
        out.append(
            (b"x-bentoml-request-id", format(span_id() if request_id is None else request_id, span_format).encode())
        )
        if trace_format is not None:
            out.append((b"x-bentoml-trace-id", format(trace_id(scope), trace_format).encode()))
        return out

    @functools.cached_property
    def _server(self) -> bytes:
        return f"BentoML Service/{self.service_name}".encode()

    @functools.cached_property
    def _id_formats(self) -> tuple[str, str | None]:
        """(span id format, trace id format or None when BentoML does not send the trace id), read once from
        BentoML's configuration in the worker."""
        from bentoml._internal.container import BentoMLContainer

        formats = BentoMLContainer.logging_formatting.get()
        with_trace = bool(BentoMLContainer.http.response.trace_id.get())
        return str(formats["span_id"]), (str(formats["trace_id"]) if with_trace else None)
