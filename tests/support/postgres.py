"""A real PostgreSQL server for tests: initdb in a temporary directory, listening on 127.0.0.1 and a Unix socket
there, stopped (pg_ctl stop, then the process group) when the test session ends.

The binaries are Debian's `postgresql` package (`make test` installs it on a fresh machine). PostgreSQL refuses
to run as root, so as root the server runs as the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    socket_dir: Path
    pg_ctl: tuple[str, ...] = ()  # how to run pg_ctl on this server's data directory (as its user)
    options: str = ""
    log: Path | None = None

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut, as when a database host goes away)."""
        subprocess.run([*self.pg_ctl, "-m", "fast", "-w", "stop"], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """Start it again on the same port and data (after `stop`)."""
        subprocess.run(
            [*self.pg_ctl, "-l", str(self.log), "-o", self.options, "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S + 10,
        )
        _wait_ready(self)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        with psycopg.connect(
            f"host={self.host} port={self.port} user={self.user} dbname=postgres", autocommit=True
        ) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: Debian's versioned one, else whatever PATH has."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    bindir = binaries()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: run `make test` (it installs Debian's postgresql package)")
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    root = Path(tempfile.mkdtemp(prefix="signals-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if as_root:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off -c max_connections=200"
    log = root / "server.log"
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_S + 10,
    )
    pg_ctl = (*prefix, str(bindir / "pg_ctl"), "-D", str(data))
    server = Postgres("127.0.0.1", port, user, sockets, pg_ctl, options, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: Postgres) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((server.host, server.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not accept connections on {server.host}:{server.port}")
