"""The one ASGI middleware of the API service: every check a request meets before and around its route.

In order: the Host and the Origin (`origins.py`), who calls (`access.py`: keys, scopes, rates, the admin routes
closed to other machines without keys), the body (JSON only, at most `SIGNALS_MAX_BODY_BYTES`), the time it may
take (`budget.py`), and one error shape on the wire (`middleware.py`); then a cached `/predict` is answered from
its JSON bytes without BentoML's route (`fastlane.py`), and everything else goes on to the route. One class, not
one layer per check: each layer of ASGI middleware is another coroutine frame and closure on every request's path.

Added outside all of BentoML's own middleware (`outermost.py`), around the whole app of the API service, the
mounted apps included, and none of the runners': a request the edge answers itself (a refusal, a fast-lane hit)
costs uvicorn and this class only; every other request goes on to BentoML's full stack (metrics, OpenTelemetry,
its timeout, CORS, the router) as before, passing the edge once. BentoML's `traffic.timeout` answers 504 in its
own shape, which is why the budget here ends first (the settings hold it below the timeout).
`SIGNALS_EDGE_OUTERMOST=false` puts it back inside BentoML's middleware, where BentoML's metrics, spans and access
log see every request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from signals.api.access import Access
from signals.api.budget import Budget
from signals.api.fastlane import FastLane
from signals.api.ids import trace_id
from signals.api.middleware import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    checked_body,
    read_body,
    send_error,
    shaping_send,
)
from signals.api.origins import HostGuard
from signals.core.errors import OverBudget, RequestTimeout, SignalsError, Unauthorized
from signals.core.metrics import server_metrics
from signals.core.settings import LOOPBACK_HOSTS, ApiKey, Settings

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class EdgeRules:
    """What the edge enforces; `from_settings` reads it from the `SIGNALS_*` variables."""

    keys: Sequence[ApiKey] = ()
    max_body_bytes: int = 262_144
    hosts: Sequence[str] = LOOPBACK_HOSTS
    origins: Sequence[str] = ()
    budget_s: float = 8.0
    auth_failures_per_minute: int = 10
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeRules:
        origins = settings.cors_origins if settings.allowed_origins is None else settings.allowed_origins
        return cls(
            keys=tuple(settings.api_keys),
            max_body_bytes=settings.max_body_bytes,
            hosts=tuple(settings.allowed_hosts),
            origins=tuple(origins),
            budget_s=settings.request_budget_s,
            auth_failures_per_minute=settings.auth_failures_per_minute,
        )


class Edge:
    """See the module doc."""

    def __init__(self, app: ASGIApp, rules: EdgeRules, lane: FastLane | None = None) -> None:
        self.app = app
        self.rules = rules
        self.lane = lane
        self.guard = HostGuard(rules.hosts, rules.origins)
        self.access = Access(rules.keys, failures_per_minute=rules.auth_failures_per_minute, clock=rules.clock)
        self.budget = Budget(rules.budget_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if kind == "http":
            send = with_request_id(scope, send)
        refusal = self.guard.refusal(scope) or self.access.refusal(scope)
        if refusal is not None:
            await refuse(scope, receive, send, refusal)
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        await self._within_budget(scope, receive, shaping_send(scope, send))

    async def _within_budget(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the body and run the route; if it has not started answering within the budget, it is cancelled
        and answered 503 (408 while its body is still arriving, a chunked one read here included). Once it answers
        (a stream, a slow body), the budget no longer applies."""
        budget = self.budget
        ticket = budget.issue()
        has_body = scope["method"] in BODY_METHODS
        body_read = not has_body

        async def timed_receive() -> Message:
            nonlocal body_read
            message = await receive()
            if not message.get("more_body", False):
                body_read = True
            return message

        async def timed_send(message: Message) -> None:
            if not ticket.answered:
                budget.settle(ticket)
            await send(message)

        try:
            route_receive = receive
            if has_body:
                checked = await checked_body(scope, timed_receive, self.rules.max_body_bytes)
                if isinstance(checked, SignalsError):
                    counted(checked)
                    await send_error(send, checked)
                    return
                route_receive = checked
                if self.lane is not None and self.lane.wants(scope):  # a cached /predict, answered here
                    body, route_receive = await read_body(route_receive)
                    if body is not None and await self.lane.answer(scope, body, timed_send):
                        return
            await self.app(scope, route_receive, timed_send)
        except asyncio.CancelledError:
            if not ticket.expired or ticket.answered or ticket.task.uncancel() > 0:
                raise  # not the budget's cancellation (a disconnect, BentoML's timeout), or too late to answer
            headers = None if body_read else {"Connection": "close"}
            await send_error(send, self._over_budget(scope, body_read), headers)
        finally:
            budget.settle(ticket)

    def _over_budget(self, scope: Scope, body_read: bool) -> SignalsError:
        budget = f"{self.rules.budget_s:g} s (SIGNALS_REQUEST_BUDGET_S)"
        if not body_read:
            return RequestTimeout(f"the request body did not arrive within {budget}; send it at once")
        return OverBudget(
            f"{scope.get('path')} could not be answered within {budget}; the server is busy or a cold path is "
            "warming up: retry after Retry-After",
            retry_after_s=5,
        )


def with_request_id(scope: Scope, send: Send) -> Send:
    """`send` that names the request in `X-Request-ID`: its trace id, the same in the runners' log lines and in the
    ledger record it wrote (`signals.core.logs`); read when the answer starts, inside BentoML's span for a route's
    answer, the edge's own ids for its own answers (`ids.py`)."""

    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            rid = (b"x-request-id", format(trace_id(scope), "032x").encode())
            message = {**message, "headers": [*message.get("headers", []), rid]}
        await send(message)

    return tagged


async def refuse(scope: Scope, receive: Receive, send: Send, error: SignalsError) -> None:
    """Answer a refusal before any route runs; a WebSocket's handshake is refused before it is accepted (an HTTP
    answer in the one shape where the server can send one, else a close, which servers answer with 403)."""
    counted(error)
    if scope["type"] != "websocket":
        await send_error(send, error, {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None)
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await send_error(_as_denial(send), error)
        return
    await send({"type": "websocket.close", "code": 1008, "reason": str(error)[:120]})


def counted(error: SignalsError) -> None:
    """Count a refusal in `signals_edge_refusals` (made on first use: see `signals.core.metrics`)."""
    server_metrics().edge_refusals.labels(str(int(error.error_code))).inc()


def _as_denial(send: Send) -> Send:
    """`send` for an HTTP answer to a WebSocket handshake (the ASGI "websocket.http.response" extension)."""

    async def denial(message: Message) -> None:
        await send({**message, "type": message["type"].replace("http.", "websocket.http.", 1)})

    return denial
