"""ASGI middleware of the API service: request limits, and one error shape on the wire.

Plain ASGI classes, not Starlette's BaseHTTPMiddleware: they must not buffer streaming answers (the event stream)
and must answer an oversized body before it is read. Added with `SignalService.add_asgi_middleware`, they wrap
every route of the API service, the mounted apps included, and none of the runners'.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from signals.api.errors import error_body, retry_headers, validation_errors, validation_message
from signals.core.errors import PayloadTooLarge, SignalsError, UnsupportedMediaType

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = ("application/json",)
UNSHAPED_PATHS = ("/livez", "/readyz", "/metrics", "/healthz", "/ui/")  # probes and static files keep their own


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def send_error(send: Send, error: SignalsError, headers: dict[str, str] | None = None) -> None:
    """A refusal from a middleware, before any route runs: the error's status, the one error shape, Retry-After."""
    status = int(error.error_code)
    await send_json(send, status, error_body(status, str(error)), {**(retry_headers(error) or {}), **(headers or {})})


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestLimits:
    """Bodies of at most `max_body_bytes` (413 at once when Content-Length says more, or as soon as a chunked body
    passes it, before anything parses it: a chunked body is read here, at most the limit, and handed on), and JSON
    only on POST (415: a multipart body without a boundary made BentoML's form parser fail with a 500)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        content_type = (header(scope, b"content-type") or "application/json").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES and not content_type.endswith("+json"):
            refusal = f"send the body as JSON (Content-Type: application/json); got {content_type[:60]!r}"
            await send_error(send, UnsupportedMediaType(refusal))
            return
        length = header(scope, b"content-length")
        if length is not None and length.isdigit():
            if int(length) > self.max_body_bytes:
                await send_error(send, PayloadTooLarge(self._too_large(int(length))))
                return
            await self.app(scope, receive, send)  # the server holds the body to its announced length
            return
        # No Content-Length (chunked): read it here, up to the limit, then hand it on as one message.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # a disconnect: let the app see it
                return
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_body_bytes:
                await send_error(send, PayloadTooLarge(self._too_large(received)))
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int) -> str:
        return (
            f"request body of {size:,} bytes is over the limit of {self.max_body_bytes:,} "
            "(SIGNALS_MAX_BODY_BYTES); ask for fewer symbols per request"
        )


class ErrorEnvelope:
    """Rewrite every error answer (status >= 400, a JSON or text body) into the one shape of `http.py`: BentoML's
    `[{"error": ...}]` and validation `{"error", "detail": [...]}`, FastAPI's `{"detail": ...}`, a plain-text 404.
    Answers already in the shape, successes and streams pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(UNSHAPED_PATHS):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def rewriting_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                if message["status"] >= 400:
                    held = message
                    return
                await send(message)
                return
            if held is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send_shaped(scope, held, b"".join(chunks), send)

        await self.app(scope, receive, rewriting_send)

    async def _send_shaped(self, scope: Scope, start: Message, body: bytes, send: Send) -> None:
        status = int(start["status"])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start.get("headers", [])}
        shaped = shape(status, body, headers.get("content-type", ""), scope)
        if shaped is None:  # already in the shape, or not ours to touch
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        status, payload = shaped
        await send_json(send, status, payload, {k: v for k, v in headers.items() if _kept(k)})


def _kept(name: str) -> bool:
    """Headers an error answer keeps when its body is rewritten."""
    return name in ("retry-after", "www-authenticate", "allow", "vary") or name.startswith("access-control-")


def shape(status: int, body: bytes, content_type: str, scope: Scope) -> tuple[int, dict[str, Any]] | None:
    """(status, body in the one shape), or None when `body` already is in it."""
    parsed: Any = None
    if "json" in content_type:
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            parsed = None
    if isinstance(parsed, dict) and parsed.get("success") is False and "error" in parsed:
        return None
    message, errors = _message_of(parsed, body, content_type)
    if status == 404 and not message.strip(" ."):
        message = "Not Found"
    if status == 404 and message == "Not Found":
        message = f"no route {scope.get('method', 'GET')} {scope.get('path', '')}; the routes are listed at /docs"
    elif status == 405:
        message = f"{scope.get('method')} is not allowed on {scope.get('path')}; see /docs for the methods"
    if errors:  # request validation: the caller's mistake, whatever status the framework chose
        status = HTTPStatus.BAD_REQUEST
    return int(status), error_body(int(status), message, errors=errors)


def _message_of(parsed: Any, body: bytes, content_type: str) -> tuple[str, list[dict[str, str]]]:
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict) and "error" in parsed[0]:
        return str(parsed[0]["error"]), []
    if isinstance(parsed, dict):
        detail = parsed.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict) and "loc" in detail[0]:
            fields = validation_errors(detail)
            return f"invalid request body: {validation_message(fields)}", fields
        if isinstance(parsed.get("error"), str):
            return str(parsed["error"]), []
        if isinstance(detail, str):
            return detail, []
    text = body.decode("utf-8", errors="replace").strip() if "json" not in content_type else ""
    return (text[:500] or "request failed"), []
