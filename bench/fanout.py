"""`python -m bench.fanout` (part of `make bench`): one universe refresh pushed to N concurrent SSE subscribers.

A real `bentoml serve` (one API worker, SQLite ledger) over a world of 34 pairs with one pooled 1h network. For
each N (10, 100, 1,000): N subscribers open `GET /api/stream?timeframes=1h` (raw asyncio sockets, so the client's
own cost stays small on a 2-core box shared with the server), a new 1h candle is written for every pair, and the
clock starts as `POST /admin/refresh` is sent. Each subscriber's delivery time is when it holds all 34 new
signal events; lost = events expected - events received (distinct ids); duplicates are counted apart.
Target (issue 11): at 1,000 subscribers every one has the refresh within 1 s, 0 lost.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.fanout")
REPO_ROOT = Path(__file__).resolve().parents[1]
EXCHANGE = "synthetic"
END = "2026-11-20"
TIMEFRAME = "1h"


def build_world(work: Path, symbols: tuple[str, ...]) -> None:
    import pandas as pd

    from signals.data.store import CandleStore
    from signals.models.cnn_lstm.training import TrainConfig
    from signals.pipelines import train_cnn_lstm_models, write_synthetic_market

    store = CandleStore(work / "data")
    write_synthetic_market(store, symbols, (TIMEFRAME,), 60, seed=11, end=pd.Timestamp(END, tz="UTC"))
    train_cnn_lstm_models(store, EXCHANGE, symbols, TIMEFRAME, TrainConfig(epochs=1, folds=0, max_bars=600, seed=1))


def new_candles(work: Path, symbols: tuple[str, ...]) -> str:
    """The next 1h candle of every pair, stored; its open time as the API writes it."""
    import pandas as pd

    from signals.core.timeframes import iso_z
    from signals.data.store import CandleStore

    store = CandleStore(work / "data")
    stamp = None
    for symbol in symbols:
        last = store.read(EXCHANGE, symbol, TIMEFRAME).iloc[-1]
        stamp = last["timestamp"] + pd.Timedelta(TIMEFRAME)
        close = float(last["close"]) * 1.001
        bar = pd.DataFrame(
            {"timestamp": [stamp], "open": [float(last["close"])], "high": [close * 1.001],
             "low": [float(last["close"]) * 0.999], "close": [close], "volume": [float(last["volume"])]}
        )  # fmt: skip
        store.write(EXCHANGE, symbol, TIMEFRAME, bar)
    assert stamp is not None
    return iso_z(stamp)


class Subscriber:
    """One SSE connection on a raw socket: counts the distinct ids of the events of one candle."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.ids: set[str] = set()
        self.duplicates = 0
        self.done_at: float | None = None
        self.expected = 0
        self.candle = ""
        self.connected = asyncio.Event()
        self.complete = asyncio.Event()
        self._buffer = ""

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        request = f"GET /api/stream?timeframes={TIMEFRAME}&kinds=signal HTTP/1.1\r\nHost: {self.host}\r\n"
        writer.write((request + "Accept: text/event-stream\r\n\r\n").encode())
        await writer.drain()
        try:
            while True:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    return
                self._buffer += chunk.decode(errors="replace")
                if not self.connected.is_set() and ": connected" in self._buffer:
                    self.connected.set()
                self._consume()
        finally:
            writer.close()

    def expect(self, candle: str, count: int) -> None:
        self.ids.clear()
        self.duplicates, self.done_at, self.candle, self.expected = 0, None, candle, count
        self.complete.clear()

    def _consume(self) -> None:
        while "id: " in self._buffer:
            start = self._buffer.index("id: ")
            end = self._buffer.find("\n", start)
            if end < 0:
                return
            event_id = self._buffer[start + 4 : end]
            self._buffer = self._buffer[end + 1 :]
            if not event_id.endswith(self.candle):
                continue
            if event_id in self.ids:
                self.duplicates += 1
            self.ids.add(event_id)
            if len(self.ids) >= self.expected and self.done_at is None:
                self.done_at = time.perf_counter()
                self.complete.set()
        if len(self._buffer) > 1 << 16 and "id: " not in self._buffer[-(1 << 12) :]:
            self._buffer = self._buffer[-(1 << 12) :]


async def fan_out(url: str, work: Path, symbols: tuple[str, ...], n: int, timeout: float) -> dict[str, Any]:
    import httpx

    host, port = url.removeprefix("http://").split(":")
    subscribers = [Subscriber(host, int(port)) for _ in range(n)]
    tasks = [asyncio.create_task(s.run()) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in subscribers)), 60)
    async with httpx.AsyncClient(timeout=60) as client:
        status = (await client.post(f"{url}/status", json={})).json()
        assert status["push"]["subscribers"] >= n, status["push"]
        candle = await asyncio.to_thread(new_candles, work, symbols)
        for s in subscribers:
            s.expect(candle, len(symbols))
        started = time.perf_counter()
        response = await client.post(f"{url}/admin/refresh", json={"timeframe": TIMEFRAME})
        refreshed = time.perf_counter() - started
        report = response.json()
    try:
        await asyncio.wait_for(asyncio.gather(*(s.complete.wait() for s in subscribers)), timeout)
    except TimeoutError:
        pass
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    delays = sorted(1000 * (s.done_at - started) for s in subscribers if s.done_at is not None)
    received = sum(len(s.ids) for s in subscribers)
    return {
        "subscribers": n,
        "signals_per_refresh": len(symbols),
        "refresh_request_ms": round(1000 * refreshed, 1),
        "refresh_compute_ms": round(1000 * report["seconds"], 1),
        "all_received": len(delays) == n,
        "delivered_ms": {
            "p50": round(statistics.median(delays), 1) if delays else None,
            "p99": round(delays[min(len(delays) - 1, int(0.99 * len(delays)))], 1) if delays else None,
            "max": round(delays[-1], 1) if delays else None,
        },
        "lost": n * len(symbols) - received,
        "duplicates": sum(s.duplicates for s in subscribers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", default="10,100,1000")
    parser.add_argument("--pairs", type=int, default=34)
    parser.add_argument("--rounds", type=int, default=3, help="refreshes per subscriber count (the best is kept too)")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    from signals.core.settings import DEFAULT_UNIVERSE

    sys.path.insert(0, str(REPO_ROOT))
    from tests.support.servers import bentoml_server

    symbols = tuple(DEFAULT_UNIVERSE[: args.pairs])
    build_world(work, symbols)
    env = {
        "SIGNALS_DATA_DIR": str(work / "data"),
        "SIGNALS_EXCHANGE": EXCHANGE,
        "SIGNALS_UNIVERSE": json.dumps(list(symbols)),
        "SIGNALS_TIMEFRAMES": json.dumps([TIMEFRAME]),
        "SIGNALS_DEVICE": "cpu",
        "SIGNALS_SCHEDULER": "false",
        "BENTOML_HOME": str(work / "bentoml"),
    }
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "runs": []}
    with bentoml_server(env, work, name="fanout") as server:
        for n in (int(x) for x in args.subscribers.split(",")):
            for round_ in range(args.rounds):
                run = asyncio.run(fan_out(server.url, work, symbols, n, args.timeout))
                run["round"] = round_
                logger.info("fan-out %s", run)
                results["runs"].append(run)
    results["cpu"] = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"fanout-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))  # noqa: T201  (a command's report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
