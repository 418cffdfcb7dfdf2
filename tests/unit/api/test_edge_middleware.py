"""The HTTP edge's middleware on a small real ASGI app: body limits, JSON only, one error shape on the wire, and
API keys with scopes and rate limits."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.testclient import TestClient

from signals.api.access import AccessControl, TokenBucket, key_hash, new_key
from signals.api.errors import ClientErrorsInOneLine, error_body
from signals.api.middleware import ErrorEnvelope, RequestLimits
from signals.core.settings import ApiKey

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


def wrapped(*, keys: list[ApiKey] | None = None, clock: Any = None) -> Any:
    app: Any = ErrorEnvelope(echo_app())
    app = RequestLimits(app, max_body_bytes=LIMIT)
    return AccessControl(app, keys or [], **({"clock": clock} if clock else {}))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(wrapped()) as test_client:
        yield test_client


def shaped(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["status"] == status and body["detail"] == body["error"], body
    return str(body["error"])


def test_a_body_over_the_limit_is_413_before_it_is_read(client: TestClient) -> None:
    big = b'{"x": "' + b"a" * (2 * LIMIT) + b'"}'
    assert "over the limit of 2,048" in shaped(client.post("/echo", content=big), 413)
    chunked = client.post("/echo", content=iter([big[:1000], big[1000:]]), headers={"content-type": "application/json"})
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
    assert "is not allowed" in shaped(client.post("/bento-error"), 405)
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
    with TestClient(wrapped(keys=KEYS)) as client:
        missing = client.post("/echo", json={})
        assert "API key is needed" in shaped(missing, 401) and missing.headers["WWW-Authenticate"] == "Bearer"
        shaped(client.post("/echo", json={}, headers={"Authorization": "Bearer sk_wrong"}), 401)
        assert client.post("/echo", json={"a": 1}, headers={"Authorization": f"Bearer {READ_KEY}"}).status_code == 200
        assert client.post("/echo", json={"a": 1}, headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        assert client.get("/stream", params={"api_key": READ_KEY}).status_code == 200  # EventSource sends no headers
        assert "lacks the admin scope" in shaped(client.get("/admin/reload", headers={"X-API-Key": READ_KEY}), 403)
        assert client.get("/admin/reload", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        assert client.get("/livez").status_code == 200  # probes stay open


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_are_not_affected() -> None:
    clock = Clock()
    with TestClient(wrapped(keys=KEYS, clock=clock)) as client:
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
