"""The edge's ASGI pieces: refusing before a route runs, the request body's limits, one error shape on the wire.

Plain ASGI, not Starlette's BaseHTTPMiddleware: nothing here may buffer a streaming answer (the event stream),
and an oversized body is answered before it is read. `edge.py` puts them together into the one middleware.
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
HEAD_KEY = "signals.headers"  # the request's headers as a table (`header`), kept in the ASGI scope


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
    """The first value of header `name` (lower case), from a table built once per request and kept in the scope:
    the edge asks for several headers, and each scan of the list is work on every request's path."""
    head = scope.get(HEAD_KEY)
    if head is None:  # ASGI servers give lower-case names; reversed, so that the first of repeated ones wins
        head = scope[HEAD_KEY] = dict(reversed(scope.get("headers", ())))
    value = head.get(name)
    return None if value is None else bytes(value).decode("latin-1")


async def checked_body(scope: Scope, receive: Receive, max_body_bytes: int) -> Receive | SignalsError:
    """JSON only, and at most `max_body_bytes`. 415 for a POST with a body that does not say `Content-Type:
    application/json`: a page may send one from any site without a preflight (text/plain, or no type for a Blob),
    and a multipart body without a boundary made BentoML's form parser fail with a 500. An empty POST without a
    type is read as `{}`; no route takes a body by another method (the router answers those 405). 413 at once when
    Content-Length says more, or as soon as a chunked body passes the limit, before anything parses it (such a
    body is read here, at most the limit, and handed on). Returns the `receive` to go on with, or the refusal."""
    content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    length = header(scope, b"content-length")
    empty = not content_type and (length == "0" or (length is None and header(scope, b"transfer-encoding") is None))
    json_body = content_type in JSON_TYPES or content_type.endswith("+json")
    if scope["method"] == "POST" and not empty and not json_body:
        said = f"got {content_type[:60]!r}" if content_type else "it had no Content-Type"
        return UnsupportedMediaType(f"send the body as JSON with `Content-Type: application/json`; {said}")
    if length is not None and length.isdigit():
        if int(length) > max_body_bytes:
            return PayloadTooLarge(_too_large(int(length), max_body_bytes))
        return receive  # the server holds the body to its announced length
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return _replay([], message, receive)  # a disconnect: let the app see it
        chunks.append(message.get("body", b""))
        received += len(chunks[-1])
        if received > max_body_bytes:
            return PayloadTooLarge(_too_large(received, max_body_bytes))
        if not message.get("more_body", False):
            return _replay(chunks, None, receive)


async def read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole body (None when the client left first) and the `receive` that hands it on to the route."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, _replay(chunks, message, receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), _replay(chunks, None, receive)


def _replay(chunks: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A `receive` that hands on what was read (one body message, or the disconnect), then reads on."""
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}] if chunks else []
    if last is not None:
        pending.append(last)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _too_large(size: int, limit: int) -> str:
    return (
        f"request body of {size:,} bytes is over the limit of {limit:,} (SIGNALS_MAX_BODY_BYTES); "
        "ask for fewer symbols per request"
    )


def shaping_send(scope: Scope, send: Send) -> Send:
    """`send` that rewrites every error answer (status >= 400, a JSON or text body) into the one shape of
    `errors.py`: BentoML's `[{"error": ...}]` and validation `{"error", "detail": [...]}`, FastAPI's
    `{"detail": ...}`, a plain-text 404 (a probe's path with more after it included). Answers already in the
    shape, successes and streams pass untouched."""
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
            await _send_shaped(scope, held, b"".join(chunks), send)

    return rewriting_send


async def _send_shaped(scope: Scope, start: Message, body: bytes, send: Send) -> None:
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
