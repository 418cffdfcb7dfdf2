"""Real servers for end-to-end tests: `bentoml serve` on a free 127.0.0.1 port in its own process group, ready
when `/readyz` answers 200, stopped (SIGTERM, then SIGKILL) by the test that started it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.support.paths import REPO_ROOT

START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextmanager
def bentoml_server(
    env: Mapping[str, str], log_dir: Path, *, name: str = "serve", target: str = "service:SignalService"
) -> Iterator[Server]:
    """`bentoml serve <target>` (default: the whole service) with `env` on top of this process's environment."""
    port = free_port()
    log = log_dir / f"{name}.log"
    command = [str(Path(sys.executable).parent / "bentoml"), "serve", target]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the stop below reaches every worker
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(server)
        yield server
    finally:
        stop(process)


def wait_ready(server: Server, timeout: float = START_TIMEOUT_S) -> None:
    def exited() -> str | None:
        code = server.process.poll()
        return None if code is None else f"bentoml serve exited with {code}"

    wait_for_readyz(server.url, timeout=timeout, gone=exited, logs=server.log_tail)


def wait_for_readyz(
    url: str,
    *,
    timeout: float = START_TIMEOUT_S,
    gone: Callable[[], str | None] = lambda: None,
    logs: Callable[[], str] = lambda: "",
) -> None:
    """Until `url`/readyz answers 200; fail with `logs()` after `timeout`, or at once when `gone()` says why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reason = gone()
        if reason is not None:
            pytest.fail(f"{reason}:\n{logs()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"server not ready after {timeout} s:\n{logs()}")


def child_pids(pid: int, pattern: str | None = None) -> list[int]:
    """The direct children of `pid` (a server's workers), those whose command line matches `pattern` if given."""
    command = ["pgrep", "-P", str(pid)] + (["-f", pattern] if pattern else [])
    return [int(p) for p in subprocess.run(command, capture_output=True, text=True).stdout.split()]


def worker_pid(server_pid: int, service: str) -> int:
    """The worker of one BentoML service (e.g. `cnn_lstm_runner`) under a `bentoml serve` process."""
    found = child_pids(server_pid, f"service-name {service}")
    assert found, f"no {service} worker under the server"
    return found[0]


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


LOCAL_BASE_URL = "http://127.0.0.1:3000"
LOCAL_CLIENT = ("127.0.0.1", 50000)


def local_client(app: Any, **options: Any) -> TestClient:
    """An in-process client that calls as a program on the server's machine does (Host 127.0.0.1:3000, from
    127.0.0.1): what the edge lets through without API keys, admin routes included."""
    return TestClient(app, base_url=LOCAL_BASE_URL, client=LOCAL_CLIENT, **options)
