"""`python -m bench.scale` (part of `make bench`): one API process vs two vs two servers, behind the same load.

A world of 34 pairs with one pooled 1h network; each setup serves it from the same store and model store:
- `1 server, 1 API worker` (the default);
- `1 server, 2 API workers` (`SIGNALS_API_WORKERS=2`, one set of runners);
- `2 servers` (each with its own API worker and runners, on one SQLite ledger), the load split evenly between them.
The load (`bench/load.py`, aiohttp, in its own processes) asks `/predict` over the 34 pairs (cache hits after the
first round: the serving path a desk's dashboards exercise) and, separately, `/batch` of the 34 pairs. 2 cores
run the servers and the load generator together: the ceiling is the box, not the server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.scale")
REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEFRAME = "1h"


def load(urls: list[str], route: str, bodies: list[Any], clients: int, seconds: float, work: Path) -> dict[str, Any]:
    """Run the load generator against each URL with `clients / len(urls)` clients, at once; the summed figures."""
    procs = []
    for i, url in enumerate(urls):
        spec = {
            "url": url,
            "paths": [route],
            "bodies": bodies,
            "clients": max(1, clients // len(urls)),
            "duration_s": seconds,
            "warmup_s": 2.0,
            "count": "signals" if route == "/batch" else "one",
        }
        path = work / f"spec-{i}.json"
        path.write_text(json.dumps(spec))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.load", "--spec", str(path)],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    summaries = [json.loads(p.communicate(timeout=seconds + 120)[0]) for p in procs]
    return {
        "rps": round(sum(s["rps"] for s in summaries), 1),
        "signals_per_s": round(sum(s["signals_per_s"] for s in summaries), 1),
        "p50_ms": max(s["p50_ms"] or 0 for s in summaries),
        "p99_ms": max(s["p99_ms"] or 0 for s in summaries),
        "errors": sum(s["errors"] for s in summaries),
        "cpu_busy_pct": max(s["cpu_busy_during_pct"] for s in summaries),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="16,64")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    sys.path.insert(0, str(REPO_ROOT))
    from bench.fanout import build_world
    from signals.core.settings import DEFAULT_UNIVERSE
    from tests.support.servers import bentoml_server

    symbols = tuple(DEFAULT_UNIVERSE)
    build_world(work, symbols)
    env = {
        "SIGNALS_DATA_DIR": str(work / "data"),
        "SIGNALS_EXCHANGE": "synthetic",
        "SIGNALS_UNIVERSE": json.dumps(list(symbols)),
        "SIGNALS_TIMEFRAMES": json.dumps([TIMEFRAME]),
        "SIGNALS_DEVICE": "cpu",
        "SIGNALS_SCHEDULER": "false",
        "SIGNALS_ALERTS": "false",
        "BENTOML_HOME": str(work / "bentoml"),
    }
    predict_bodies = [{"symbol": s, "timeframe": TIMEFRAME} for s in symbols]
    batch_bodies = [{"timeframe": TIMEFRAME}]
    setups = {
        "1 server, 1 API worker": [dict(env)],
        "1 server, 2 API workers": [{**env, "SIGNALS_API_WORKERS": "2"}],
        "2 servers": [dict(env), dict(env)],
    }
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "runs": []}
    for number, (name, server_envs) in enumerate(setups.items()):
        with ExitStack() as stack:
            servers = [  # one log per server of each setup
                stack.enter_context(bentoml_server(e, work, name=f"setup{number}-{i}"))
                for i, e in enumerate(server_envs)
            ]
            urls = [s.url for s in servers]
            for clients in (int(c) for c in args.clients.split(",")):
                for route, bodies in (("/predict", predict_bodies), ("/batch", batch_bodies)):
                    figures = load(urls, route, bodies, clients, args.seconds, work)
                    run = {"setup": name, "route": route, "clients": clients, **figures}
                    logger.info("%s", run)
                    results["runs"].append(run)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scale-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))  # noqa: T201  (a command's report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
