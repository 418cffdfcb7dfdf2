"""Time from `bentoml serve service:SignalService` to `/readyz` 200, with the CPU seconds of each process of the
service graph (arbiter, API, runners) and whether it loaded torch: where the start's time goes, measured the same
way for each source tree given, interleaved run by run (the box is shared: compare within one run only).

The server serves what the environment says (SIGNALS_*, BENTOML_HOME): the demo after `signals bootstrap`, e.g.
`SIGNALS_SOURCE=simulated SIGNALS_EXCHANGE=synthetic python -m bench.startup --runs 3 --tree before=/tmp/main-src`
(a tree is a checkout or `git archive` of one; the current one is `now`). By hand, not part of `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.servers import answers_ready, free_port, stop

READY_TIMEOUT_S = 300.0
POLL_S = 0.05
REPO = Path(__file__).resolve().parents[1]


def ready(port: int) -> bool:
    return answers_ready(f"http://127.0.0.1:{port}/readyz")


def role(process: psutil.Process) -> str:
    """`arbiter`, or the service a worker serves (`--service-name`), or the command's start."""
    command = process.cmdline()
    if "--service-name" in command:
        return command[command.index("--service-name") + 1]
    return "arbiter" if "serve" in command else " ".join(command)[:40]


def processes(root: int) -> dict[str, dict[str, Any]]:
    """CPU seconds (user + system) and torch loaded, per process of the server's tree."""
    found: dict[str, dict[str, Any]] = {}
    try:
        tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for process in tree:
        try:
            cpu = process.cpu_times()
            maps = Path(f"/proc/{process.pid}/maps").read_text()
            found[role(process)] = {"cpu_s": round(cpu.user + cpu.system, 2), "torch": "libtorch_cpu" in maps}
        except (psutil.Error, OSError):
            continue
    return found


def one_start(label: str, tree: Path, log_dir: Path) -> dict[str, Any]:
    port = free_port()
    bentoml = Path(sys.executable).parent / "bentoml"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    log = log_dir / f"startup-{label}-{port}.log"
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(bentoml), "serve", "service:SignalService", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            ready_s = None
            while time.monotonic() - started < READY_TIMEOUT_S and server.poll() is None:
                if ready(port):
                    ready_s = round(time.monotonic() - started, 2)
                    break
                time.sleep(POLL_S)
            found = processes(server.pid)
        finally:
            stop(server)
    return {
        "tree": label,
        "ready_s": ready_s,
        "cpu_s": round(sum(p["cpu_s"] for p in found.values()), 2),
        "processes": found,
        "load_before": round(load_before, 1),
        "load_after": round(os.getloadavg()[0], 1),
        "log": str(log),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="starts per tree, interleaved")
    parser.add_argument("--tree", action="append", default=[], help="LABEL=PATH of another source tree")
    parser.add_argument("--out", type=Path, help="write every run as JSON here too")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args(argv)
    trees = [("now", REPO)] + [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree]
    runs = []
    for _ in range(args.runs):
        for label, tree in trees:
            run = one_start(label, tree, args.log_dir)
            sys.stdout.write(json.dumps(run) + "\n")
            sys.stdout.flush()
            runs.append(run)
    if args.out:
        args.out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    return 0 if all(run["ready_s"] is not None for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
