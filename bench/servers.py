"""Start a server on 127.0.0.1 in its own process group, wait until it is ready, measure its RSS, stop it by PID.

Every server the benchmark starts goes through `started(...)`, whose `finally` stops the whole process
group (BentoML forks a process per service; gunicorn and uvicorn fork workers), so nothing outlives a
failed run.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
QUIET_CPU_PCT = 10.0
SETTLE_MAX_S = 30.0
_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: a command with `{port}` in it, extra environment, and its readiness path."""

    name: str
    kind: str  # "ours", "floor", "per-request"
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    note: str = ""


def bentoml_serve(target: str) -> tuple[str, ...]:
    return (str(_BIN / "bentoml"), "serve", target, "--host", "127.0.0.1", "--port", "{port}")


def uvicorn_serve(app: str, workers: int) -> tuple[str, ...]:
    return (
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}",
        "--workers", str(workers), "--no-access-log", "--log-level", "warning",
    )  # fmt: skip


def gunicorn_serve(app: str, workers: int, threads: int) -> tuple[str, ...]:
    return (
        sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", str(workers),
        "--threads", str(threads), "--bind", "127.0.0.1:{port}", "--log-level", "warning", app,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_memory_mib(pid: int) -> dict[str, float]:
    """RSS and USS summed over a process and all its descendants, in MiB.

    RSS counts shared pages (torch's libraries, copy-on-write after fork) once per process, so a tree of
    processes looks bigger than it is; USS (pages no other process maps) is what stopping it would free.
    """
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {"rss": 0.0, "uss": 0.0, "processes": 0}
    rss = uss = 0
    for process in processes:
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss, uss = rss + info.rss, uss + info.uss
    return {"rss": round(rss / 2**20, 1), "uss": round(uss / 2**20, 1), "processes": len(processes)}


@dataclass
class RunningServer:
    spec: ServerSpec
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    start_s: float = 0.0
    settle_s: float = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory_mib(self) -> dict[str, float]:
        return tree_memory_mib(self.pid)


class ServerFailed(RuntimeError):
    """A server exited or never became ready; the message carries the tail of its log."""


def answers_ready(url: str) -> bool:
    """Whether `url` (a readiness route) answers 200 now; a refused or slow connection is "not yet"."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_ready(server: RunningServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"{server.spec.name} exited with {server.process.returncode}:\n{_tail(server.log)}")
        if answers_ready(server.url + server.spec.ready_path):
            return
        time.sleep(0.25)
    raise ServerFailed(f"{server.spec.name} not ready after {timeout_s:.0f} s:\n{_tail(server.log)}")


def _tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, wait for every process of its tree, then SIGKILL what lingers.

    Waiting for the whole tree (not only the leader) keeps a dying server from eating the next one's CPU.
    """
    members = _tree(process.pid)
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _, alive = psutil.wait_procs(members, timeout=STOP_TIMEOUT_S)
    if alive:
        logger.warning("%d processes of group %d ignored SIGTERM; killing them", len(alive), process.pid)
        for member in alive:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_system_idle(min_idle_pct: float, max_wait_s: float, sample_s: float = 0.5) -> float:
    """Wait until the whole machine is at least `min_idle_pct` idle (others' jobs share these cores).

    Returns the seconds waited; gives up after `max_wait_s` (the run is then flagged as contended).
    """
    started = time.perf_counter()
    while time.perf_counter() - started < max_wait_s:
        if psutil.cpu_times_percent(interval=sample_s).idle >= min_idle_pct:
            break
    return round(time.perf_counter() - started, 2)


def wait_quiet(pid: int, max_wait_s: float, busy_pct: float = QUIET_CPU_PCT, sample_s: float = 0.5) -> float:
    """Wait until the server's tree uses less than `busy_pct` of one core (late loading, leftover backlog).

    Returns the seconds waited; gives up after `max_wait_s` (the CPU idle column then shows it).
    """
    started = time.perf_counter()
    while time.perf_counter() - started < max_wait_s:
        members = _tree(pid)
        for member in members:
            try:
                member.cpu_percent(None)
            except psutil.NoSuchProcess:
                pass
        time.sleep(sample_s)
        busy = 0.0
        for member in members:
            try:
                busy += member.cpu_percent(None)
            except psutil.NoSuchProcess:
                pass
        if busy < busy_pct:
            break
    return round(time.perf_counter() - started, 2)


@contextmanager
def started(spec: ServerSpec, base_env: dict[str, str], log_dir: Path) -> Iterator[RunningServer]:
    """Run `spec` on a free port until the block ends; always stopped by its process group."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{spec.name}.log"
    command = [part.replace("{port}", str(port)) for part in spec.command]
    env = {**os.environ, **base_env, **spec.env, "BENTOML_DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1"}
    begun = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = RunningServer(spec, f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_ready(server, START_TIMEOUT_S)
        server.start_s = round(time.perf_counter() - begun, 2)
        server.settle_s = wait_quiet(process.pid, SETTLE_MAX_S)
        logger.info(
            "%s ready on %s in %.1f s, quiet %.1f s later (pid %d)",
            spec.name, server.url, server.start_s, server.settle_s, process.pid,
        )  # fmt: skip
        yield server
    finally:
        stop(process)
