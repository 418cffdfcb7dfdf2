"""A request's ids for the answers the edge gives itself, outside BentoML's OpenTelemetry span.

The request id is the W3C trace id (`signals.core.logs`). A route's answer runs inside the span BentoML's
OpenTelemetry middleware starts, and takes the span's ids; the edge sits outside that middleware
(`signals.api.outermost`), so a refusal or a fast-lane hit has no span: its trace id is the caller's `traceparent`
one, as the middleware would have continued it, else a new random one, and its span id a new random one (the
`x-bentoml-request-id` a route's answer carries). Made only when asked, once per request (kept in the scope).
"""

from __future__ import annotations

from typing import Any, cast

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import asgi_getter
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from signals.api.middleware import Scope, header

TRACE_KEY = "signals.trace_id"
_IDS = RandomIdGenerator()


def trace_id(scope: Scope) -> int:
    """The request's trace id: the current span's (inside BentoML's middleware), else the edge's own."""
    current = trace.get_current_span().get_span_context().trace_id
    if current:
        return int(current)
    own: int | None = scope.get(TRACE_KEY)
    if own is None:
        own = scope[TRACE_KEY] = _continued(scope) or _IDS.generate_trace_id()
    return own


def span_id() -> int:
    """A new span id, for a request the edge answers without BentoML's span."""
    return _IDS.generate_span_id()


def _continued(scope: Scope) -> int | None:
    """The trace id of the caller's `traceparent`, read as the OpenTelemetry middleware reads it; None without one."""
    if header(scope, b"traceparent") is None:
        return None
    parent = trace.get_current_span(extract(cast(dict[str, Any], scope), getter=asgi_getter)).get_span_context()
    return int(parent.trace_id) if parent.is_valid else None
