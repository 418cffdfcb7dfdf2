"""Push and the dashboard against a real `bentoml serve`: server-sent events and the WebSocket on a new candle, the
page in a real headless Chromium (no console error, the served signals, a pushed update without a reload, phone
width), and cross-origin calls from a real browser allowed or refused by `SIGNALS_CORS_ORIGINS`.

A new candle comes the way an operator brings one: it is written into the store, then `POST /admin/refresh`
computes, records and pushes every signal of the timeframe.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets

from tests.support.browser import chromium, console_errors, screenshot, static_origin
from tests.support.servers import Server, bentoml_server
from tests.support.world import World, copy_world, new_candle

pytestmark = pytest.mark.slow
BLANK_PAGE = "<!doctype html><title>another origin</title><p>a page of another origin</p>"


@dataclass
class Origins:
    allowed: str
    refused: str


@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    return copy_world(trained_world, tmp_path_factory.mktemp("push-world"))


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    pages = tmp_path_factory.mktemp("origin-pages")
    (pages / "index.html").write_text(BLANK_PAGE)
    with static_origin(pages) as allowed, static_origin(pages) as refused:
        yield Origins(allowed, refused)


@pytest.fixture(scope="module")
def server(world: World, origins: Origins, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {**world.env(), "SIGNALS_CORS_ORIGINS": json.dumps([origins.allowed]), "SIGNALS_STREAM_HEARTBEAT_S": "1"}
    with bentoml_server(env, tmp_path_factory.mktemp("push-logs"), name="push") as running:
        yield running


def refresh(server: Server, timeframe: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/admin/refresh", json={"timeframe": timeframe}, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


@dataclass
class EventReader:
    """An SSE client in a thread: every event (id, event, data) the server sent, in order."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: int = 0
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> EventReader:
        self.thread.start()
        assert self.connected.wait(20), "the stream did not open"
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join(10)

    def _read(self) -> None:
        with httpx.stream("GET", self.url, headers=self.headers, timeout=httpx.Timeout(30, read=30)) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            current: dict[str, Any] = {}
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith(":"):
                    self.comments += 1
                    self.connected.set()
                elif line == "":
                    if "data" in current:
                        current["data"] = json.loads(current["data"])
                        self.events.append(current)
                    current = {}
                else:
                    name, _, value = line.partition(": ")
                    current[name] = value

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.events) >= count, f"{len(self.events)} of {count} events: {self.events}"
        return self.events


def served(server: Server, symbol: str, timeframe: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/predict", json={"symbol": symbol, "timeframe": timeframe}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- the page's routes ---------------------------------------------------------------------------------------
def test_the_root_is_the_dashboard_and_docs_is_the_openapi_page(server: Server) -> None:
    root = httpx.get(f"{server.url}/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    page = httpx.get(f"{server.url}/ui/")
    assert page.status_code == 200 and "<title>trading-signals</title>" in page.text
    loads = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', page.text)
    assert loads and all(not url.startswith(("http:", "https:", "//")) for url in loads), loads  # no CDN
    chart_library = httpx.get(f"{server.url}/ui/vendor/lightweight-charts.standalone.production.js")
    assert chart_library.status_code == 200 and "Lightweight Charts" in chart_library.text[:400]
    assert httpx.get(f"{server.url}/ui/vendor/lightweight-charts.NOTICE").status_code == 200
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    schema = httpx.get(f"{server.url}/docs.json").json()
    assert {"/predict", "/batch", "/summary", "/action", "/admin/refresh"} <= set(schema["paths"])


# --- server-sent events ------------------------------------------------------------------------------------------
def test_each_new_signal_is_pushed_once_and_a_reconnect_resumes_after_its_last_event(
    server: Server, world: World
) -> None:
    url = f"{server.url}/api/stream?timeframes=1h"
    pairs = [symbol for symbol, tf in world.models if tf == "1h"]
    before = refresh(server, "1h")  # the current candle recorded (or recorded before): the state a stream starts with
    assert before["computed"] == len(pairs)
    with EventReader(url) as reader:
        shown = reader.wait_for(2 * len(pairs))[: 2 * len(pairs)]  # at once: each pair's signal and action
        candle = new_candle(world, "1h")
        report = refresh(server, "1h")
        assert report["signals"] == report["computed"] == report["recorded"] == len(pairs)
        assert report["actions"] == len(pairs) and report["pushed_again"] == 0
        events = reader.wait_for(4 * len(pairs))[2 * len(pairs) :]  # a signal and an action per pair
        time.sleep(1.5)  # a heartbeat later: nothing else, nothing twice
        assert len(reader.events) == 4 * len(pairs)
    assert sorted((e["event"], e["data"]["symbol"]) for e in shown) == sorted(
        (kind, pair) for kind in ("signal", "action") for pair in pairs
    )
    assert all(e["data"]["candle_time"] < candle for e in shown)
    signals = [e for e in events if e["event"] == "signal"]
    actions = [e for e in events if e["event"] == "action"]
    assert len({e["id"] for e in events}) == len(events)
    assert sorted(e["data"]["symbol"] for e in signals) == sorted(pairs)
    assert sorted(e["data"]["symbol"] for e in actions) == sorted(pairs)
    for event in signals:
        signal = event["data"]
        assert signal["candle_time"] == candle and signal["timeframe"] == "1h"
        assert event["id"] == f"{signal['model_version']}|{signal['symbol']}|{candle}"
        assert signal == served(server, signal["symbol"], "1h") | {"prediction_time": signal["prediction_time"]}
    assert reader.comments >= 2  # the opening comment and at least one heartbeat

    with EventReader(url, headers={"Last-Event-ID": events[0]["id"]}) as resumed:
        replayed = resumed.wait_for(len(events) - 1, timeout=10)
    assert [e["id"] for e in replayed] == [e["id"] for e in events[1:]]  # a resume has no snapshot

    again = refresh(server, "1h")  # the same candle: nothing written, everything pushed again
    assert again["computed"] == len(pairs) and again["recorded"] == 0 and again["pushed_again"] == 2 * len(pairs)


def test_a_stream_with_bad_parameters_is_refused_with_the_reason(server: Server) -> None:
    response = httpx.get(f"{server.url}/api/stream", params={"timeframes": "7m"})
    assert response.status_code == 400 and "unknown timeframe '7m'" in response.json()["detail"]


# --- the WebSocket -----------------------------------------------------------------------------------------------
async def next_message(socket: Any, seen: list[dict[str, Any]], wanted: Any) -> dict[str, Any]:
    """Read until a message for which `wanted(message)` holds; every message read goes into `seen`."""
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), 20))
        seen.append(message)
        if wanted(message):
            return message


def test_the_websocket_sends_signal_and_prediction_updates_and_answers_pings(server: Server, world: World) -> None:
    seen: list[dict[str, Any]] = []

    async def session() -> list[dict[str, Any]]:
        async with websockets.connect(f"{server.url.replace('http', 'ws')}/ws/desk-7") as socket:
            hello = json.loads(await socket.recv())
            assert hello["type"] == "connected" and hello["client_id"] == "desk-7"
            await socket.send(json.dumps({"type": "ping"}))
            await next_message(socket, seen, lambda m: m["type"] == "pong")
            await socket.send(json.dumps({"type": "subscribe", "symbols": ["BTCUSDT"], "timeframes": ["1h"]}))
            subscribed = await next_message(socket, seen, lambda m: m["type"] == "subscribed")
            assert subscribed["symbols"] == ["BTC/USDT"]
            candle = await asyncio.to_thread(new_candle, world, "1h")
            await asyncio.to_thread(refresh, server, "1h")

            def new(m: dict[str, Any]) -> bool:
                return m["type"].endswith("_update") and m["id"].endswith(f"|{candle}")

            return [await next_message(socket, seen, new) for _ in range(2)]

    messages = asyncio.run(session())
    by_type = {m["type"]: m for m in messages}
    assert set(by_type) == {"signal_update", "prediction_update"}
    signal = by_type["signal_update"]["data"]
    assert signal["symbol"] == "BTC/USDT" and signal["timeframe"] == "1h"
    update = by_type["prediction_update"]["data"]
    assert update["symbol"] == "BTCUSDT" and update["strategy"] == "PPO"  # as the client wrote it
    assert update["action_name"] in {"HOLD", "BUY", "SELL"} and 0 <= update["confidence"] <= 1
    assert {"action_id", "current_price", "timestamp", "model_version", "actionable", "abstain_reason"} <= set(update)
    assert {
        m["data"]["pair"] if m["type"] == "prediction_update" else m["data"]["symbol"] for m in seen if "data" in m
    } == {"BTC/USDT"}


def test_an_older_card_gets_its_pair_at_once_gated_and_spelled_as_it_wrote_it(server: Server) -> None:
    """The Shadow card: on connecting it shows the default pair's state at once (not "Model not loaded" for an
    hour), never another pair's burst, never a SELL the server does not back; the refresh of a recorded candle
    still reaches it."""
    refresh(server, "1h")  # the current 1h candle recorded
    ours = httpx.post(f"{server.url}/action", json={"symbol": "BTC/USDT"}, timeout=30).json()
    seen: list[dict[str, Any]] = []

    def btc_action(spelled: str) -> Any:
        return lambda m: m["type"] == "prediction_update" and m["data"]["symbol"] == spelled

    async def session() -> dict[str, Any]:
        async with websockets.connect(f"{server.url.replace('http', 'ws')}/ws/shadow-card") as socket:
            hello = json.loads(await socket.recv())
            assert hello["subscription"]["symbols"] == ["BTC/USDT"]  # SIGNALS_LEGACY_DEFAULT_SYMBOL
            at_once = await next_message(socket, seen, btc_action("BTCUSDT"))  # no refresh: the snapshot
            await socket.send(json.dumps({"type": "subscribe", "symbols": ["BTC-USDT"], "kinds": ["action"]}))
            await next_message(socket, seen, btc_action("BTC-USDT"))  # its snapshot, as the card wrote the pair
            report = await asyncio.to_thread(refresh, server, "1h")
            assert report["recorded"] == 0 and report["pushed_again"] > 0  # recorded before: pushed again
            await next_message(socket, seen, btc_action("BTC-USDT"))
            return at_once

    update = asyncio.run(session())["data"]
    assert update["model_action_name"] == ours["action_name"] and update["actionable"] == ours["actionable"]
    assert update["action_name"] == (ours["action_name"] if ours["actionable"] else "HOLD")
    assert update["abstain_reason"] == ours["abstain_reason"]
    pairs = {m["data"].get("pair", m["data"]["symbol"]) for m in seen if "data" in m}
    assert pairs == {"BTC/USDT"}  # one pair, not every pair's burst


# --- the page in a real browser -----------------------------------------------------------------------------------
def cards(driver: Any) -> dict[str, dict[str, str]]:
    return {
        card.get_attribute("data-symbol"): {
            "direction": card.get_attribute("data-direction"),
            "candle_time": card.get_attribute("data-candle-time"),
        }
        for card in driver.find_elements("css selector", ".card")
    }


def wait_until(predicate: Any, timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_the_dashboard_shows_the_served_signals_and_updates_live(server: Server, world: World) -> None:
    with chromium() as driver:
        driver.get(f"{server.url}/")
        assert driver.current_url.startswith(f"{server.url}/ui/")
        batch = httpx.post(f"{server.url}/batch", json={"timeframe": "1h"}, timeout=30).json()
        expected = {
            s["symbol"]: {
                "direction": s["direction"] if s["actionable"] else "NO_TRADE",
                "candle_time": s["candle_time"],
            }
            for s in batch["signals"]
        }
        wait_until(lambda: cards(driver) == expected, what=f"the grid to show {expected}, shows {cards(driver)}")
        wait_until(lambda: driver.find_element("id", "stream-status").text == "live", what="the stream to open")
        wait_until(lambda: driver.find_elements("css selector", "#summary tr[data-timeframe]"), what="the summary")
        wait_until(lambda: "models on cpu" in driver.find_element("id", "health").text, what="the health panel")
        assert driver.find_elements("css selector", "#chart canvas"), "the chart did not draw"
        for card in driver.find_elements("css selector", ".card"):  # no edge: the reason is on the card
            assert "no edge:" in card.text
        driver.execute_script("window.__notReloaded = true")
        assert console_errors(driver) == []
        assert screenshot(driver, "dashboard-1280x800", full_page=True).stat().st_size > 10_000

        candle = new_candle(world, "1h")
        refresh(server, "1h")
        wait_until(
            lambda: all(c["candle_time"] == candle for c in cards(driver).values()),
            what=f"the pushed candle {candle} on every card",
        )
        assert driver.execute_script("return window.__notReloaded") is True  # pushed, not reloaded
        assert driver.find_elements("css selector", ".card.updated")
        assert console_errors(driver) == []

        driver.set_window_size(390, 844)  # a phone
        time.sleep(0.5)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways at phone width ({width} px)"
        screenshot(driver, "dashboard-phone", full_page=False)


def test_cross_origin_calls_from_a_browser_follow_the_allowed_origins(server: Server, origins: Origins) -> None:
    fetch = """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0] + "/predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify({symbol: "BTC/USDT", timeframe: "1h"})})
          .then(r => r.json().then(body => done({ok: r.ok, symbol: body.symbol})))
          .catch(e => done({error: String(e)}));
    """
    with chromium() as driver:
        driver.get(f"{origins.allowed}/index.html")
        allowed = driver.execute_async_script(fetch, server.url)
        assert allowed == {"ok": True, "symbol": "BTC/USDT"}  # a JSON POST: the preflight passed too
        driver.get(f"{origins.refused}/index.html")
        refused = driver.execute_async_script(fetch, server.url)
        assert "error" in refused and "Failed to fetch" in refused["error"]
        get_compat = driver.execute_async_script(
            "const done = arguments[1]; fetch(arguments[0]).then(r => done('read')).catch(e => done(String(e)));",
            f"{server.url}/api/predictions?timeframe=1h",
        )
        assert "Failed to fetch" in get_compat
