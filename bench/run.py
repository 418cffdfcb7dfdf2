"""`make bench`: build the world, start every server in turn, load it from a separate process, write the results.

One run measures everything side by side (these machines are noisy, so only ratios measured in the same run
are claimed): our service warm (cache on), cold (cache off), unbatched (cache off, max batch 1), the
framework floors, the per-request FastAPI and Flask servers, and the raw model in-process.
Results: `bench/results/<date>.json` and the tables section of `BENCHMARKS.md` (`--out DIR` writes both
into DIR instead; `--smoke` always does, into a temp dir unless `--out` is given).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import (
    REPO_ROOT,
    RunningServer,
    ServerFailed,
    ServerSpec,
    bentoml_serve,
    gunicorn_serve,
    started,
    uvicorn_serve,
    wait_quiet,
    wait_system_idle,
)
from bench.setup_world import DEFAULT_WORK_DIR, World, WorldSpec

logger = logging.getLogger("bench.run")

RESULTS_DIR = REPO_ROOT / "bench" / "results"
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"
DEFAULT_CLIENTS = (1, 16, 64)
PER_REQUEST_WORKERS = 2
FLASK_THREADS = 4
LOAD_SLACK_S = 90.0
RUN_SETTLE_MAX_S = 10.0  # before each run: let the previous run's backlog drain


@dataclass(frozen=True)
class Scenario:
    """A request mix: method, rotating paths and bodies, and how many signals one 2xx answer carries."""

    name: str
    paths: tuple[str, ...]
    bodies: tuple[Any, ...] = ()
    method: str = "POST"
    count: str = "one"
    doc: str = ""


@dataclass(frozen=True)
class Plan:
    """One server and the scenarios it is loaded with."""

    server: ServerSpec
    scenarios: tuple[Scenario, ...]
    status_route: bool = False  # our service: read /status (runner batching counters) after the runs


@dataclass
class Options:
    duration_s: float
    warmup_s: float
    clients: tuple[int, ...]
    scenarios: set[str] | None
    out: Path | None
    smoke: bool
    work_dir: Path
    idle_s: float = 0.5
    servers: set[str] | None = None  # only these plans (by server name); None: every plan
    min_idle_pct: float = 80.0  # below this CPU idle before a run, the run is flagged as contended
    idle_wait_s: float = 5.0  # how long to wait for that idle before each run (0: do not wait)
    raw_seconds: float = 0.25
    extra: dict[str, Any] = field(default_factory=dict)


def scenarios_for(world: World) -> dict[str, Scenario]:
    """Every scenario, built from what the world holds (so the smoke world gets the same names)."""
    spec = world.spec
    few = spec.multi_tf_symbols
    every_model = tuple({"symbol": s, "timeframe": tf} for s, tf in spec.models())
    on_1h = tuple({"symbol": s, "timeframe": "1h"} for s in few)
    actions = tuple(
        {"symbol": s, "position": {"side": "long", "entry_price": 100.0}} if i % 2 else {"symbol": s}
        for i, s in enumerate(few * 2)
    )
    compat = tuple(f"/api/predictions/{s.replace('/', '')}?timeframe=1h" for s in few)
    n = len(spec.universe)
    return {
        s.name: s
        for s in (
            Scenario("predict_warm", ("/predict",), on_1h, doc=f"/predict, cache hit: {len(few)} pairs on 1h"),
            Scenario(
                "predict_cold",
                ("/predict",),
                every_model,
                doc=f"/predict rotating over all {len(every_model)} "
                "models, on a cache-off server (no signal cache): every request crosses the runner hop and runs the "
                "forward pass; features are computed once per candle (the candles do not change during a run), as "
                "in production between candle closes",
            ),  # fmt: skip
            Scenario("batch_warm", ("/batch",), ({"timeframe": "1h"},), count="signals", doc=f"/batch {n} pairs, 1h"),
            Scenario("batch_cold", ("/batch",), ({"timeframe": "1h"},), count="signals", doc=f"/batch {n} pairs, cold"),
            Scenario("summary_warm", ("/summary",), ({"symbol": few[0]},), count="signals", doc="/summary 4 tf"),
            Scenario("summary_cold", ("/summary",), ({"symbol": few[0]},), count="signals", doc="/summary 4 tf, cold"),
            Scenario("action", ("/action",), actions, doc="/action (PPO), flat and long, rotating symbols"),
            Scenario("compat_get", compat, method="GET", doc="GET /api/predictions/{symbol}?timeframe=1h (warm)"),
            Scenario("predict_floor", ("/predict",), on_1h, doc="floor: trivial echo of {symbol, timeframe}"),
            Scenario(
                "predict_floor_batchable",
                ("/predict",),
                tuple({"requests": [b]} for b in on_1h),
                doc="floor: batchable echo; the caller sends the batch dimension",
            ),
        )
    }


def plans_for(world: World, smoke: bool) -> list[Plan]:
    """Which servers run which scenarios. Ours first, then the comparisons."""
    s = scenarios_for(world)
    ours = bentoml_serve("service:SignalService")
    cold_env = {"SIGNALS_SIGNAL_CACHE_SIZE": "0"}
    per_request_note = (
        f"{PER_REQUEST_WORKERS} worker processes, each loads every model once; candles read from Parquet, "
        "features + forward inside each request; torch 1 thread"
    )
    if smoke:
        return [
            Plan(ServerSpec("ours_cold", "ours", ours, cold_env), (s["predict_cold"], s["batch_cold"]), True),
            Plan(
                ServerSpec("per_request_fastapi", "per-request", uvicorn_serve(
                    "bench.baselines.per_request_fastapi:app", 1)),
                (s["predict_cold"],),
            ),
        ]  # fmt: skip
    return [
        Plan(
            ServerSpec("ours", "ours", ours, note="default settings: signal cache on"),
            (s["predict_warm"], s["batch_warm"], s["summary_warm"], s["action"], s["compat_get"]),
            True,
        ),
        Plan(
            ServerSpec("ours_cold", "ours", ours, cold_env, note="SIGNALS_SIGNAL_CACHE_SIZE=0: every request is cold"),
            (s["predict_cold"], s["batch_cold"], s["summary_cold"]),
            True,
        ),
        Plan(
            ServerSpec(
                "ours_unbatched",
                "ours",
                ours,
                {**cold_env, "SIGNALS_MAX_BATCH_SIZE": "1"},
                note="cache off and SIGNALS_MAX_BATCH_SIZE=1: adaptive batching off",
            ),
            (s["predict_cold"],),
            True,
        ),
        Plan(
            ServerSpec(
                "floor_bentoml",
                "floor",
                bentoml_serve("bench.baselines.floor_bentoml:EchoFloor"),
                note="one service, batchable echo, traffic timeout 10 s",
            ),
            (s["predict_floor_batchable"],),
        ),
        Plan(
            ServerSpec(
                "floor_bentoml_hop",
                "floor",
                bentoml_serve("bench.baselines.floor_bentoml:HopFloor"),
                note="async API -> bentoml.depends -> batchable echo, runner_connection fix, traffic timeout 10 s",
            ),
            (s["predict_floor"],),
        ),
        Plan(
            ServerSpec(
                "floor_fastapi",
                "floor",
                uvicorn_serve("bench.baselines.floor_fastapi:app", 1),
                note="uvicorn, 1 worker, async echo",
            ),
            (s["predict_floor"],),
        ),
        Plan(
            ServerSpec(
                "per_request_fastapi",
                "per-request",
                uvicorn_serve("bench.baselines.per_request_fastapi:app", PER_REQUEST_WORKERS),
                note=f"uvicorn, sync def endpoint (thread pool); {per_request_note}",
            ),
            (s["predict_cold"],),
        ),
        Plan(
            ServerSpec(
                "per_request_flask",
                "per-request",
                gunicorn_serve("bench.baselines.per_request_flask:app", PER_REQUEST_WORKERS, FLASK_THREADS),
                note=f"gunicorn gthread, {FLASK_THREADS} threads per worker (keep-alive); {per_request_note}",
            ),
            (s["predict_cold"],),
        ),
    ]


def run_load(url: str, scenario: Scenario, clients: int, opts: Options, tmp: Path) -> dict[str, Any]:
    """One load run in a separate process (`python -m bench.load`): it shares the cores, not the interpreter."""
    spec = {
        "url": url,
        "method": scenario.method,
        "paths": list(scenario.paths),
        "bodies": list(scenario.bodies),
        "clients": clients,
        "duration_s": opts.duration_s,
        "warmup_s": opts.warmup_s,
        "count": scenario.count,
        "idle_s": opts.idle_s,
    }
    spec_file = tmp / f"load-{scenario.name}-{clients}.json"
    spec_file.write_text(json.dumps(spec))
    timeout = opts.duration_s + opts.warmup_s + opts.idle_s + LOAD_SLACK_S
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", "--spec", str(spec_file)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _status(server: RunningServer) -> Any:
    import httpx

    try:
        return httpx.post(server.url + "/status", json={}, timeout=30).json()
    except (httpx.HTTPError, ValueError) as error:
        return {"error": str(error)}


def run_plan(plan: Plan, world: World, opts: Options, tmp: Path) -> dict[str, Any]:
    """Start the server, measure RSS, run each scenario at each client count, measure RSS again, stop it."""
    spec = plan.server
    record: dict[str, Any] = {"kind": spec.kind, "note": spec.note, "env": spec.env, "runs": {}}
    record["command"] = " ".join(spec.command)
    try:
        with started(spec, world.env(), opts.work_dir / "logs") as server:
            record["start_s"], record["settle_s"] = server.start_s, server.settle_s
            record["memory_before_mib"] = server.memory_mib()
            # Load levels ascend across all scenarios (every 1-client run before any 16-client run): BentoML's
            # dispatcher learns its wait from past queueing, so a run right after an overload would measure the
            # previous run's hangover, not its own load (see BENCHMARKS.md, "Dispatcher hangover").
            for clients in opts.clients:
                for scenario in plan.scenarios:
                    runs = record["runs"].setdefault(scenario.name, [])
                    waited = wait_quiet(server.pid, RUN_SETTLE_MAX_S)
                    waited += wait_system_idle(opts.min_idle_pct, opts.idle_wait_s) if opts.idle_wait_s > 0 else 0.0
                    result = run_load(server.url, scenario, clients, opts, tmp)
                    result["waited_before_s"] = round(waited, 2)
                    result["contended"] = result["cpu_idle_before_pct"] < opts.min_idle_pct
                    runs.append(result)
                    logger.info(
                        "%-20s %-24s c=%-3d rps %8.1f  p50 %7.2f  p99 %8.2f ms  errors %d  idle %.0f%%",
                        spec.name, scenario.name, clients, result["rps"], result["p50_ms"] or -1,
                        result["p99_ms"] or -1, result["errors"], result["cpu_idle_before_pct"],
                    )  # fmt: skip
            record["memory_after_mib"] = server.memory_mib()
            if plan.status_route:
                record["status_after"] = _status(server)
    except (ServerFailed, RuntimeError, subprocess.TimeoutExpired) as error:
        logger.error("%s failed: %s", spec.name, error)
        record["failed"] = str(error)[-3000:]
    return record


def _run(servers: dict[str, Any], server: str, scenario: str, clients: int) -> dict[str, Any] | None:
    for run in servers.get(server, {}).get("runs", {}).get(scenario, []):
        if run["clients"] == clients:
            return dict(run)
    return None


def _rps(servers: dict[str, Any], server: str, scenario: str, clients: int) -> float | None:
    run = _run(servers, server, scenario, clients)
    return float(run["rps"]) if run is not None else None


def ratios(servers: dict[str, Any], raw: dict[str, Any], clients: tuple[int, ...]) -> dict[str, Any]:
    """Same-run ratios of requests/s, per client count (None where either side did not run)."""
    pairs = {
        "served_over_floor": (("ours", "predict_warm"), ("floor_bentoml", "predict_floor_batchable")),
        "served_over_fastapi_floor": (("ours", "predict_warm"), ("floor_fastapi", "predict_floor")),
        "cold_over_hop_floor": (("ours_cold", "predict_cold"), ("floor_bentoml_hop", "predict_floor")),
        "batched_over_unbatched": (("ours_cold", "predict_cold"), ("ours_unbatched", "predict_cold")),
        "ours_over_per_request_fastapi": (("ours_cold", "predict_cold"), ("per_request_fastapi", "predict_cold")),
        "ours_over_per_request_flask": (("ours_cold", "predict_cold"), ("per_request_flask", "predict_cold")),
    }
    out: dict[str, Any] = {}
    for name, (num, den) in pairs.items():
        row, contended = {}, []
        for c in clients:
            a, b = _run(servers, *num, c), _run(servers, *den, c)
            row[str(c)] = round(a["rps"] / b["rps"], 3) if a is not None and b is not None and b["rps"] else None
            if any(run is not None and run.get("contended") for run in (a, b)):
                contended.append(c)
        out[name] = {"numerator": "/".join(num), "denominator": "/".join(den), "by_clients": row}
        out[name]["contended_clients"] = contended
    batches = raw.get("cnn_lstm", {}).get("batches", [])
    if batches:
        best = max(b["samples_per_s"] for b in batches)
        row = {}
        for c in clients:
            cold = _rps(servers, "ours_cold", "predict_cold", c)
            row[str(c)] = round(cold / best, 4) if cold is not None else None
        out["cold_over_raw_model_ceiling"] = {
            "numerator": "ours_cold/predict_cold rps",
            "denominator": f"raw CNN-LSTM samples/s at its best batch ({best:.0f}/s)",
            "by_clients": row,
        }
    return out


def machine() -> dict[str, Any]:
    import platform

    import psutil

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "bentoml", "numpy", "fastapi", "uvicorn", "flask", "gunicorn", "aiohttp", "pydantic"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def settings_used(opts: Options) -> dict[str, Any]:
    from signals.core.settings import Settings

    defaults = Settings()
    return {
        "duration_s": opts.duration_s,
        "warmup_s": opts.warmup_s,
        "clients": list(opts.clients),
        "cpu_idle_sample_s": opts.idle_s,
        "signal_cache_size_default": defaults.signal_cache_size,
        "max_batch_size_default": defaults.max_batch_size,
        "max_latency_ms_default": defaults.max_latency_ms,
        "contended_below_idle_pct": opts.min_idle_pct,
        "idle_wait_max_s": opts.idle_wait_s,
        "per_request_workers": PER_REQUEST_WORKERS,
        "flask_threads": FLASK_THREADS,
        "load_generator": "bench.load: aiohttp keep-alive, one process, asyncio, shares the cores with the server",
        **opts.extra,
    }


def _raw_model(world: World, opts: Options) -> dict[str, Any]:
    from bench.load import cpu_idle_percent
    from bench.raw_model import run_raw_model
    from signals.models.cnn_lstm.artifact import model_name

    symbol = world.spec.multi_tf_symbols[0]
    waited = wait_system_idle(opts.min_idle_pct, opts.idle_wait_s * 2) if opts.idle_wait_s > 0 else 0.0
    idle = cpu_idle_percent(opts.idle_s)
    try:
        raw = run_raw_model(f"{model_name(symbol, '1h')}:latest", min_seconds=opts.raw_seconds)
        return {**raw, "cpu_idle_before_pct": round(idle, 1), "waited_before_s": waited}
    except Exception as error:  # the ceiling is one line of the report; the servers must still run
        logger.exception("raw model benchmark failed")
        return {"error": str(error)}


def run(opts: Options) -> dict[str, Any]:
    """The whole benchmark; returns the results object (also written to disk)."""
    from bench.setup_world import build_world

    begun = time.perf_counter()
    world = build_world(opts.work_dir, WorldSpec.smoke() if opts.smoke else WorldSpec.full())
    logger.info("world: %.1f s (reused: %s)", world.seconds, world.reused)
    raw = _raw_model(world, opts)
    wanted = opts.scenarios
    servers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        for plan in plans_for(world, opts.smoke):
            if opts.servers is not None and plan.server.name not in opts.servers:
                continue
            chosen = tuple(s for s in plan.scenarios if wanted is None or s.name in wanted)
            if chosen:
                servers[plan.server.name] = run_plan(
                    Plan(plan.server, chosen, plan.status_route), world, opts, Path(tmp)
                )
    scenarios = {name: s.doc for name, s in scenarios_for(world).items()}
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "smoke": opts.smoke,
        "machine": machine(),
        "versions": versions(),
        "settings": settings_used(opts),
        "world": {
            "work_dir": str(world.work_dir),
            "models": len(world.spec.models()),
            "universe": len(world.spec.universe),
            "setup_s": round(world.seconds, 1),
            "reused": world.reused,
            **world.timings,
        },
        "scenarios": scenarios,
        "raw_model": raw,
        "servers": servers,
        "ratios": ratios(servers, raw, opts.clients),
    }
    results["total_s"] = round(time.perf_counter() - begun, 1)
    return results


def write_outputs(results: dict[str, Any], out: Path | None) -> tuple[Path, Path]:
    """JSON under bench/results (or `out`), and the Markdown tables into BENCHMARKS.md (or `out`)."""
    from bench.report import update_benchmarks_md

    day = results["date"][:10]
    if out is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        json_path, md_path = RESULTS_DIR / f"{day}.json", BENCHMARKS_MD
    else:
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / f"{day}.json", out / "BENCHMARKS.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    update_benchmarks_md(md_path, results, json_path)
    return json_path, md_path


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=None, help="seconds measured per run (default 10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per run (default 0.5)")
    parser.add_argument("--clients", default=None, help="comma-separated client counts (default 1,16,64)")
    parser.add_argument("--scenarios", default=None, help="comma-separated scenario names (default: all)")
    parser.add_argument("--servers", default=None, help="comma-separated server names (default: all), e.g. the "
                        "batching comparison: ours_cold,ours_unbatched,floor_bentoml_hop")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="write JSON + Markdown here, not the repo")
    parser.add_argument("--work-dir", type=Path, default=None, help=f"world + logs (default {DEFAULT_WORK_DIR})")
    parser.add_argument(
        "--idle-wait", type=float, default=None, help="max seconds to wait for >= 80%% CPU idle before each run (5)"
    )
    parser.add_argument("--smoke", action="store_true", help="seconds: tiny world, 1 s runs at 1 and 4 clients")
    args = parser.parse_args(argv)
    smoke = bool(args.smoke)
    out = args.out
    if smoke and out is None:
        out = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
    work_dir = args.work_dir or ((out / "work") if smoke and out is not None else DEFAULT_WORK_DIR)
    clients = args.clients or ("1,4" if smoke else ",".join(map(str, DEFAULT_CLIENTS)))
    return Options(
        duration_s=args.duration if args.duration is not None else (1.0 if smoke else 10.0),
        warmup_s=args.warmup if args.warmup is not None else 0.5,  # servers are warm already: this primes connections
        clients=tuple(int(c) for c in clients.split(",") if c.strip()),
        scenarios=set(args.scenarios.split(",")) if args.scenarios else None,
        servers=set(args.servers.split(",")) if args.servers else None,
        out=out,
        smoke=smoke,
        work_dir=work_dir.resolve(),
        idle_s=0.2 if smoke else 0.5,
        raw_seconds=0.02 if smoke else 0.25,
        idle_wait_s=args.idle_wait if args.idle_wait is not None else (0.0 if smoke else 5.0),
    )


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `started(...)` block stops its server group on the way out."""

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    opts = parse_args(argv)
    _stop_on_sigterm()
    from bench.setup_world import use_work_dir

    use_work_dir(opts.work_dir, WorldSpec.smoke() if opts.smoke else WorldSpec.full())  # before bentoml loads
    results = run(opts)
    json_path, md_path = write_outputs(results, opts.out)
    failed = [name for name, record in results["servers"].items() if "failed" in record]
    logger.info(
        "done in %.1f s: %s and %s%s", results["total_s"], json_path, md_path, f"; FAILED: {failed}" * bool(failed)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
