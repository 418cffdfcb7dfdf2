"""The HTTP edge's middleware on a small real ASGI app: body limits, JSON only, one error shape on the wire, API
keys with scopes and rate limits, the admin routes closed to other machines without keys, Host and Origin, the
failed-key limit per address, and the request budget."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.testclient import TestClient, WebSocketDenialResponse

from signals.api.access import TokenBucket, key_hash, new_key
from signals.api.edge import Edge, EdgeRules
from signals.api.errors import error_body
from signals.api.fastlane import FastLane
from signals.api.request_log import ClientErrorsInOneLine
from signals.core.settings import ApiKey
from tests.support.clock import FakeClock
from tests.support.servers import LOCAL_CLIENT, local_client

LIMIT = 2048


def echo_app() -> FastAPI:
    """Routes that answer the shapes the frameworks produce: BentoML's list, FastAPI's detail, plain text."""
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @app.get("/bento-error")
    async def bento_error() -> JSONResponse:
        return JSONResponse([{"error": "no CNN-LSTM model for SOL/USDT 1h"}], status_code=404)

    @app.get("/validation")
    async def validation() -> JSONResponse:
        detail = [{"type": "missing", "loc": ["body", "timeframe"], "msg": "Field required"}]
        return JSONResponse({"error": "1 validation error for X", "detail": detail}, status_code=400)

    @app.get("/teapot")
    async def teapot() -> PlainTextResponse:
        return PlainTextResponse("short and stout", status_code=418)

    @app.get("/busy")
    async def busy() -> JSONResponse:
        return JSONResponse({"detail": "try later"}, status_code=503, headers={"Retry-After": "7"})

    @app.get("/shaped")
    async def shaped() -> JSONResponse:
        return JSONResponse(error_body(409, "already shaped"), status_code=409)

    @app.get("/stream")
    @app.get("/api/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"data: 1\n\n", b"data: 2\n\n"]), media_type="text/event-stream")

    @app.get("/admin/reload")
    async def admin() -> dict[str, bool]:
        return {"reloaded": True}

    @app.get("/livez")
    async def livez() -> PlainTextResponse:
        return PlainTextResponse("")

    @app.get("/fail")
    async def fail() -> None:
        raise HTTPException(status_code=400, detail="bad thing")

    return app


def wrapped(*, keys: list[ApiKey] | None = None, clock: Any = None, app: Any = None, **rules: Any) -> Edge:
    options: dict[str, Any] = {"max_body_bytes": LIMIT, **rules}
    if clock is not None:
        options["clock"] = clock
    return Edge(app or echo_app(), EdgeRules(keys=keys or [], **options))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with local_client(wrapped()) as test_client:
        yield test_client


def shaped(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["status"] == status and body["detail"] == body["error"], body
    return str(body["error"])


def test_a_body_over_the_limit_is_413_before_it_is_read(client: TestClient) -> None:
    big = b'{"x": "' + b"a" * (2 * LIMIT) + b'"}'
    json_type = {"content-type": "application/json"}
    assert "over the limit of 2,048" in shaped(client.post("/echo", content=big, headers=json_type), 413)
    chunked = client.post("/echo", content=iter([big[:1000], big[1000:]]), headers=json_type)
    assert "over the limit" in shaped(chunked, 413)  # no Content-Length: counted as it arrives
    assert client.post("/echo", json={"x": "small"}).json() == {"x": "small"}


def test_only_json_bodies_are_read(client: TestClient) -> None:
    multipart = client.post("/echo", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert "send the body as JSON" in shaped(multipart, 415)
    assert (
        client.post("/echo", json={"a": 1}, headers={"content-type": "application/json; charset=utf-8"}).status_code
        == 200
    )


def test_every_error_reaches_the_wire_in_one_shape(client: TestClient) -> None:
    assert shaped(client.get("/bento-error"), 404) == "no CNN-LSTM model for SOL/USDT 1h"
    validation = client.get("/validation")
    assert "timeframe: Field required" in shaped(validation, 400)
    assert validation.json()["errors"] == [{"field": "timeframe", "message": "Field required", "type": "missing"}]
    assert shaped(client.get("/teapot"), 418) == "short and stout"
    busy = client.get("/busy")
    assert shaped(busy, 503) == "try later" and busy.headers["Retry-After"] == "7"
    assert shaped(client.get("/no/such/route"), 404).startswith("no route GET /no/such/route")
    assert "is not allowed" in shaped(client.post("/bento-error"), 405)  # an empty POST needs no type
    assert "is not allowed" in shaped(client.put("/bento-error", content=b"x"), 405)  # only POST bodies are read
    assert shaped(client.get("/fail"), 400) == "bad thing"
    assert client.get("/shaped").json() == error_body(409, "already shaped")  # untouched


def test_answers_and_streams_pass_untouched(client: TestClient) -> None:
    assert client.get("/stream").text == "data: 1\n\ndata: 2\n\n"
    assert client.get("/admin/reload").json() == {"reloaded": True}


# --- API keys --------------------------------------------------------------------------------------------------
READ_KEY, ADMIN_KEY = "sk_read-" + "r" * 20, "sk_admin-" + "a" * 20
KEYS = [
    ApiKey(name="desk", sha256=key_hash(READ_KEY), scopes=("read",), rate_per_minute=3),
    ApiKey(name="ops", sha256=key_hash(ADMIN_KEY), scopes=("read", "admin"), rate_per_minute=None),
]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_with_keys_configured_a_route_needs_one_and_admin_routes_need_the_scope() -> None:
    with local_client(wrapped(keys=KEYS)) as client:
        missing = client.post("/echo", json={})
        assert "API key is needed" in shaped(missing, 401) and missing.headers["WWW-Authenticate"] == "Bearer"
        shaped(client.post("/echo", json={}, headers={"Authorization": "Bearer sk_wrong"}), 401)
        assert client.post("/echo", json={"a": 1}, headers={"Authorization": f"Bearer {READ_KEY}"}).status_code == 200
        assert client.post("/echo", json={"a": 1}, headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        assert client.get("/api/stream", params={"api_key": READ_KEY}).status_code == 200  # EventSource: no headers
        assert "lacks the admin scope" in shaped(client.get("/admin/reload", headers={"X-API-Key": READ_KEY}), 403)
        assert client.get("/admin/reload", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        assert client.get("/livez").status_code == 200  # probes stay open


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_are_not_affected() -> None:
    clock = Clock()
    with local_client(wrapped(keys=KEYS, clock=clock)) as client:
        for _ in range(3):
            assert client.post("/echo", json={}, headers={"X-API-Key": READ_KEY}).status_code == 200
        limited = client.post("/echo", json={}, headers={"X-API-Key": READ_KEY})
        assert "over its limit of 3 requests a minute" in shaped(limited, 429)
        assert int(limited.headers["Retry-After"]) == 20  # one token refills in 60 / 3 s
        assert client.post("/echo", json={}, headers={"X-API-Key": ADMIN_KEY}).status_code == 200  # no limit
        clock.now += 20
        assert client.post("/echo", json={}, headers={"X-API-Key": READ_KEY}).status_code == 200


def test_keys_are_random_and_only_their_hash_is_kept() -> None:
    key, digest = new_key()
    other, _ = new_key()
    assert key.startswith("sk_") and len(key) > 40 and key != other
    assert digest == key_hash(key) and key not in digest and len(digest) == 64
    bucket = TokenBucket(60, clock=Clock())
    assert [bucket.take() == 0 for _ in range(61)].count(True) == 60


def test_a_callers_mistake_is_logged_in_one_line_and_ours_keep_their_traceback(caplog: Any) -> None:
    from pydantic import BaseModel, ValidationError

    class Body(BaseModel):
        timeframe: str

    logger = logging.getLogger("test.bentoml.http_app")
    logger.addFilter(ClientErrorsInOneLine())
    with caplog.at_level(logging.INFO, logger=logger.name):
        try:
            Body.model_validate({})
        except ValidationError:
            logger.error("Exception on %s [%s]", "/predict", "POST", exc_info=True)
        try:
            raise RuntimeError("a bug")
        except RuntimeError:
            logger.error("Exception on %s [%s]", "/predict", "POST", exc_info=True)
    mistake, bug = caplog.records
    assert mistake.levelno == logging.INFO and mistake.exc_info is None and "timeframe" in mistake.getMessage()
    assert "\n" not in mistake.getMessage()
    assert bug.levelno == logging.ERROR and bug.exc_info is not None


# --- closed by default ------------------------------------------------------------------------------------------
def counting_app() -> tuple[FastAPI, list[str]]:
    """`echo_app` with a record of every route that ran (a refused request must run none)."""
    app, ran = echo_app(), []

    @app.post("/admin/refresh")
    async def refresh(body: dict[str, Any]) -> dict[str, bool]:
        ran.append("refresh")
        return {"refreshed": True}

    @app.websocket("/ws/{client_id}")
    async def socket(websocket: WebSocket, client_id: str) -> None:
        ran.append("ws")
        await websocket.accept()
        await websocket.send_json({"type": "connected", "client_id": client_id})
        await websocket.close()

    return app, ran


def test_without_keys_the_admin_routes_answer_only_this_machine() -> None:
    app, ran = counting_app()
    edge = wrapped(app=app)
    with local_client(edge) as local:
        assert local.post("/admin/refresh", json={}).json() == {"refreshed": True}
        for address in ("::1", "::ffff:127.0.0.1", "127.0.0.2"):
            other_loopback = TestClient(edge, base_url="http://localhost:3000", client=(address, 1))
            assert other_loopback.get("/admin/reload").status_code == 200, address
        for address in ("203.0.113.9", "10.0.0.2", "testclient"):
            remote = TestClient(edge, base_url="http://127.0.0.1:3000", client=(address, 1))
            message = shaped(remote.post("/admin/refresh", json={}), 403)
            assert "SIGNALS_API_KEYS" in message and "admin scope" in message
            assert remote.post("/echo", json={"a": 1}).json() == {"a": 1}  # the read routes stay open
    assert ran == ["refresh"]


def test_a_post_without_a_json_content_type_is_refused_and_runs_nothing() -> None:
    """The cross-site request a page can send without a preflight: `fetch(url, {method: "POST", mode: "no-cors",
    body})` goes out as text/plain (or with no type for a Blob); it was read as JSON."""
    app, ran = counting_app()
    with local_client(wrapped(app=app)) as client:
        no_type = client.post("/admin/refresh", content=b"{}")
        assert "it had no Content-Type" in shaped(no_type, 415)
        plain = client.post("/admin/refresh", content=b"{}", headers={"content-type": "text/plain;charset=UTF-8"})
        assert "Content-Type: application/json" in shaped(plain, 415)
        form_type = {"content-type": "application/x-www-form-urlencoded"}
        shaped(client.post("/admin/refresh", content=b"a=1", headers=form_type), 415)
        shaped(client.post("/admin/refresh", content=b"", headers={"content-type": "text/plain"}), 415)
        assert ran == []
        assert client.post("/admin/refresh", json={}).status_code == 200
    assert ran == ["refresh"]


def test_the_host_must_be_one_the_server_answers_to() -> None:
    """DNS rebinding: a page's own name pointed at 127.0.0.1 arrives with that name in Host."""
    edge = wrapped()
    for host in ("127.0.0.1:3000", "localhost", "LOCALHOST:8080", "[::1]:3000", "127.0.0.1"):
        assert local_client(edge).get("/shaped", headers={"host": host}).status_code == 409, host
    rebound = local_client(edge).post("/echo", json={}, headers={"host": "evil.example:3000"})
    assert "SIGNALS_ALLOWED_HOSTS" in shaped(rebound, 400)
    assert local_client(edge).get("/livez", headers={"host": "10.1.2.3:3000"}).status_code == 200  # a kubelet
    named = wrapped(hosts=["signals.internal", ".desk.example"])
    assert local_client(named).get("/shaped", headers={"host": "signals.internal:3000"}).status_code == 409
    assert local_client(named).get("/shaped", headers={"host": "a.desk.example"}).status_code == 409
    shaped(local_client(named).get("/shaped", headers={"host": "desk.example.evil"}), 400)
    shaped(local_client(named).get("/shaped", headers={"host": "localhost"}), 400)
    assert local_client(wrapped(hosts=["*"])).get("/shaped", headers={"host": "any.where"}).status_code == 409


def test_pages_of_other_origins_are_refused_and_the_servers_own_and_the_cors_ones_are_not() -> None:
    app, ran = counting_app()
    edge = wrapped(app=app, origins=["https://desk.example"])
    client = local_client(edge)
    assert client.post("/echo", json={"a": 1}, headers={"origin": "http://127.0.0.1:3000"}).status_code == 200
    assert client.post("/echo", json={"a": 1}, headers={"origin": "https://desk.example"}).status_code == 200
    for origin in ("https://evil.example", "null", "http://127.0.0.1:9999"):
        refused = client.post("/admin/refresh", json={}, headers={"origin": origin})
        assert "SIGNALS_ALLOWED_ORIGINS" in shaped(refused, 403), origin
    with client.websocket_connect("ws://127.0.0.1:3000/ws/own", headers={"origin": "http://127.0.0.1:3000"}) as socket:
        assert socket.receive_json()["type"] == "connected"
    with pytest.raises(WebSocketDenialResponse) as denied:  # refused before the handshake is accepted
        with client.websocket_connect("ws://127.0.0.1:3000/ws/evil", headers={"origin": "https://evil.example"}):
            pass
    assert denied.value.status_code == 403 and denied.value.json()["success"] is False
    assert ran == ["ws"]


def test_a_key_in_the_query_is_read_only_by_the_stream_and_the_websocket() -> None:
    with local_client(wrapped(keys=KEYS)) as client:
        refused = client.post("/echo", json={}, params={"api_key": READ_KEY})
        assert "accepted only by /api/stream and /ws/" in shaped(refused, 401)
        assert client.get("/api/stream", params={"api_key": READ_KEY}).status_code == 200
        assert client.post("/echo", json={}, headers={"X-API-Key": READ_KEY}).status_code == 200


def test_wrong_keys_are_limited_per_client_address() -> None:
    clock = Clock()
    edge = wrapped(keys=KEYS, clock=clock, auth_failures_per_minute=3)
    guesser = TestClient(edge, base_url="http://127.0.0.1:3000", client=("127.0.0.7", 1))
    neighbour = local_client(edge)
    statuses = [guesser.post("/echo", json={}, headers={"X-API-Key": f"sk_guess{i}"}).status_code for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    locked = guesser.post("/echo", json={}, headers={"X-API-Key": ADMIN_KEY})  # no key is checked while locked
    assert "too many wrong API keys" in shaped(locked, 429) and int(locked.headers["Retry-After"]) == 20
    assert neighbour.post("/echo", json={}, headers={"X-API-Key": ADMIN_KEY}).status_code == 200
    assert guesser.post("/echo", json={}).status_code == 401  # no key at all is not a guess, and not counted
    clock.now += 20
    assert guesser.post("/echo", json={}, headers={"X-API-Key": ADMIN_KEY}).status_code == 200


def test_probe_paths_with_more_after_them_are_404_in_the_one_shape(client: TestClient) -> None:
    for path in ("/livez/x", "/metrics/x", "/readyz/x"):
        assert shaped(client.get(path), 404).startswith(f"no route GET {path}")
    assert client.get("/livez").status_code == 200


# --- the request budget -----------------------------------------------------------------------------------------
async def call(edge: Edge, scope: dict[str, Any], receive: Any) -> list[MutableMapping[str, Any]]:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await edge(scope, receive, send)
    return sent


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    base = [(b"host", b"127.0.0.1:3000"), *headers]
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": base,
        "client": LOCAL_CLIENT,
        "query_string": b"",
    }


def test_a_request_that_cannot_answer_within_the_budget_gets_503_with_retry_after_and_is_cancelled() -> None:
    events: list[str] = []

    async def stuck(scope: Any, receive: Any, send: Any) -> None:
        events.append("started")
        try:
            await asyncio.Event().wait()  # never set: only the budget ends it
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def nothing() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent = asyncio.run(call(wrapped(app=stuck, budget_s=0.01), http_scope("GET", "/api/predictions", []), nothing))
    start, body = sent
    headers = dict(start["headers"])
    assert start["status"] == 503 and headers[b"retry-after"] == b"5"
    assert "SIGNALS_REQUEST_BUDGET_S" in json.loads(body["body"])["error"]
    assert events == ["started", "cancelled"]


def test_a_body_still_arriving_when_the_budget_ends_is_408() -> None:
    async def reader(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass

    chunks: list[dict[str, Any]] = []

    async def trickle() -> dict[str, Any]:
        if chunks:
            return chunks.pop()
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError

    for length in ([(b"content-length", b"40")], []):  # announced, or chunked (read by the edge itself)
        chunks[:] = [{"type": "http.request", "body": b'{"symbol": ', "more_body": True}]
        headers = [(b"content-type", b"application/json"), *length]
        sent = asyncio.run(call(wrapped(app=reader, budget_s=0.01), http_scope("POST", "/predict", headers), trickle))
        assert sent[0]["status"] == 408 and "did not arrive" in json.loads(sent[1]["body"])["error"], length


def test_the_budget_is_below_bentomls_timeout() -> None:
    from pydantic import ValidationError

    from signals.core.settings import TRAFFIC_TIMEOUT_S, Settings

    assert Settings().request_budget_s < TRAFFIC_TIMEOUT_S
    with pytest.raises(ValidationError):
        Settings(request_budget_s=TRAFFIC_TIMEOUT_S)


# --- the warning at start ---------------------------------------------------------------------------------------
def test_one_warning_when_listening_beyond_loopback_without_keys(caplog: Any) -> None:
    from signals.api.exposure import listening_addresses, warn_if_exposed
    from signals.core.settings import Settings

    with socket.socket() as wide:
        wide.bind(("0.0.0.0", 0))
        wide.listen()
        assert "0.0.0.0" in listening_addresses()
    open_settings, keyed = Settings(api_keys=[]), Settings(api_keys=KEYS)
    with caplog.at_level(logging.WARNING, logger="signals.api.exposure"):
        assert warn_if_exposed(open_settings, ["127.0.0.1", "::1"]) is False
        assert warn_if_exposed(keyed, ["0.0.0.0"]) is False
        assert warn_if_exposed(open_settings, ["0.0.0.0", "127.0.0.1"]) is True
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING and "0.0.0.0" in warning.getMessage()
    assert "SIGNALS_API_KEYS" in warning.getMessage()


def test_calls_whose_caller_left_are_one_counted_line_a_window(caplog: Any) -> None:
    """After a runner worker restarts, every call the API had given up on fails at once (issue 20: 32 tracebacks)."""
    from starlette.requests import ClientDisconnect

    clock = FakeClock("2026-12-05 12:00Z")
    logger = logging.getLogger("test.bentoml.http_app.abandoned")
    logger.addFilter(ClientErrorsInOneLine(window_s=60, now=lambda: clock.ms() / 1000))

    def abandoned(calls: int) -> None:
        for _ in range(calls):
            try:
                raise ClientDisconnect()
            except ClientDisconnect:
                logger.error("Exception on %s [%s]", "/act", "POST", exc_info=True)

    with caplog.at_level(logging.INFO, logger=logger.name):
        abandoned(32)
        clock.advance(59)
        abandoned(3)
        clock.advance(1)
        abandoned(1)
    lines = [(r.levelno, r.exc_info, r.getMessage()) for r in caplog.records]
    assert [(level, info) for level, info, _ in lines] == [(logging.INFO, None)] * 2
    assert "Exception on /act [POST]: the caller left before the answer" in lines[0][2]
    assert "1 call(s) abandoned" in lines[0][2] and "35 call(s) abandoned" in lines[1][2]  # 31 + 3 + this one


# --- the fast lane ---------------------------------------------------------------------------------------------
class CachedOne:
    """An engine with one cached pair (BTC/USDT 1h): the lane's side of `SignalEngine.cached_json`."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def cached_json(self, raw_symbol: str, raw_timeframe: str) -> bytes | None:
        self.asked.append((raw_symbol, raw_timeframe))
        return b'{"cached":true}' if (raw_symbol, raw_timeframe) == ("BTC/USDT", "1h") else None


def predict_route() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(body: dict[str, Any]) -> dict[str, Any]:
        return {"route": body}

    return app


def with_lane(engine: CachedOne, **rules: Any) -> Edge:
    edge = wrapped(app=predict_route(), **rules)
    edge.lane = FastLane(lambda: engine, "signal_service")
    return edge


def test_the_lane_answers_only_after_the_keys_and_their_rate() -> None:
    engine, clock = CachedOne(), Clock()
    body = {"symbol": "BTC/USDT", "timeframe": "1h"}
    with local_client(with_lane(engine, keys=KEYS, clock=clock)) as client:
        shaped(client.post("/predict", json=body), 401)
        assert engine.asked == []
        for _ in range(3):
            answer = client.post("/predict", json=body, headers={"X-API-Key": READ_KEY})
            assert answer.content == b'{"cached":true}' and answer.headers["server"] == "BentoML Service/signal_service"
        shaped(client.post("/predict", json=body, headers={"X-API-Key": READ_KEY}), 429)
        assert len(engine.asked) == 3


def test_a_body_the_lane_declines_reaches_the_route_whole_a_chunked_one_included() -> None:
    engine = CachedOne()
    other = b'{"symbol": "ETH/USDT", "timeframe": "1h"}'
    with local_client(with_lane(engine)) as client:
        json_type = {"content-type": "application/json"}
        chunked = client.post("/predict", content=iter([other[:10], other[10:]]), headers=json_type)
        assert chunked.json() == {"route": {"symbol": "ETH/USDT", "timeframe": "1h"}}
        assert client.post("/predict", content=other, headers=json_type).json()["route"]["symbol"] == "ETH/USDT"
        assert client.post("/predict", json={"symbol": 1}).json() == {"route": {"symbol": 1}}  # not the model's
    assert engine.asked == [("ETH/USDT", "1h"), ("ETH/USDT", "1h")]
