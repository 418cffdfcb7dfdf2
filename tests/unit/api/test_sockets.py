"""The push sockets bounded like bodies (issue 20), against a real uvicorn on 127.0.0.1 serving the web app with a
real push hub over a SQLite ledger: WebSocket messages capped (1009), text only (1003), malformed ones answered in
the API's error texts, never a traceback; subscriptions checked against the served universe on the WebSocket and
the event stream; subscribers capped per worker (503 + Retry-After, close 1013) and per API key; a trickled body
cut with 408; nothing kept per subscriber once it left."""

from __future__ import annotations

import gc
import json
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from signals.api.access import key_hash
from signals.api.deadline import BodyDeadline
from signals.api.edge import Edge, EdgeRules
from signals.api.web import create_web_app
from signals.core.errors import InvalidInput
from signals.core.settings import ApiKey, Settings
from signals.ledger.store import Ledger
from signals.live.push import Interest, PushHub, Subscription

UNIVERSE = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
TIMEFRAMES = ("15m", "1h")
LIMIT = 65_536  # the WebSocket message cap (the default)
KEY = "sk_test_key"


class Served:
    def __init__(self, url: str, hub: PushHub) -> None:
        self.url, self.hub = url, hub
        self.ws = url.replace("http", "ws")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """The server thread's cleanup is asynchronous to the client: poll for its result (a bounded wait, not a
    duration under test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    ledger = Ledger(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'signals.db'}")
    ledger.migrate()
    hub = PushHub(ledger, universe=UNIVERSE, timeframes=TIMEFRAMES, max_subscribers=3, max_per_key=2, poll_s=60)

    settings = SimpleNamespace(settings=Settings(universe=list(UNIVERSE), timeframes=list(TIMEFRAMES)))
    web = create_web_app(lambda: settings, lambda: hub, heartbeat_s=60, max_message_bytes=LIMIT)  # type: ignore[arg-type,return-value]
    keyed = Edge(web, EdgeRules(keys=[ApiKey(name="desk", sha256=key_hash(KEY), rate_per_minute=None)]))
    with serving(keyed) as url:
        yield Served(url, hub)
    ledger.close()


@pytest.fixture(autouse=True)
def _all_left(served: Served) -> Iterator[None]:
    yield
    wait_until(lambda: not served.hub.subscriptions, "every subscriber to be given back")


def ws(served: Served, key: str = KEY) -> Any:
    return connect(f"{served.ws}/ws/desk-1?api_key={key}", open_timeout=10, close_timeout=5)


def close_code(client: Any) -> int:
    """What the server's close frame said (after anything it sent before it)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.recv(timeout=10)
    assert closed.value.rcvd is not None, "no close frame from the server"
    return int(closed.value.rcvd.code)


def ask(client: Any, message: str | dict[str, Any]) -> dict[str, Any]:
    client.send(message if isinstance(message, str) else json.dumps(message))
    reply: dict[str, Any] = json.loads(client.recv(timeout=10))
    return reply


def test_a_message_over_the_cap_is_closed_1009_and_a_binary_one_1003(served: Served) -> None:
    with ws(served) as client:
        assert json.loads(client.recv(timeout=10))["type"] == "connected"
        client.send(json.dumps({"type": "subscribe", "symbols": ["BTC/USDT"] * 6000}))  # 72 KB > 64 KiB
        assert close_code(client) == 1009
    with ws(served) as client:
        client.recv(timeout=10)
        client.send(b"\x00\x01")
        assert close_code(client) == 1003


def test_malformed_messages_are_answered_in_the_apis_texts_without_a_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with ws(served) as client:
        client.recv(timeout=10)
        deep = "[" * 30_000 + "]" * 30_000  # under the cap, deeper than the parser goes
        nested = json.dumps({"type": "subscribe", "symbols": [[[["BTC/USDT"]]]]})
        for bad in ("{", deep, "[" * 400 + "]" * 400, '"just a string"', json.dumps({"type": "dance"}), "{}", nested):
            reply = ask(client, bad)
            assert reply["type"] == "error" and '{"type": "ping"}' in reply["error"] or "errors" in reply, reply
            assert "NoneType" not in reply["error"] and "Error" not in reply["error"], reply
        shape = ask(client, {"type": "subscribe", "symbols": [None], "timeframes": "1h"})
        assert shape["type"] == "error" and shape["errors"][0]["field"] == "symbols.0", shape
        assert "NoneType" not in json.dumps(shape) and "attribute" not in shape["error"]
        outside = ask(client, {"type": "subscribe", "symbols": ["DOGE/USDT"]})
        assert outside["type"] == "error" and "DOGE/USDT not in the served universe" in outside["error"]
        assert "BTC/USDT" in outside["error"]  # says what may be asked for
        timeframe = ask(client, {"type": "subscribe", "timeframes": ["4h"]})
        assert "4h not in the served timeframes" in timeframe["error"]
        good = ask(client, {"type": "subscribe", "symbols": "BTCUSDT,ETH-USDT", "timeframes": ["1h"]})
        assert good == {"type": "subscribed", "symbols": ["BTC/USDT", "ETH/USDT"], "timeframes": ["1h"],
                        "kinds": ["action", "signal"]}  # fmt: skip
        assert ask(client, {"type": "ping"})["type"] == "pong"  # still served after all of it
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_the_event_stream_refuses_what_is_not_served_in_the_one_error_shape(served: Served) -> None:
    headers = {"X-API-Key": KEY}
    for query, needle in (("symbols=DOGEUSDT", "not in the served universe"), ("timeframes=4h", "served timeframes")):
        answer = httpx.get(f"{served.url}/api/stream?{query}", headers=headers, timeout=10)
        body = answer.json()
        assert answer.status_code == 400 and body["success"] is False and needle in body["error"], body


def test_subscribers_are_capped_per_key_and_per_worker(served: Served) -> None:
    hub = served.hub
    held = [hub.subscribe(Interest(), key="desk")]  # one of the key's two, held by "another connection"
    try:
        with ws(served) as second:
            second.recv(timeout=10)
            with ws(served) as third:  # the key's third: refused
                assert close_code(third) == 1013
            answer = httpx.get(f"{served.url}/api/stream", headers={"X-API-Key": KEY}, timeout=10)
            assert answer.status_code == 429 and "SIGNALS_STREAM_MAX_PER_KEY" in answer.json()["error"]
            assert answer.headers["retry-after"] == "10"
            held.append(hub.subscribe(Interest()))  # the worker's third of three
            answer = httpx.get(f"{served.url}/api/stream", headers={"X-API-Key": KEY}, timeout=10)
            body = answer.json()
            assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
            assert body["success"] is False and "SIGNALS_STREAM_MAX_SUBSCRIBERS" in body["error"]
            assert hub.status()["refused_subscribers"] >= 3
    finally:
        for subscription in held:
            hub.unsubscribe(subscription)
    wait_until(lambda: hub.per_key == {}, "the key's connections to be given back")


def test_nothing_is_kept_per_subscriber_after_many_come_and_go(served: Served) -> None:
    hub = served.hub
    made: list[weakref.ref[Subscription]] = []
    subscribe = hub.subscribe

    def tracked(interest: Interest, *, key: str | None = None) -> Subscription:
        subscription = subscribe(interest, key=key)
        made.append(weakref.ref(subscription))
        return subscription

    hub.subscribe = tracked  # type: ignore[method-assign]
    try:
        for _ in range(15):
            with ws(served) as client:
                client.recv(timeout=10)
            with httpx.stream("GET", f"{served.url}/api/stream", headers={"X-API-Key": KEY}, timeout=10) as r:
                assert next(r.iter_text()).startswith("retry:")
            with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1]))) as raw:  # leaves early
                raw.sendall(f"GET /api/stream HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n\r\n".encode())
        wait_until(lambda: not hub.subscriptions and not hub.per_key, "the registry to empty")
    finally:
        del hub.subscribe
    gc.collect()
    assert len(made) >= 30  # every WebSocket and stream; an early leaver may be gone before it subscribes
    assert [ref for ref in made if ref() is not None] == []


def test_interest_parse_checks_the_universe_only_when_given_one() -> None:
    assert Interest.parse(["DOGE/USDT"], None).symbols == frozenset({"DOGE/USDT"})
    with pytest.raises(InvalidInput, match="DOGE/USDT not in the served universe"):
        Interest.parse(["DOGE/USDT"], None, universe=UNIVERSE)


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    """An app that reads the whole body, as every POST route does."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def test_a_client_that_trickles_its_body_is_cut_with_408() -> None:
    with serving(BodyDeadline(_echo, timeout_s=0.3)) as url:
        port = int(url.rsplit(":", 1)[1])
        whole = httpx.post(f"{url}/x", content=b'{"a": 1}', headers={"Content-Type": "application/json"}, timeout=10)
        assert whole.status_code == 200 and whole.content == b'{"a": 1}'
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            slow.sendall(head + b'{"a": ')  # and nothing more: the server must not wait for the rest
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = slow.recv(4096)
                if not chunk:
                    break
                answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert status_line.startswith(b"HTTP/1.1 408") and body["status"] == 408
    assert "SIGNALS_BODY_TIMEOUT_S" in body["error"] and body["success"] is False
