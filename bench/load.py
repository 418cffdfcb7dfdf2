"""Keep-alive HTTP load generator: N asyncio clients, each looping request -> response, for a fixed time.

Run as its own process (`python -m bench.load --spec spec.json`), never inside a server. aiohttp rather than
httpx: on this 2-core box the generator competes with the server for CPU, and aiohttp costs several times
less client CPU per request than httpx.AsyncClient (its parser is C), so more of the box is left to the
server under test. One `ClientSession` with a connector limited to `clients` connections keeps every client
on its own keep-alive connection.

Bounded twice: by `duration_s` and by `max_requests`. Latency is perf_counter_ns around one request
(send to fully read body). Errors are non-2xx answers and exceptions (timeouts, resets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import psutil

logger = logging.getLogger(__name__)

IDLE_SAMPLE_S = 1.0
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LoadSpec:
    """One run: where, what (method, path, rotating bodies or paths), how many clients, how long."""

    url: str
    method: str = "POST"
    paths: tuple[str, ...] = ("/predict",)
    bodies: tuple[Any, ...] = ()
    clients: int = 1
    duration_s: float = 10.0
    warmup_s: float = 2.0
    idle_s: float = IDLE_SAMPLE_S
    max_requests: int = 200_000
    count: str = "one"  # signals per 2xx answer: "one", "signals" (len of the list or dict under "signals")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadSpec:
        data = dict(data)
        data["paths"] = tuple(data.get("paths", ("/predict",)))
        data["bodies"] = tuple(data.get("bodies", ()))
        return cls(**data)


@dataclass
class _Tally:
    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    signals: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


def cpu_idle_percent(seconds: float = IDLE_SAMPLE_S) -> float:
    """Idle share of all cores over `seconds`, from /proc/stat via psutil (what is free before a run)."""
    return float(psutil.cpu_times_percent(interval=seconds).idle)


def _count_signals(body: bytes, how: str) -> int:
    if how == "one":
        return 1
    signals = orjson.loads(body).get("signals", ())
    return len(signals)


async def _client(
    session: aiohttp.ClientSession, spec: LoadSpec, index: int, stop_at: float, budget: list[int], tally: _Tally | None
) -> None:
    """One client: request -> full response -> next, rotating paths/bodies from its own offset."""
    i = index
    while time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        path = spec.paths[i % len(spec.paths)]
        body = spec.bodies[i % len(spec.bodies)] if spec.bodies else None
        i += 1
        started = time.perf_counter_ns()
        try:
            async with session.request(spec.method, spec.url + path, data=body) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            if tally is not None:
                tally.errors += 1
                tally.statuses[type(error).__name__] += 1
                if len(tally.error_samples) < 5:
                    tally.error_samples.append(f"{type(error).__name__}: {error}")
            continue
        elapsed = time.perf_counter_ns() - started
        if tally is None:
            continue
        tally.latencies_ns.append(elapsed)
        tally.statuses[str(status)] += 1
        if 200 <= status < 300:
            tally.signals += _count_signals(payload, spec.count)
        else:
            tally.errors += 1
            if len(tally.error_samples) < 5:
                tally.error_samples.append(f"{status}: {payload[:300].decode(errors='replace')}")


async def _phase(session: aiohttp.ClientSession, spec: LoadSpec, seconds: float, tally: _Tally | None) -> float:
    budget = [spec.max_requests]
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_client(session, spec, c, stop_at, budget, tally) for c in range(spec.clients)))
    return time.perf_counter() - started


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Warm up, then measure; returns the summary (latency percentiles, rps, signals/s, errors, CPU)."""
    encoded = LoadSpec(**{**spec.__dict__, "bodies": tuple(orjson.dumps(b) for b in spec.bodies)})
    idle = cpu_idle_percent(spec.idle_s)
    connector = aiohttp.TCPConnector(limit=spec.clients, force_close=False, ttl_dns_cache=None)
    headers = {"content-type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        if spec.warmup_s > 0:
            await _phase(session, encoded, spec.warmup_s, None)
        tally = _Tally()
        me = psutil.Process()
        cpu_before, own_before = psutil.cpu_times(), me.cpu_times()
        elapsed = await _phase(session, encoded, spec.duration_s, tally)
        cpu_after, own_after = psutil.cpu_times(), me.cpu_times()
    return _summary(spec, tally, elapsed, idle, (cpu_before, cpu_after), (own_before, own_after))


def _busy_percent(before: Any, after: Any) -> float:
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return round(100.0 * (1 - idle / total), 1) if total > 0 else 0.0


def _summary(
    spec: LoadSpec, tally: _Tally, elapsed: float, idle: float, cpu: tuple[Any, Any], own: tuple[Any, Any]
) -> dict[str, Any]:
    latencies = np.asarray(tally.latencies_ns, dtype=np.float64) / 1e6
    requests = len(latencies) + sum(n for k, n in tally.statuses.items() if not k.isdigit())
    ok = requests - tally.errors
    own_cpu_s = (own[1].user + own[1].system) - (own[0].user + own[0].system)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(latencies, q)), 3) if len(latencies) else None

    return {
        "clients": spec.clients,
        "duration_s": round(elapsed, 3),
        "requests": requests,
        "ok": ok,
        "errors": tally.errors,
        "statuses": dict(tally.statuses),
        "error_samples": tally.error_samples,
        "rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "signals_per_s": round(tally.signals / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(float(latencies.max()), 3) if len(latencies) else None,
        "mean_ms": round(float(latencies.mean()), 3) if len(latencies) else None,
        "cpu_idle_before_pct": round(idle, 1),
        "cpu_busy_during_pct": _busy_percent(*cpu),
        "loadgen_cpu_pct": round(100.0 * own_cpu_s / elapsed, 1) if elapsed > 0 else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    """CLI: `--spec file.json` (a LoadSpec as JSON); writes the summary as one JSON object on stdout."""
    parser = argparse.ArgumentParser(description="keep-alive HTTP load generator (one JSON summary on stdout)")
    parser.add_argument("--spec", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    spec = LoadSpec.from_json(json.loads(args.spec.read_text()))
    summary = asyncio.run(run_load(spec))
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
