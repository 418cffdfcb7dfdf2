"""`make chaos`: the reliability battery against real servers, its figures into bench/results/ and RELIABILITY.md.

Scenarios (each on a fresh `bentoml serve` over a small world; 2-core box, load generator on the same cores):
- limits: an 8.5 MB `/batch` body and a 1.2 MB one while a client measures `/predict`;
- fuzz: schemathesis with every check against the served OpenAPI document;
- exchange outage (live mode, the local Binance-compatible exchange failing every request): how fast a cold pair
  answers, what `/batch` says, when the circuit opens, how fast it answers then, and the recovery;
- slow exchange: every answer 8 s late, the request budget 2 s;
- runner kill: SIGKILL of both runner workers under load, status counts for 20 s;
- soak: N clients for T seconds on cached and uncached routes: errors, latency, memory of every process;
- disk: a CLI write on a full disk (RLIMIT_FSIZE), and a server whose store cannot be written;
- sockets, ledger outages (issue 20): `bench/chaos_edges.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.chaos_edges import ledger_outage, sockets

logger = logging.getLogger("bench.chaos")
REPO_ROOT = Path(__file__).resolve().parents[1]
BTC = {"symbol": "BTC/USDT", "timeframe": "1h"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else float("nan")


def limits(url: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for symbols in (770_000, 100_000):
        body = json.dumps({"timeframe": "1h", "symbols": ["BTCUSDT"] * symbols}).encode()
        latencies: list[float] = []
        stop = threading.Event()

        def measure(stop: threading.Event = stop, latencies: list[float] = latencies) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                while not stop.is_set():
                    started = time.perf_counter()
                    client.post("/predict", json=BTC)
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.01)

        watcher = threading.Thread(target=measure)
        watcher.start()
        time.sleep(0.5)
        started = time.perf_counter()
        status = httpx.post(f"{url}/batch", content=body, headers={"content-type": "application/json"}, timeout=60)
        answered = time.perf_counter() - started
        time.sleep(0.5)
        stop.set()
        watcher.join()
        results[f"{len(body) / 1e6:.1f}MB"] = {
            "status": status.status_code,
            "answered_ms": round(1000 * answered, 1),
            "concurrent_predict_p50_ms": percentile(latencies, 0.5),
            "concurrent_predict_max_ms": percentile(latencies, 1.0),
            "concurrent_predicts": len(latencies),
        }
    return results


def fuzz(url: str, examples: int) -> dict[str, Any]:
    st = Path(sys.executable).parent / "st"
    command = [str(st), "run", f"{url}/docs.json", "--checks", "all", "--max-examples", str(examples), "--seed", "3"]
    started = time.perf_counter()
    done = subprocess.run([*command, "--exclude-path", "/api/stream", "--no-color"], capture_output=True, text=True)
    tail = done.stdout.strip().splitlines()[-12:]
    generated = next((line for line in tail if "generated" in line), "")
    return {
        "exit_code": done.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": generated.strip(),
    }


def outage(world: Any, work: Path, *, delay_s: float = 0.0) -> dict[str, Any]:
    """Live mode against the local exchange; the exchange fails (or is late) once the server has started."""
    import pandas as pd

    from signals.data.store import CandleStore
    from signals.testing.local_exchange import LocalExchange
    from tests.support.servers import bentoml_server

    now = pd.Timestamp.now(tz="UTC")
    frames = {}
    for symbol in world.symbols:
        for timeframe in ("15m", "1h"):
            candles = CandleStore(world.data_dir).read("synthetic", symbol, timeframe)
            candles["timestamp"] += now.floor(timeframe.replace("m", "min")) - candles["timestamp"].iloc[-1]
            frames[(symbol, timeframe)] = candles
    out: dict[str, Any] = {}
    with LocalExchange(frames=frames) as exchange:
        env = {
            **world.env(),
            "SIGNALS_SOURCE": "live",
            "SIGNALS_EXCHANGE": "binance",
            "SIGNALS_EXCHANGE_URL": exchange.url,
            "SIGNALS_DATA_DIR": str(work / f"live-{delay_s}"),
            "SIGNALS_TIMEFRAMES": '["15m", "1h"]',
        }
        with bentoml_server(env, work, name=f"outage-{delay_s}") as server, httpx.Client(timeout=60) as client:
            started = time.perf_counter()
            assert client.post(f"{server.url}/predict", json=BTC).status_code == 200
            out["healthy_cold_ms"] = round(1000 * (time.perf_counter() - started), 1)
            if delay_s:
                exchange.delay_s = delay_s
            else:
                exchange.fail_next(10**6, 503)
            answers = []
            began = time.monotonic()
            pairs = [{"symbol": "ETH/USDT", "timeframe": "1h"}, {"symbol": "BTC/USDT", "timeframe": "15m"}]
            while time.monotonic() - began < (45 if not delay_s else 10):
                for pair in pairs:  # two pairs that are not cached: each needs the exchange
                    started = time.perf_counter()
                    response = client.post(f"{server.url}/predict", json=pair)
                    answers.append(
                        {
                            "at_s": round(time.monotonic() - began, 1),
                            "pair": f"{pair['symbol']} {pair['timeframe']}",
                            "status": response.status_code,
                            "ms": round(1000 * (time.perf_counter() - started), 1),
                            "retry_after": response.headers.get("Retry-After"),
                            "says": response.json().get("error", "")[:90],
                        }
                    )
                time.sleep(0.5)
            fast = [a for a in answers if " is failing (" in a["says"]]
            out["during"] = {
                "requests": len(answers),
                "statuses": dict(Counter(a["status"] for a in answers)),
                "all_with_retry_after": all(a["retry_after"] for a in answers if a["status"] == 503),
                "first_answer_ms": answers[0]["ms"],
                "slowest_ms": max(a["ms"] for a in answers),
                "circuit_open_after_s": fast[0]["at_s"] if fast else None,
                "answer_ms_once_open_median": statistics.median(a["ms"] for a in fast) if fast else None,
                "messages": sorted({a["says"] for a in answers}),
            }
            batch = client.post(f"{server.url}/batch", json={"timeframe": "1h", "symbols": ["ETHUSDT"]})
            out["batch_all_failed"] = {"status": batch.status_code, "retry_after": batch.headers.get("Retry-After")}
            out["cached_pair_during"] = client.post(f"{server.url}/predict", json=BTC).status_code
            out["market_status"] = client.post(f"{server.url}/status", json={}).json()["market"]
            exchange.fail_next(0)
            exchange.delay_s = 0.0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                response = client.post(f"{server.url}/predict", json={**BTC, "symbol": "ETH/USDT"})
                if response.status_code == 200:
                    break
                time.sleep(1)
            out["recovered_after_s"] = round(60 - (deadline - time.monotonic()), 1)
    return out


def runner_kill(url: str, server_pid: int, seconds: float) -> dict[str, Any]:
    from tests.support.servers import worker_pid

    async def run() -> dict[str, Any]:
        statuses: Counter[str] = Counter()
        latencies: list[float] = []
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await client.post("/predict", json=BTC)

            async def ask(route: str, body: dict[str, Any]) -> None:
                started = time.perf_counter()
                response = await client.post(route, json=body)
                latencies.append(time.perf_counter() - started)
                statuses[f"{route} {response.status_code}"] += 1

            os.kill(worker_pid(server_pid, "cnn_lstm_runner"), signal.SIGKILL)
            os.kill(worker_pid(server_pid, "ppo_runner"), signal.SIGKILL)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await asyncio.gather(
                    *(ask("/predict", BTC) for _ in range(4)),
                    ask("/action", {"symbol": "BTC/USDT"}),
                    ask("/predict", {**BTC, "timeframe": "15m"}),
                )
        return {"statuses": dict(statuses), "p50_ms": percentile(latencies, 0.5), "max_ms": percentile(latencies, 1.0)}

    return asyncio.run(run())


def soak(url: str, pids: list[int], clients: int, seconds: float) -> dict[str, Any]:
    import psutil

    def rss() -> float:
        return round(sum(psutil.Process(p).memory_info().rss for p in pids if psutil.pid_exists(p)) / 2**20, 1)

    before = rss()

    async def run() -> tuple[Counter[int], list[float]]:
        statuses: Counter[int] = Counter()
        latencies: list[float] = []
        routes = [("/predict", BTC), ("/batch", {"timeframe": "1h"}), ("/summary", {"symbol": "BTC/USDT"})]
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + seconds

            async def worker(i: int) -> None:
                n = i
                while time.monotonic() < deadline:
                    route, body = routes[n % len(routes)]
                    n += 1
                    started = time.perf_counter()
                    response = await client.post(route, json=body)
                    latencies.append(time.perf_counter() - started)
                    statuses[response.status_code] += 1

            await asyncio.gather(*(worker(i) for i in range(clients)))
        return statuses, latencies

    statuses, latencies = asyncio.run(run())
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": sum(statuses.values()),
        "statuses": dict(statuses),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "rss_mib_before": before,
        "rss_mib_after": rss(),
    }


def disk(work: Path) -> dict[str, Any]:
    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    command = [str(Path(sys.executable).parent / "signals"), "demo-data", "--symbols", "BTC/USDT", "--timeframes", "1h"]
    done = subprocess.run(
        [*command, "--days", "30", "--data-dir", str(work / "full")],
        preexec_fn=small_files,
        capture_output=True,
        text=True,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return {"exit_code": done.returncode, "error_lines": len(errors), "message": errors[0] if errors else None}


RERUNNABLE = (  # the scenarios `--only` runs on their own
    "exchange_outage",
    "slow_exchange",
    "sockets",
    "ledger_outage_postgresql",
    "ledger_outage_sqlite",
)


EDGES: dict[str, Any] = {
    "sockets": sockets,
    "ledger_outage_postgresql": lambda world, work: ledger_outage(world, work, database="postgresql"),
    "ledger_outage_sqlite": lambda world, work: ledger_outage(world, work, database="sqlite"),
}


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The battery's figures in four lines (RELIABILITY.md): load held, faults survived, bad inputs, records lost."""
    soak = results.get("soak") or {}
    faults: list[str] = [
        k for k in ("runner_kill", "exchange_outage", "slow_exchange", "disk_full_cli") if k in results
    ]
    ledgers = [v for k, v in results.items() if k.startswith("ledger_outage_")]
    faults += [f"ledger_outage_{v['database']}" for v in ledgers if v["server_errors"] == 0]
    sockets_run = results.get("sockets") or {}
    fuzz_run = results.get("fuzz") or {}
    return {
        "load_held": {k: soak.get(k) for k in ("requests", "statuses", "p99_ms") if k in soak} or None,
        "faults_survived": faults,
        "server_errors_in_ledger_outages": sum(v["server_errors"] for v in ledgers),
        "bad_inputs_tried": int(sockets_run.get("bad_inputs_tried", 0)) + int(fuzz_run.get("requests", 0) or 0),
        "records_lost": sum(v["records_lost"] for v in ledgers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--soak-s", type=float, default=60)
    parser.add_argument("--fuzz-examples", type=int, default=50)
    parser.add_argument(
        "--only",
        default="",
        help=f"Scenarios to run again, comma-separated, of {', '.join(RERUNNABLE)} (merged into the file).",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    only = set(filter(None, args.only.split(",")))
    if only - set(RERUNNABLE):
        parser.error(f"--only takes {', '.join(RERUNNABLE)}; not {', '.join(sorted(only - set(RERUNNABLE)))}")
    work = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    sys.path.insert(0, str(REPO_ROOT))
    from tests.support.servers import bentoml_server, child_pids
    from tests.support.world import build_world

    world = build_world(work / "world")
    path = args.out / f"chaos-{dt.date.today().isoformat()}.json"
    results: dict[str, Any] = json.loads(path.read_text()) if only and path.exists() else {}
    results["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if only:
        if "exchange_outage" in only:
            results["exchange_outage"] = outage(world, work)
        if "slow_exchange" in only:
            results["slow_exchange"] = outage(world, work, delay_s=8.0)
        for name in sorted(only & set(EDGES)):
            results[name] = EDGES[name](world, work)
        results["summary"] = summary(results)
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
        print(json.dumps({k: results[k] for k in [*sorted(only), "summary"]}, indent=2))  # noqa: T201
        return 0
    with bentoml_server(world.env(), work, name="chaos") as server:
        logger.info("limits")
        results["limits"] = limits(server.url)
        logger.info("fuzz")
        results["fuzz"] = fuzz(server.url, args.fuzz_examples)
        pids = [server.process.pid, *child_pids(server.process.pid)]
        logger.info("soak")
        results["soak"] = soak(server.url, pids, args.clients, args.soak_s)
        logger.info("runner kill")
        results["runner_kill"] = runner_kill(server.url, server.process.pid, 20)
    logger.info("exchange outage")
    results["exchange_outage"] = outage(world, work)
    logger.info("slow exchange")
    results["slow_exchange"] = outage(world, work, delay_s=8.0)
    results["disk_full_cli"] = disk(work)
    for name, scenario in EDGES.items():
        logger.info(name.replace("_", " "))
        results[name] = scenario(world, work)
    results["summary"] = summary(results)
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))  # noqa: T201  (a command's report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
