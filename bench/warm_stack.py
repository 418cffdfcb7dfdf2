"""What BentoML's stack around the edge costs a warm /predict: variants of one server, interleaved in one run.

Every variant is started once and kept up; then rounds of load go to each in turn (A, B, C, A, B, C...), so a
change of the shared box's load falls on every variant alike. Per run: requests per second at `--clients`, and
server CPU per request (user + system seconds of the server's whole process tree over the run, divided by the
requests answered), which is steadier than throughput on a loaded box. The raw FastAPI floor runs in the same
rounds, so the ratio to it is taken within a round.

`python -m bench.warm_stack --work-dir bench/.work --rounds 3 --duration 8` (the world of `bench.run`).
A variant's environment is its whole difference: `SIGNALS_ACCESS_LOG`, `SIGNALS_EDGE_OUTERMOST=false` (the edge
inside BentoML's middleware, as before), or a PYTHONPATH that hides httptools (uvicorn picks httptools over h11
whenever it imports). `--variants ours_edge_inside,ours,floor_fastapi` runs only those.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil

from bench.servers import ServerSpec, bentoml_serve, started, uvicorn_serve
from bench.setup_world import DEFAULT_WORK_DIR, WorldSpec, use_work_dir

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent
BODIES = [{"symbol": s, "timeframe": "1h"} for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")]


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (those alive now)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def load(url: str, clients: int, duration_s: float, tmp: Path) -> dict[str, Any]:
    spec = {"url": url, "paths": ["/predict"], "bodies": BODIES, "clients": clients, "duration_s": duration_s,
            "warmup_s": 0.0, "idle_s": 0.05}  # fmt: skip
    spec_file = tmp / "spec.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", "--spec", str(spec_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=duration_s + 60, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def variants(work: Path) -> list[ServerSpec]:
    """Before and after each change: the access log (SIGNALS_ACCESS_LOG), then HTTP parsing by httptools or h11 (a
    stand-in `httptools` that fails to import makes uvicorn fall back to h11, as where it is not installed)."""
    stub = work / "no-httptools" / "httptools"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text('raise ImportError("hidden by bench.warm_stack: uvicorn uses h11")\n')
    h11 = {"PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{stub.parent}"}
    ours = bentoml_serve("service:SignalService")
    floor = uvicorn_serve("bench.baselines.floor_fastapi:app", 1)
    return [
        ServerSpec("ours_h11_access_log_on", "ours", ours, {**h11, "SIGNALS_ACCESS_LOG": "true"}),
        ServerSpec("ours_h11", "ours", ours, h11),
        ServerSpec("ours_edge_inside", "ours", ours, {"SIGNALS_EDGE_OUTERMOST": "false"}),
        ServerSpec("ours", "ours", ours),
        ServerSpec("floor_fastapi_h11", "floor", floor, h11),
        ServerSpec("floor_fastapi", "floor", floor),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--variants", default="", help="comma-separated names (default: every variant)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    world = use_work_dir(args.work_dir.resolve(), WorldSpec.full())
    specs = variants(args.work_dir.resolve())
    if args.variants:
        wanted = args.variants.split(",")
        unknown = sorted(set(wanted) - {s.name for s in specs})
        if unknown:
            parser.error(f"unknown variants {unknown}; known: {[s.name for s in specs]}")
        specs = [s for s in specs if s.name in wanted]
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in specs}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        servers = [stack.enter_context(started(s, world.env(), args.work_dir / "logs")) for s in specs]
        for server in servers:  # prime: connections, caches
            load(server.url, args.clients, 1.0, Path(tmp))
        for round_no in range(args.rounds):
            for server in servers:
                before = tree_cpu_s(server.pid)
                result = load(server.url, args.clients, args.duration, Path(tmp))
                cpu = tree_cpu_s(server.pid) - before
                result["cpu_ms_per_request"] = round(1000 * cpu / max(result["requests"], 1), 3)
                result["round"] = round_no
                runs[server.spec.name].append(result)
                logger.info("%-26s r%d rps %7.1f cpu/req %.3f ms p99 %6.1f ms errors %d load %s",
                            server.spec.name, round_no, result["rps"], result["cpu_ms_per_request"],
                            result["p99_ms"] or -1, result["errors"], os.getloadavg()[0])  # fmt: skip
    summary = {}
    for name, rs in runs.items():
        summary[name] = {
            "rps_median": statistics.median(r["rps"] for r in rs),
            "cpu_ms_per_request_median": statistics.median(r["cpu_ms_per_request"] for r in rs),
            "p99_ms_median": statistics.median(r["p99_ms"] or 0 for r in rs),
        }
    floors = [r for name, rs in runs.items() if name == "floor_fastapi" for r in rs]
    for name, rs in runs.items():  # the ratio to the FastAPI floor within each round, then the median
        by_round = {r["round"]: r["rps"] for r in floors}
        ratios = [r["rps"] / by_round[r["round"]] for r in rs if by_round.get(r["round"])]
        if ratios:
            summary[name]["over_fastapi_floor_median"] = round(statistics.median(ratios), 3)
    sys.stdout.write(json.dumps({"runs": runs, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
