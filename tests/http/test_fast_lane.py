"""The edge's fast lane (`signals.api.fastlane`) on the real service, in process: a cached `/predict` answered from
its JSON bytes is byte-identical to the route's answer to the same request (body, status, header names and order;
only the per-request ids differ), and every request the lane cannot answer exactly goes on to the route.

One tiny world (tests/support/world.py) and one `TestClient(SignalService.to_asgi())`: the app BentoML's worker
serves, the edge outside BentoML's whole stack (`signals.api.outermost`: OpenTelemetry, access log, metrics, timeout,
CORS, the router). Which of the two answered is seen by a spy around `FastLane.answer` that calls the real method;
whether BentoML's stack ran, by a spy around its OpenTelemetry middleware.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.testclient import TestClient

from service import engine_slot, service
from signals.api.deadline import BodyDeadline
from signals.api.edge import Edge
from signals.api.fastlane import FastLane
from tests.support.fakes import separate_metrics
from tests.support.servers import local_client
from tests.support.world import World, copy_world, environment

BTC, ETH = "BTC/USDT", "ETH/USDT"
IDS = {"x-request-id": re.compile(r"[0-9a-f]{32}"), "x-bentoml-request-id": re.compile(r"[0-9a-f]{16}")}
PER_RESPONSE = ("date",)  # the server's clock, set by uvicorn for every answer alike


@pytest.fixture(scope="module")
def client(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    built = copy_world(trained_world, tmp_path_factory.mktemp("world"))
    with environment(built.env()), separate_metrics(), local_client(service.to_asgi()) as test_client:
        deadline = time.monotonic() + 60
        while test_client.get("/readyz").status_code != 200:  # ready: every served pair computed once
            assert time.monotonic() < deadline, "the server never turned ready"
            time.sleep(0.05)
        yield test_client


@pytest.fixture
def lane(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What the lane said for each request it was asked about (True: it answered)."""
    said: list[bool] = []
    real = FastLane.answer

    async def spy(self: FastLane, scope: Any, body: bytes, send: Any) -> bool:
        said.append(await real(self, scope, body, send))
        return said[-1]

    monkeypatch.setattr(FastLane, "answer", spy)
    return said


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests that went through BentoML's middleware (its OpenTelemetry one, which calls on)."""
    passed: list[str] = []
    real = OpenTelemetryMiddleware.__call__

    async def spy(self: OpenTelemetryMiddleware, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            passed.append(scope["path"])
        await real(self, scope, receive, send)

    monkeypatch.setattr(OpenTelemetryMiddleware, "__call__", spy)
    return passed


def route_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FastLane, "wants", lambda self, scope: False)


def head(response: Any) -> list[tuple[str, str]]:
    """The headers in order, the per-request ids checked for their form and masked."""
    out = []
    for name, value in response.headers.raw:
        key = name.decode().lower()
        if key in IDS:
            assert IDS[key].fullmatch(value.decode()), (key, value)
            value = b"<id>"
        if key not in PER_RESPONSE:
            out.append((key, value.decode()))
    return out


def test_a_cached_predict_answers_from_the_lane_byte_identical_to_the_route(
    client: TestClient, lane: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = client.post("/status", json={}).json()["cache"]
    fast = client.post("/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
    assert lane == [True] and fast.status_code == 200
    route_only(monkeypatch)
    slow = client.post("/predict", json={"symbol": "BTCUSDT", "timeframe": "1h"})
    assert lane == [True] and slow.status_code == 200  # the lane was not asked: the route answered
    assert fast.content == slow.content
    assert head(fast) == head(slow)
    assert fast.headers["x-request-id"] != slow.headers["x-request-id"]  # each its own, the lane's made by the edge
    assert [k for k, _ in head(fast)][-2:] == ["x-bentoml-request-id", "x-request-id"]
    after = client.post("/status", json={}).json()["cache"]
    assert after["cache_hits"] - before["cache_hits"] == 2  # the lane's hit is counted as the route's is
    assert after["cache_lookups"] - before["cache_lookups"] == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"symbol": BTC, "timeframe": "1h", "explain": True}, 400),  # a field the request model does not take
        ({"symbol": BTC}, 400),
        ({"symbol": "SOL/USDT", "timeframe": "1h"}, 404),  # no model
        ({"symbol": "DOGE/USDT", "timeframe": "1h"}, 404),  # not in the served universe
    ],
)
def test_a_body_the_lane_cannot_answer_goes_on_to_the_route_in_the_one_error_shape(
    client: TestClient, lane: list[bool], body: dict[str, Any], status: int
) -> None:
    answer = client.post("/predict", json=body)
    assert lane == [False]
    assert answer.status_code == status
    assert answer.json()["success"] is False and answer.json()["status"] == status
    assert IDS["x-request-id"].fullmatch(answer.headers["x-request-id"])


def test_a_pair_not_cached_goes_on_to_the_route_and_its_answer_is_the_lanes_next(
    client: TestClient, lane: list[bool]
) -> None:
    engine = engine_slot.current()
    assert engine is not None
    engine._cache.clear()  # as after a new candle: the next request computes
    computed = client.post("/predict", json={"symbol": ETH, "timeframe": "1h"})
    cached = client.post("/predict", json={"symbol": ETH, "timeframe": "1h"})
    assert lane == [False, True]
    assert computed.status_code == cached.status_code == 200
    assert computed.content == cached.content and head(computed) == head(cached)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/predict?symbol=BTCUSDT", {}),  # a query string
        ("/predict", {"Origin": "http://127.0.0.1:3000"}),  # a page's request: CORS is the route's business
        ("/predict", {"Content-Type": "application/merge-patch+json"}),
    ],
)
def test_requests_the_lane_does_not_take_are_answered_by_the_route(
    client: TestClient, lane: list[bool], path: str, headers: dict[str, str]
) -> None:
    sent = {"Content-Type": "application/json", **headers}
    answer = client.post(path, content=b'{"symbol": "BTC/USDT", "timeframe": "1h"}', headers=sent)
    assert lane == []
    assert answer.status_code == 200 and answer.json()["symbol"] == BTC


def test_the_edge_checks_before_the_lane(client: TestClient, lane: list[bool]) -> None:
    plain = client.post("/predict", content=b'{"symbol": "BTC/USDT", "timeframe": "1h"}')  # no type: 415
    other_host = client.post("/predict", json={"symbol": BTC, "timeframe": "1h"}, headers={"Host": "evil.test"})
    assert lane == []
    assert (plain.status_code, other_host.status_code) == (415, 400)


def test_the_edge_wraps_bentomls_whole_app_once() -> None:
    app = service.to_asgi()  # what BentoML's API worker hands uvicorn
    assert isinstance(app, BodyDeadline) and isinstance(app.app, Edge) and isinstance(app.app.app, Starlette)
    inside = [m.cls for m in app.app.app.user_middleware]
    assert Edge not in inside and BodyDeadline not in inside  # not also inside BentoML's stack: one pass


def test_a_hit_skips_bentomls_stack_and_everything_else_passes_it_once(
    client: TestClient, lane: list[bool], stack: list[str]
) -> None:
    client.post("/predict", json={"symbol": BTC, "timeframe": "1h"})
    client.post("/predict", json={"symbol": "SOL/USDT", "timeframe": "1h"})  # no model: the route's 404
    client.post("/predict", json={"symbol": BTC, "timeframe": "1h"}, headers={"Origin": "http://127.0.0.1:3000"})
    client.post("/status", json={})
    assert lane == [True, False]
    assert stack == ["/predict", "/predict", "/status"]


def test_a_hit_continues_the_callers_trace_as_the_route_does(
    client: TestClient, lane: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    fast = client.post("/predict", json={"symbol": BTC, "timeframe": "1h"}, headers=parent)
    route_only(monkeypatch)
    slow = client.post("/predict", json={"symbol": BTC, "timeframe": "1h"}, headers=parent)
    assert lane == [True]
    assert fast.headers["x-request-id"] == slow.headers["x-request-id"] == trace_id


def test_metrics_count_the_lanes_hits_and_the_edges_refusals(client: TestClient, lane: list[bool]) -> None:
    """What `/metrics` serves of this process (read from the registry: in process, BentoML's `/metrics` wants the
    multiprocess directory its server sets up); BentoML's request metrics see neither."""

    def counted() -> tuple[float, float]:
        hit = REGISTRY.get_sample_value("signals_cache_requests_total", {"result": "hit"})
        refused = REGISTRY.get_sample_value("signals_edge_refusals_total", {"status": "415"})
        return hit or 0.0, refused or 0.0

    before = counted()
    client.post("/predict", json={"symbol": BTC, "timeframe": "1h"})
    refusal = client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain"})
    after = counted()
    assert lane == [True] and refusal.status_code == 415
    assert IDS["x-request-id"].fullmatch(refusal.headers["x-request-id"])  # the edge's own answers name the request
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
