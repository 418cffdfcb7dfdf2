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
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

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
    """Poll until `predicate` is truthy; an element not drawn yet (or redrawn under us) is "not yet", not a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None
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


# --- a trader's reading: past calls, plots, equity, downloads, alerts (issue 21) ------------------------------------
def seed_track_record(server: Server, world: World) -> dict[str, int]:
    """Resolved live records of BTC/USDT 1h on the served candles, written into the server's SQLite ledger (WAL):
    actionable LONG plans that hit their target or stop, paper SHORT calls, and model directions without a plan.
    Their recorded time is their candle's, long before the server started, so the push tail never sends them."""
    from signals.ledger.store import Ledger
    from tests.support.factories import signal_record

    template = httpx.post(f"{server.url}/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}, timeout=30).json()
    candles = httpx.get(f"{server.url}/api/candles/BTCUSDT?timeframe=1h&limit=300", timeout=30).json()["candles"]
    ledger = Ledger(f"sqlite:///{world.data_dir.resolve() / 'signals.db'}")
    rows, kinds = [], {"plan": 0, "paper": 0, "model": 0}
    for i, candle in enumerate(candles[20:-30:6]):
        kind = ("plan", "paper", "model", "model")[i % 4]
        kinds[kind] += 1
        close, candle_ms = float(candle["close"]), int(candle["time"]) * 1000
        direction = "SHORT" if kind == "paper" else "LONG"
        target = {"level": 1, "price": close * 1.01, "r_multiple": 1.0, "eta_minutes": 60}
        plan = {
            "entry": close,
            "stop_loss": close * 0.99,
            "atr": close * 0.01,
            "risk_reward": 1.0,
            "take_profits": [target],
        }
        reason = {"plan": None, "paper": "on probation: 3 of 20 paper calls", "model": "no demonstrated edge"}[kind]
        payload = template | {
            "candle_time": pd_iso(candle_ms), "direction": direction, "actionable": kind == "plan",
            "abstain_reason": reason, "levels": plan if kind == "plan" else None, "current_price": close,
        }  # fmt: skip
        rows.append(
            signal_record(
                model_name=f"cnn-lstm-seeded-{kind}",
                model_version=template["model_version"],
                symbol="BTC/USDT",
                timeframe="1h",
                candle_ms=candle_ms,
                mode="live",
                paper=kind == "paper",
                direction=direction,
                actionable=kind == "plan",
                abstain_reason=reason,
                close=close,
                payload=payload,
                expires_ms=candle_ms + 11 * 3_600_000,
                recorded_ms=candle_ms + 3_600_000,
            )  # fmt: skip
        )
    ledger.record_signals(rows)
    pending = [r for r in ledger.history("BTC/USDT", "1h", limit=1000) if r["model_name"].startswith("cnn-lstm-seeded")]
    outcomes = []
    for n, row in enumerate(pending):
        up = n % 3 != 0  # two of three plans reach +1R first
        outcomes.append({
            "id": row["id"], "resolved_ms": row["expires_ms"], "outcome_label": 2 if up else 0,
            "touched": 0 if up else 1,
            "bars_to_exit": 3, "long_return": 0.01 if up else -0.01, "short_return": -0.01 if up else 0.01,
            "call_return": None, "reversal": 1, "persistence": 1,
        })  # fmt: skip
    ledger.resolve(outcomes)
    ledger.engine.dispose()
    return kinds


def pd_iso(candle_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(candle_ms / 1000))


def test_the_dashboard_reads_at_a_glance_with_equity_exports_and_alerts(server: Server, world: World) -> None:
    kinds = seed_track_record(server, world)

    served = httpx.get(f"{server.url}/equity", params={"timeframe": "1h"}, timeout=30).json()
    paper = httpx.get(f"{server.url}/equity", params={"timeframe": "1h", "calls": "paper"}, timeout=30).json()
    assert (served["calls"], paper["calls"]) == (kinds["plan"], kinds["paper"])
    card = httpx.post(f"{server.url}/scorecard", json={"timeframe": "1h"}, timeout=30).json()
    # one code path with the scorecard: its calls (plans and paper calls) earn what the two curves end at
    both = served["total_return"] + paper["total_return"]
    assert card["calls"]["n"] == kinds["plan"] + kinds["paper"]
    assert both == pytest.approx(card["calls"]["expectancy"]["value"] * card["calls"]["n"], rel=1e-9)
    assert served["points"][-1]["equity"] == pytest.approx(served["total_return"])
    assert served["buy_and_hold_return"] is not None and served["pairs"] == ["BTC/USDT"]
    refused = httpx.get(f"{server.url}/equity", params={"calls": "everything"}, timeout=30)
    assert refused.status_code == 400 and "calls" in refused.text

    history = httpx.get(f"{server.url}/export/history.csv", params={"symbol": "BTCUSDT", "timeframe": "1h"}, timeout=30)
    assert history.status_code == 200 and history.headers["content-type"].startswith("text/csv")
    assert "attachment" in history.headers["content-disposition"]
    lines = history.text.splitlines()
    assert lines[0].startswith("candle_time,symbol,timeframe,mode") and len(lines) > sum(kinds.values())
    scorecard_csv = httpx.get(f"{server.url}/export/scorecard.csv", params={"timeframe": "1h"}, timeout=30)
    assert scorecard_csv.headers["content-type"].startswith("text/csv")
    assert scorecard_csv.text.splitlines()[0] == "metric,value" and "\ncalls.n," in scorecard_csv.text
    for route, params in (("/export/history.csv", {"symbol": "BTC USDT"}), ("/export/scorecard.csv", {"symbol": ""})):
        bad = httpx.get(f"{server.url}{route}", params=params, timeout=30)  # refused by the model, not a 500
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "symbol", bad.text
    wrong_method = httpx.request("PUT", f"{server.url}/admin/alerts", timeout=30)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET, POST"  # both routes of the path

    with chromium() as driver:
        driver.get(f"{server.url}/ui/?timeframe=1h&symbol=BTC%2FUSDT")
        wait_until(lambda: driver.find_element("id", "marker-caption").text, what="the past calls on the chart")
        shown = json.loads(driver.find_element("id", "chart").get_attribute("data-markers"))
        assert len(shown) == kinds["plan"] + kinds["paper"]  # by default: plans and paper calls only
        assert {m.split("|")[1] for m in shown} == {"plan", "paper"}
        assert {m.split("|")[0] for m in shown} >= {"target", "stop"}
        legend = driver.find_element("id", "marker-legend").text
        for words in ("target hit", "stop hit", "expired", "LONG", "SHORT"):
            assert words in legend
        driver.find_element("id", "all-calls").click()
        every = json.loads(driver.find_element("id", "chart").get_attribute("data-markers"))
        assert len(every) > len(shown) and any(m.endswith("|model") for m in every)

        wait_until(lambda: driver.find_element("id", "equity-panel").get_attribute("data-calls") == str(kinds["plan"]),
                   what="the equity curve of the served plans")  # fmt: skip
        assert driver.find_elements("css selector", "#equity-chart canvas")
        assert "buy-and-hold" in driver.find_element("id", "equity-note").text
        driver.find_element("css selector", '#equity-mode button[data-calls="paper"]').click()
        wait_until(lambda: driver.find_element("id", "equity-panel").get_attribute("data-calls") == str(kinds["paper"]),
                   what="the equity curve of the paper calls")  # fmt: skip
        assert "/export/history.csv?symbol=BTC%2FUSDT&timeframe=1h" in driver.find_element(
            "id", "history-csv").get_attribute("href")  # fmt: skip
        assert "/export/scorecard.csv?timeframe=1h" in driver.find_element("id", "scorecard-csv").get_attribute("href")

        wait_until(lambda: driver.find_element("id", "alerts-panel").is_displayed(), what="the alerts (no keys: admin)")
        driver.find_element("id", "alert-url").send_keys(
            "https://93.184.216.34/hooks/signals"
        )  # a public address: the policy
        driver.find_element("id", "alert-symbols").send_keys("BTC/USDT")
        driver.find_element("css selector", "#alert-form button").click()
        wait_until(lambda: "secret" in driver.find_element("id", "alert-result").text, what="the added alert")
        wait_until(lambda: "93.184.216.34" in driver.find_element("id", "alerts-list").text, what="the listed alert")
        listed = httpx.get(f"{server.url}/admin/alerts", timeout=30).json()
        assert [a["target"] for a in listed] == ["https://93.184.216.34/hooks/signals"]
        refused = httpx.post(f"{server.url}/admin/alerts", json={"url": "https://169.254.169.254/latest"}, timeout=30)
        assert refused.status_code == 400 and "link-local" in refused.json()["error"]
        assert listed[0]["filters"]["symbols"] == ["BTC/USDT"] and listed[0]["secret"] is None

        wait_until(lambda: driver.find_elements("css selector", "#reliability text.tick"), what="the plot ticks")
        readable = driver.execute_script(READABLE)
        assert readable["smallest_svg_text_px"] >= 11, readable
        assert readable["bar_track_px"] >= 100, readable
        assert readable["clipped_reasons"] == [], readable
        assert readable["percent_without_nbsp"] == [], readable
        health = driver.find_element("id", "health").text
        assert "market" in health and "1 models" not in health
        assert "_" not in driver.find_element("id", "summary").text  # plain words, not insufficient_data
        assert console_errors(driver) == []
        driver.execute_script("window.scrollTo(0, 0)")
        screenshot(driver, "dashboard-after-1280x800", full_page=True)

        driver.set_window_size(390, 844)
        wait_until(lambda: driver.execute_script("return document.documentElement.scrollWidth") <= 390,
                   what="no sideways scroll at phone width")  # fmt: skip
        phone = driver.execute_script(READABLE)
        assert phone["smallest_svg_text_px"] >= 11 and phone["clipped_reasons"] == [], phone
        driver.execute_script("window.scrollTo(0, 0)")
        screenshot(driver, "dashboard-after-390x844", full_page=True)


READABLE = """
const svgText = [...document.querySelectorAll("#scorecard-panel svg")].flatMap((svg) => {
  const scale = svg.getBoundingClientRect().width / 220;
  return [...svg.querySelectorAll("text")].map((t) => parseFloat(getComputedStyle(t).fontSize) * scale);
});
const clipped = [...document.querySelectorAll(".card .why")].filter((n) => n.scrollWidth > n.clientWidth + 1
  || getComputedStyle(n).textOverflow === "ellipsis").map((n) => n.textContent);
const percent = [...document.querySelectorAll("main *")].filter((n) => n.children.length === 0)
  .map((n) => n.textContent).filter((t) => / %/.test(t));
return {
  smallest_svg_text_px: Math.min(...svgText),
  bar_track_px: Math.min(...[...document.querySelectorAll(".bars .track")].map((n) => n.getBoundingClientRect().width)),
  clipped_reasons: clipped,
  percent_without_nbsp: percent,
};
"""


def test_during_an_exchange_outage_the_page_says_degraded_with_one_line_per_cause(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Live candles from a local exchange that answers every request with 503: the market row says the exchange
    fails, the pill says "degraded" (not "live"), and the universe panel reads one line for the pairs' one cause,
    never another pair's name in a pair's line."""
    from signals.testing.local_exchange import LocalExchange

    with LocalExchange(frames={}, exchange_id="binance") as exchange:
        exchange.fail_next(1_000_000, status=503)
        env = {
            **world.env(), "SIGNALS_SOURCE": "live", "SIGNALS_EXCHANGE": "binance",
            "SIGNALS_EXCHANGE_URL": exchange.url, "SIGNALS_EXCHANGE_RETRIES": "0", "SIGNALS_EXCHANGE_BACKOFF_S": "0",
            "SIGNALS_EXCHANGE_BREAKER_FAILURES": "1",
        }  # fmt: skip
        with bentoml_server(env, tmp_path_factory.mktemp("outage-logs"), name="outage") as outage, chromium() as driver:
            driver.get(f"{outage.url}/ui/?timeframe=1h")
            wait_until(lambda: driver.find_element("id", "grid-notice").text, what="the outage notice")
            lines = driver.find_element("id", "grid-notice").text.splitlines()
            assert len(lines) == 1, lines  # one cause, both pairs named once, in front of it
            assert lines[0].startswith("BTC/USDT, ETH/USDT: ") and lines[0].count("BTC") == 1, lines
            market = '#health dd[data-row="market"]'
            wait_until(lambda: "exchange failing" in driver.find_element("css selector", market).text,
                       what="the market row to say the exchange fails")  # fmt: skip
            assert driver.find_element("css selector", market).get_attribute("class") == "bad"
            wait_until(lambda: driver.find_element("id", "stream-status").get_attribute("data-state") == "degraded",
                       what="the degraded pill")  # fmt: skip
            assert driver.find_element("id", "stream-status").text != "live"
            screenshot(driver, "dashboard-outage-1280x800", full_page=False)
