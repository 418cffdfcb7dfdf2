"""`python -m bench.image` (after `make image`): the built image's size and its time from `podman run` to `/readyz`
200, written to `bench/results/image-ready-<day>.json` for `bench.summary`'s headline.

The image runs as `make run-image` runs it (read-only root, a tmpfs /tmp, a named data volume, the simulated
market). The first run on a new volume seeds the demo market, which is a one-off cost; it is timed and reported
apart. The figure the target reads (ready within 6 s on an idle box) is the median of the runs on the seeded
volume: a restarted container, as an orchestrator restarts one. The box's load average before each run is kept
beside it: on these shared cores a start moves with the load, so read a time together with its load.
By hand (it needs the image, which takes minutes to build), not part of `make bench`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.servers import answers_ready, free_port

REPO = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = REPO / "deploy" / "image" / "containers.conf"
READY_TIMEOUT_S = 600.0
POLL_S = 0.05


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}  # as `make image` / `make run-image`
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=check)


def ready(port: int) -> bool:
    return answers_ready(f"http://127.0.0.1:{port}/readyz")


def one_start(tag: str, volume: str) -> dict[str, Any]:
    """Seconds from `podman run` to the first `/readyz` 200, with the load average just before."""
    port = free_port()
    name = f"bench-image-{uuid.uuid4().hex[:8]}"
    load = os.getloadavg()[0]
    started = time.perf_counter()
    podman(
        "run", "-d", "--rm", "--name", name, "--network=host", "--read-only", "--tmpfs", "/tmp",
        "-v", f"{volume}:/var/lib/signals", "-e", "SIGNALS_SOURCE=simulated", "-e", "SIGNALS_EXCHANGE=synthetic",
        "-e", 'SIGNALS_UNIVERSE=["BTC/USDT","ETH/USDT","SOL/USDT"]', tag, "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    try:
        while time.perf_counter() - started < READY_TIMEOUT_S:
            if ready(port):
                return {"s": round(time.perf_counter() - started, 2), "load_before": round(load, 2)}
            time.sleep(POLL_S)
        raise TimeoutError(f"{tag} not ready in {READY_TIMEOUT_S:.0f} s: {podman('logs', name, check=False).stdout}")
    finally:
        podman("stop", "-t", "30", name, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="trading-signals:latest")
    parser.add_argument("--runs", type=int, default=3, help="starts on the seeded volume")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", args.tag).stdout.strip())
    volume = f"bench-image-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", volume)
    try:
        seeding = one_start(args.tag, volume)
        restarts = [one_start(args.tag, volume) for _ in range(args.runs)]
    finally:
        podman("volume", "rm", "-f", volume, check=False)
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tag": args.tag,
        "size_mb": round(size / 1e6, 1),
        "ready_first_start_s": seeding,
        "ready_restarts": restarts,
        "ready_median_s": statistics.median(r["s"] for r in restarts),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"image-ready-{dt.date.today().isoformat()}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))  # noqa: T201  (a command's report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
