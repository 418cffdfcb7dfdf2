"""A request body must arrive within `timeout_s` (an ASGI middleware): a client that trickles its body, or stops
sending it, is answered 408 in the one error shape and cut, instead of holding a worker's connection until the
framework's own 10 s timeout answers 504 outside our shape.

The headers are not bounded here: uvicorn parses them before any ASGI code runs, and BentoML 1.4.39 passes
uvicorn no header or body timeout (only `timeout_keep_alive`, which starts after a first answer). A reverse
proxy in front (its client header timeout) bounds slow headers; see RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from http import HTTPStatus

from signals.api.middleware import ASGIApp, Message, Receive, Scope, Send, send_error
from signals.core.errors import SignalsError

BODY_METHODS = ("POST", "PUT", "PATCH")


class RequestTimeout(SignalsError):
    """The request's body did not arrive in time: 408."""

    error_code = HTTPStatus.REQUEST_TIMEOUT


class BodyDeadline:
    def __init__(self, app: ASGIApp, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_done = False
        answered = False  # we answered 408: what the app sends after is dropped
        started = False

        async def bounded_receive() -> Message:
            nonlocal deadline, body_done, answered
            if body_done or answered:
                return await receive() if not answered else {"type": "http.disconnect"}
            if deadline is None:
                deadline = self.clock() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - self.clock()))
            except TimeoutError:
                answered = True
                if not started:
                    message_text = (
                        f"the request body did not arrive within {self.timeout_s:g} s (SIGNALS_BODY_TIMEOUT_S); "
                        "send it at once"
                    )
                    await send_error(send, RequestTimeout(message_text), {"Connection": "close"})
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, bounded_receive, guarded_send)
