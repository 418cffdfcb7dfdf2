"""The chaos battery's scenarios of issue 20 (`make chaos`, or `--only sockets,ledger_outage_*` on their own).

- sockets: a real server with a small subscriber cap; WebSocket attacks (a 14 MB message, binary, deep nesting,
  malformed JSON, the wrong shape, symbols outside the universe), the stream outside the universe, an idle-stream
  flood past the cap and the memory it costs and gives back, a trickled body; tracebacks counted in the log;
- ledger outage: PostgreSQL stopped (or SQLite held by `BEGIN EXCLUSIVE`) under traffic: the statuses every
  route answered, how long `/status` took to say `ok` again, and the records lost (asked while the ledger was down,
  missing from it after).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil

SOCKET_CAP = 200  # SIGNALS_STREAM_MAX_SUBSCRIBERS of the sockets scenario
FLOOD = 260  # idle streams opened against it


def _rss_mib(pid: int) -> float:
    process = psutil.Process(pid)
    return round(sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20, 1)


def _wait(predicate: Any, timeout: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return round(time.monotonic() - began, 2)
        time.sleep(0.2)
    return None


def _ws_attack(url: str, payload: str | bytes) -> str:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(url, open_timeout=30, close_timeout=10, max_size=None) as client:
        client.recv(timeout=30)
        client.send(payload)
        try:
            reply = json.loads(client.recv(timeout=30))
        except ConnectionClosed as closed:
            return f"close {closed.rcvd.code if closed.rcvd else 'without a frame'}"
        return f"{reply['type']}: {reply.get('error', '')[:90]}"


def _subscribers(client: httpx.Client, url: str) -> int:
    return int(client.post(f"{url}/status", json={}).json()["push"]["subscribers"])


def sockets(world: Any, work: Path) -> dict[str, Any]:
    from tests.support.servers import bentoml_server

    env = {**world.env(), "SIGNALS_STREAM_MAX_SUBSCRIBERS": str(SOCKET_CAP), "SIGNALS_BODY_TIMEOUT_S": "2"}
    out: dict[str, Any] = {}
    with bentoml_server(env, work, name="sockets") as server, httpx.Client(timeout=60) as client:
        ws_url = server.url.replace("http", "ws") + "/ws/chaos"
        attacks: dict[str, str | bytes] = {
            "14MB_message": json.dumps({"type": "subscribe", "symbols": ["BTC/USDT"] * 1_200_000}),
            "binary_frame": b"\x00" * 16,
            "deep_nesting": "[" * 30_000 + "]" * 30_000,
            "malformed_json": '{"type": "subscribe", "symbols": [',
            "wrong_shape": json.dumps({"type": "subscribe", "symbols": [None]}),
            "not_an_object": json.dumps([1, 2]),
            "outside_universe": json.dumps({"type": "subscribe", "symbols": ["DOGE/USDT"]}),
        }
        out["websocket"] = {}
        for name, payload in attacks.items():
            began = time.perf_counter()
            outcome = _ws_attack(ws_url, payload)
            out["websocket"][name] = {"answer": outcome, "ms": round(1000 * (time.perf_counter() - began), 1)}
        stream = client.get(f"{server.url}/api/stream", params={"symbols": "DOGEUSDT"})
        out["stream_outside_universe"] = {"status": stream.status_code, "error": stream.json().get("error")}
        # the idle-stream flood: raw connections that read nothing after the status line
        pid = server.process.pid
        out["rss_before_mib"] = _rss_mib(pid)
        statuses: Counter[str] = Counter()
        with ExitStack() as held:
            for _ in range(FLOOD):
                raw = held.enter_context(socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))))
                raw.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                statuses[raw.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")[9:12]] += 1
            out["flood"] = {"opened": FLOOD, "cap": SOCKET_CAP, "statuses": dict(statuses)}
            out["rss_flooded_mib"] = _rss_mib(pid)
            out["subscribers_flooded"] = _subscribers(client, server.url)
        out["subscribers_gone_after_s"] = _wait(lambda: _subscribers(client, server.url) == 0, 30)
        out["rss_after_mib"] = _rss_mib(pid)
        # a trickled body
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as slow:
            began = time.perf_counter()
            slow.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 200\r\n\r\n{"symbol": '
            )
            answer = slow.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
            out["trickled_body"] = {"answer": answer, "after_ms": round(1000 * (time.perf_counter() - began), 1)}
        log = server.log.read_text(errors="replace")
        out["tracebacks_in_log"] = log.count("Traceback (most recent call last)")
        out["bad_inputs_tried"] = len(attacks) + 1 + (FLOOD - SOCKET_CAP) + 1
    return out


PAIRS = [("BTC/USDT", "1h"), ("BTC/USDT", "15m"), ("ETH/USDT", "1h")]


def ledger_outage(world: Any, work: Path, *, database: str, down_s: float = 15.0) -> dict[str, Any]:
    """The ledger's database down for `down_s` under traffic, then back: no 500, 503 + Retry-After on what needs
    it, every record asked for during the outage in the ledger afterwards."""
    from tests.support.postgres import postgres_server
    from tests.support.servers import bentoml_server

    with ExitStack() as stack:
        env = {**world.env(), "SIGNALS_LEDGER_RETRY_S": "1"}
        if database == "postgresql":
            pg = stack.enter_context(postgres_server())
            env["SIGNALS_DATABASE_URL"] = pg.create_database("chaos")
        sqlite_path = Path(world.data_dir) / "signals.db"
        server = stack.enter_context(bentoml_server(env, work, name=f"ledger-{database}"))
        client = stack.enter_context(httpx.Client(timeout=60))
        url = server.url
        assert client.post(f"{url}/history", json={"symbol": "BTC/USDT"}).status_code == 200
        before = client.post(f"{url}/status", json={}).json()["ledger"]["records"]
        lock: sqlite3.Connection | None = None
        if database == "postgresql":
            pg.stop()
        else:
            lock = sqlite3.connect(sqlite_path, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
        routes = {
            "/history": {"symbol": "BTC/USDT"},
            "/scorecard": {},
            "/admin/refresh": {"timeframe": "1h"},
            "/replay": {"symbol": "BTC/USDT", "timeframe": "1h", "candle_time": "2026-11-19T10:00:00Z"},
        }
        answers: dict[str, Counter[str]] = {route: Counter() for route in [*routes, "/predict", "/action"]}
        without_retry_after = 0
        began = time.monotonic()
        while time.monotonic() - began < down_s:
            for route, body in routes.items():
                answer = client.post(f"{url}{route}", json=body)
                answers[route][str(answer.status_code)] += 1
                without_retry_after += answer.status_code == 503 and "retry-after" not in answer.headers
            for symbol, timeframe in PAIRS:  # new signals: recorded by the request (mode request)
                answer = client.post(f"{url}/predict", json={"symbol": symbol, "timeframe": timeframe})
                answers["/predict"][str(answer.status_code)] += 1
            answers["/action"][str(client.post(f"{url}/action", json={"symbol": "BTC/USDT"}).status_code)] += 1
        if lock is not None:
            lock.execute("ROLLBACK")
            lock.close()
        else:
            pg.start()
        restored = time.monotonic()

        def ok() -> bool:
            ledger = client.post(f"{url}/status", json={}).json()["ledger"]
            return bool(ledger["status"] == "ok")

        ok_after = _wait(ok, 60)
        ledger = client.post(f"{url}/status", json={}).json()["ledger"]
        writer = ledger["writer"]
        return {
            "database": database,
            "down_s": down_s,
            "answers": {route: dict(counts) for route, counts in answers.items()},
            "server_errors": sum(
                n for c in answers.values() for s, n in c.items() if s.startswith("50") and s != "503"
            ),
            "503_without_retry_after": without_retry_after,
            "status_ok_after_s": ok_after,
            "restored_at_s": round(restored - began, 1),
            "writer": {k: writer[k] for k in ("recorded", "failed", "retried", "dropped", "pending")},
            "records_before": before,
            "records_after": ledger["records"],
            # refused by the database and never written since, or never queued at all
            "records_lost": int(writer["failed"]) - int(writer["retried"]) + int(writer["dropped"]),
        }
