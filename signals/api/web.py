"""What a browser and a push client reach: the dashboard, the OpenAPI page, the event stream, the WebSocket.

Mounted at the root of the service (BentoML tries a mounted app's routes before its own only where one of them
matches, so every other path still reaches BentoML):
- `/` redirects to the dashboard at `/ui/` (one static page, its chart library vendored: no CDN, no build);
- `/docs` is the OpenAPI page (`ui/docs.html`: Swagger UI as BentoML ships it, nothing remote; the schema at
  `/docs.json`);
- `GET /api/stream` sends server-sent events: one per newly recorded signal (`event: signal`) and per policy
  action for a flat position (`event: action`), resumable with `Last-Event-ID`, with keep-alive comments; a
  stream opened without `Last-Event-ID` starts with the current state (the newest event of each pair it wants);
- `/ws/{client_id}` sends the same as WebSocket messages: `signal_update` (a Signal) and `prediction_update`
  (the older PPO shape: HOLD unless actionable, the symbol as the client wrote it), answers `{"type": "ping"}`
  with a pong and `{"type": "subscribe", ...}` by changing what it sends; until a client subscribes it gets one
  pair (`SIGNALS_LEGACY_DEFAULT_SYMBOL`: an older card keeps the last message it got, so every pair's burst would
  show another pair's call), and on connecting and on each subscription, the current state of what it wants.
  A message is bounded like a body (`SIGNALS_WS_MAX_MESSAGE_BYTES`: close 1009 above it), text only (close 1003
  for binary); a malformed one is answered with an error message in the API's texts. Close codes per RFC 6455:
  1013 when the worker is full or the client fell behind, 1011 on our failure;
- both streams are bounded per worker and per API key (`PushHub.subscribe`), and checked against the universe;
- `GET /api/candles/{symbol}` gives the closed candles a signal is computed from (the dashboard's chart);
- the track record's routes (`track.py`): `GET /equity`, `/export/history.csv`, `/export/scorecard.csv` and
  `/admin/alerts`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send

from signals.api import legacy
from signals.api.compat import SymbolList, SymbolPath, TimeframeList, add_error_envelopes, split_csv
from signals.api.errors import validation_errors, validation_message
from signals.api.openapi import published
from signals.api.track import add_track_record_routes
from signals.contract import schemas
from signals.core.background import get_within, stop_task
from signals.core.errors import DataNotFound, InvalidInput, SignalsError
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import iso_z, parse_timeframe, utc_now
from signals.live.operations import Operations
from signals.live.push import Event, Interest, PushHub, Subscription
from signals.serving.engine import SignalEngine

logger = logging.getLogger(__name__)

UI_DIR = Path(str(files("signals.api") / "ui"))
RETRY_MS = 3000  # what an EventSource waits before reconnecting
MAX_CANDLES = 1000
MAX_LIST = 256  # symbols (or timeframes, kinds) one subscribe message may name
# RFC 6455 close codes
CLOSE_UNSUPPORTED, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_ERROR, CLOSE_TRY_LATER = 1003, 1008, 1009, 1011, 1013
PING_OR_SUBSCRIBE = 'send {"type": "ping"} or {"type": "subscribe", "symbols": [...], "timeframes": [...]}'


def _split(value: Any) -> Any:
    """A comma-separated string is a list (what the query parameters of the stream take)."""
    return [item.strip() for item in value.split(",")] if isinstance(value, str) else value


Names = Annotated[list[str] | None, BeforeValidator(_split), Field(max_length=MAX_LIST)]


class SubscribeMessage(BaseModel):
    """`{"type": "subscribe", "symbols": [...], "timeframes": [...], "kinds": [...]}`; lists or comma-separated."""

    model_config = ConfigDict(extra="ignore")

    symbols: Names = None
    timeframes: Names = None
    kinds: Names = None


class SocketClosed(Exception):
    """The client left, or we closed the socket (with the code and reason already sent)."""


EVENT_STREAM_DOC: dict[str, Any] = {
    "description": "Server-sent events: `event: signal` (data: a Signal) and `event: action` (data: an Action), "
    "`id: <model version>|<symbol>|<candle time>`, keep-alive comments; `event: reset` when Last-Event-ID is unknown.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def openapi_page() -> Path:
    """The OpenAPI page: Swagger UI from the assets BentoML ships and serves under `/static_content` (its own
    page loads Google Tag Manager, FastAPI's loads Swagger UI from a CDN: neither works offline)."""
    return Path(__file__).parent / "ui" / "docs.html"


def sse(events: Sequence[Event]) -> str:
    """Events in the text/event-stream format, one JSON line of data each."""
    return "".join(e.render("sse", _sse_event) for e in events)


def _sse_event(event: Event) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.data, separators=(',', ':'))}\n\n"


def websocket_text(event: Event, interest: Interest) -> str:
    """The message of `event` for a subscriber of `interest`, made once per spelling of its symbol."""
    spelled = interest.spelling(event.symbol) if event.kind == "action" else None
    return event.render(
        f"websocket:{spelled or ''}", lambda e: json.dumps(websocket_message(e, spelled), separators=(",", ":"))
    )


def websocket_message(event: Event, symbol_as_written: str | None = None) -> dict[str, Any]:
    """`signal_update` with the Signal, or `prediction_update` in the older PPO shape (HOLD unless actionable)."""
    now = iso_z(utc_now())
    if event.kind == "signal":
        return {"type": "signal_update", "id": event.id, "data": dict(event.data), "timestamp": now}
    action = schemas.Action.model_validate(event.data)
    return {
        "type": "prediction_update",
        "id": event.id,
        "data": legacy.ppo_update(action, symbol_as_written=symbol_as_written, at=utc_now()),
        "timestamp": now,
    }


def create_web_app(
    engine: Callable[[], SignalEngine],
    hub: Callable[[], PushHub],
    ops: Callable[[], Operations] | None = None,
    *,
    heartbeat_s: float = 15.0,
    max_message_bytes: int = 65_536,
) -> FastAPI:
    """The root app; `engine()`, `hub()` and `ops()` are the service's slots (503 while it starts)."""
    app = FastAPI(title="Dashboard and push", docs_url=None, redoc_url=None, openapi_url=None)
    add_error_envelopes(app)

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(openapi_page())

    @app.get("/docs.json", include_in_schema=False)
    async def docs_json(request: Request) -> JSONResponse:
        """The OpenAPI document (`openapi.py`), built once; the service sets `app.state.openapi`."""
        return JSONResponse(request.app.state.openapi())

    @app.get("/ui", include_in_schema=False)
    async def ui_without_slash() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")

    @app.get("/api/candles/{symbol}", **published(schemas.CandlesResponse))
    async def candles(
        symbol: SymbolPath,
        timeframe: schemas.TimeframeName = "1h",
        limit: Annotated[int, Query(ge=1, le=MAX_CANDLES)] = 300,
    ) -> dict[str, Any]:
        """The last closed candles of a pair (at most the serving tail), times in seconds since the epoch."""
        current = engine()
        pair, tf = normalize_symbol(schemas.checked_symbol(symbol)), parse_timeframe(timeframe)
        if pair not in current.settings.universe:
            raise DataNotFound(f"{pair} is not in the served universe ({len(current.settings.universe)} pairs)")
        snapshot = await current.market.snapshot(pair, tf)
        frame = snapshot.candles.iloc[-limit:]
        times = (frame["timestamp"].astype("int64") // 1_000_000_000).tolist()
        columns = [frame[c].tolist() for c in ("open", "high", "low", "close", "volume")]
        return {
            "symbol": pair,
            "timeframe": tf,
            "data_source": snapshot.data_source,
            "candles": [
                {"time": t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
                for t, o, h, lo, c, v in zip(times, *columns, strict=True)
            ],
        }

    add_track_record_routes(app, ops)

    @app.get("/api/stream", status_code=200, response_class=EventStreamResponse, responses={200: EVENT_STREAM_DOC})
    async def stream(
        request: Request,
        timeframes: TimeframeList = None,
        symbols: SymbolList = None,
        kinds: Annotated[str | None, Query(description="signal, action; default: both")] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> EventStreamResponse:
        """Server-sent events: each newly recorded signal (and flat-position action) as it is recorded."""
        push = hub()
        interest = push.interest(split_csv(symbols), split_csv(timeframes), split_csv(kinds))
        subscription = push.subscribe(interest, key=_api_key(request.scope))  # before the replay: nothing between
        try:
            backlog = await _backlog(push, last_event_id, interest)
        except BaseException:
            push.unsubscribe(subscription)
            raise
        return EventStreamResponse(
            push,
            subscription,
            _event_stream(push, subscription, backlog, heartbeat_s, resumed=last_event_id),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.websocket("/ws/{client_id}")
    async def websocket(socket: WebSocket, client_id: str) -> None:
        # The default pair, unspelled: the older shapes then echo the older APIs' compact form (BTCUSDT).
        def default() -> Interest:
            return Interest(symbols=frozenset({engine().settings.legacy_default_symbol}))

        await _websocket(socket, client_id, hub, default, max_message_bytes)

    return app


async def _backlog(push: PushHub, last_event_id: str | None, interest: Interest) -> list[Event] | None:
    """What to send first: the current state for a new subscriber, what was published after `last_event_id` for
    a reconnecting one; None (a reset) for an id the ledger does not have. Any text is a valid Last-Event-ID: one
    the stream never sent resets, as an unknown one does."""
    if not last_event_id:
        return await push.snapshot(interest)
    try:
        return await push.replay(last_event_id, interest)
    except InvalidInput:
        return None


async def _event_stream(
    push: PushHub, subscription: Subscription, backlog: list[Event] | None, heartbeat_s: float, *, resumed: str | None
) -> AsyncIterator[str]:
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        if resumed and backlog is None:
            notice = {"reason": f"event {resumed[:80]!r} is not in the ledger; streaming from now"}
            yield f"event: reset\ndata: {json.dumps(notice)}\n\n"
        replayed = {e.id for e in backlog or ()}
        if backlog:
            yield sse(backlog)
        while not subscription.closed:
            batch = await get_within(subscription.queue, heartbeat_s)
            if batch is None:
                yield ": ping\n\n"
                continue
            fresh = [e for e in batch if e.again or e.id not in replayed] if replayed else batch
            if fresh:
                yield sse(fresh)
    finally:
        push.unsubscribe(subscription)


async def _websocket(
    socket: WebSocket, client_id: str, hub: Callable[[], PushHub], default: Callable[[], Interest], max_bytes: int
) -> None:
    """One WebSocket client, from the handshake to its close frame (whoever closes, whatever happens)."""
    try:
        push = hub()
        interest = default()
    except Exception:
        await socket.close(code=CLOSE_TRY_LATER, reason="the push stream is not available yet; retry in a few seconds")
        return
    try:
        subscription = push.subscribe(interest, key=_api_key(socket.scope))
    except SignalsError as refused:  # the worker (or the key) holds as many subscribers as it may
        await socket.accept()
        await _close(socket, CLOSE_TRY_LATER, str(refused))
        return
    try:
        await socket.accept()
        await socket.send_json(
            {
                "type": "connected",
                "client_id": client_id,
                "subscription": _interest_json(subscription.interest),
                "timestamp": iso_z(utc_now()),
            }
        )
        await _serve_socket(socket, subscription, push, max_bytes)
    except (WebSocketDisconnect, SocketClosed):
        pass
    except Exception as error:  # ours: one line in the log, a close frame to the client, never a traceback
        logger.warning("websocket %s: %s: %s", client_id[:40], type(error).__name__, str(error)[:200])
        await _close(socket, CLOSE_ERROR, "server error; reconnect")
    finally:
        push.unsubscribe(subscription)


class EventStreamResponse(StreamingResponse):
    """A stream whose subscriber is given back however the response ends: a client that leaves before the first
    byte never starts the body's generator, so its `finally` alone would keep the subscriber forever. The media
    type is what the OpenAPI document publishes for the route."""

    media_type = "text/event-stream"

    def __init__(self, push: PushHub, subscription: Subscription, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.push, self.subscription = push, subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.push.unsubscribe(self.subscription)


def _api_key(scope: Any) -> str | None:
    """The API key's name the edge (`access.py`) put on the request (None without keys)."""
    state = scope.get("state") or {}
    key = state.get("api_key") if isinstance(state, dict) else getattr(state, "api_key", None)
    return None if key is None else str(key)


async def _close(socket: WebSocket, code: int, reason: str) -> None:
    try:
        await socket.close(code=code, reason=reason[:120])
    except Exception:  # already closed: nothing more to say
        pass


async def _serve_socket(socket: WebSocket, subscription: Subscription, push: PushHub, max_bytes: int) -> None:
    """Send the current state, then events, and answer the client's messages until either side stops."""
    shown: set[str] = set()  # ids of the snapshot sent: the queue may hold them too (recorded as it was read)

    async def send_snapshot() -> None:
        interest = subscription.interest
        for event in await push.snapshot(interest):
            shown.add(event.id)
            await socket.send_text(websocket_text(event, interest))

    async def send_events() -> None:
        await send_snapshot()
        while not subscription.closed:
            for event in await subscription.queue.get():
                if event.again or event.id not in shown:
                    await socket.send_text(websocket_text(event, subscription.interest))
        await _close(socket, CLOSE_TRY_LATER, "too far behind; reconnect")

    async def answer() -> None:
        while True:
            reply = _answer(push, subscription, await _receive_text(socket, max_bytes))
            await socket.send_json(reply)
            if reply["type"] == "subscribed":
                await send_snapshot()

    tasks = [asyncio.ensure_future(send_events()), asyncio.ensure_future(answer())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a disconnect ends both; anything else is raised
    finally:
        for task in tasks:
            await stop_task(task)


async def _receive_text(socket: WebSocket, max_bytes: int) -> str:
    """The client's next text message; closes the socket (and raises SocketClosed) for a binary or too large one."""
    message = await socket.receive()
    if message["type"] == "websocket.disconnect":
        raise SocketClosed
    text = message.get("text")
    if text is None:
        await _close(socket, CLOSE_UNSUPPORTED, "text messages only (JSON)")
        raise SocketClosed
    size = len(text) if text.isascii() else len(text.encode())
    if size > max_bytes:
        await _close(socket, CLOSE_TOO_BIG, f"message of {size:,} bytes is over the limit of {max_bytes:,}")
        raise SocketClosed
    return str(text)


def _answer(push: PushHub, subscription: Subscription, text: str) -> dict[str, Any]:
    """The reply to one client message: a pong, the new subscription, or an error that says what to send."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return {"type": "error", "error": f"a message is one JSON object; {PING_OR_SUBSCRIBE}"}
    if not isinstance(message, dict):
        return {"type": "error", "error": f"a message is one JSON object; {PING_OR_SUBSCRIBE}"}
    kind = message.get("type")
    if kind == "ping":
        return {"type": "pong", "timestamp": iso_z(utc_now())}
    if kind != "subscribe":
        named = f"unknown message type {kind[:40]!r}" if isinstance(kind, str) else "a message without a string type"
        return {"type": "error", "error": f"{named}; {PING_OR_SUBSCRIBE}"}
    try:
        asked = SubscribeMessage.model_validate(message)
        subscription.interest = push.interest(asked.symbols, asked.timeframes, asked.kinds)
    except ValidationError as error:
        fields = validation_errors(error.errors())
        return {"type": "error", "error": validation_message(fields), "errors": fields}
    except InvalidInput as error:
        return {"type": "error", "error": str(error)}
    return {"type": "subscribed", **_interest_json(subscription.interest)}


def _interest_json(interest: Interest) -> dict[str, Any]:
    return {
        "symbols": sorted(interest.symbols) if interest.symbols else None,
        "timeframes": sorted(interest.timeframes) if interest.timeframes else None,
        "kinds": sorted(interest.kinds),
    }
