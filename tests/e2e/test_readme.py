"""The README's shell blocks, as pasted, against a served world (issue 21): every block marked `<!-- runnable -->`
runs in bash with `-e -o pipefail` and must exit 0 (its curls use `-f`, so any answer outside 2xx/3xx fails it);
a block marked `<!-- runnable: stream -->` is an endless stream, run until curl's time limit and read.

The server is the session's shared one (`e2e_server`, tests/e2e/conftest.py): the test world (its models: BTC/USDT
15m and 1h, ETH/USDT 1h, a 1h PPO, which the README's examples stay within) with a short backfill, as the demo
has; `http://127.0.0.1:3000` in the blocks is rewritten to its URL, and the CLI reads the same data directory and
model store. Blocks that need what a test cannot have (podman, kubectl, Telegram, an exchange, a
receiver of yours) stay unmarked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from signals.cli import app
from tests.support.paths import REPO_ROOT
from tests.support.servers import Server
from tests.support.world import END, World, environment

pytestmark = pytest.mark.slow
README_URL = "http://127.0.0.1:3000"
MARKER = re.compile(r"^<!-- runnable(?::\s*(?P<kind>\w+))? -->$")
FENCE = "```"
BLOCK_TIMEOUT_S = 120
STREAM_SECONDS = 2


@dataclass(frozen=True)
class Block:
    line: int  # where its fence opens in the README (1-based), for the failure message
    kind: str  # "run" or "stream"
    text: str


def runnable_blocks(readme: str) -> list[Block]:
    """The fenced bash blocks right after a `<!-- runnable -->` (or `<!-- runnable: stream -->`) line."""
    lines = readme.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        marked = MARKER.match(line.strip())
        if not marked:
            continue
        fence = index + 1
        assert lines[fence].strip() == f"{FENCE}bash", f"README line {fence + 1}: a runnable marker not before ```bash"
        end = lines.index(FENCE, fence + 1)
        blocks.append(Block(fence + 1, marked["kind"] or "run", "\n".join(lines[fence + 1 : end]) + "\n"))
    return blocks


BLOCKS = runnable_blocks((REPO_ROOT / "README.md").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def world(e2e_world: World) -> World:
    """The shared server's world with three days of 1h backfill: the demo's track record, in small."""
    since = (END - pd.Timedelta(days=3)).strftime("%Y-%m-%d")
    with environment(e2e_world.env()):
        result = CliRunner().invoke(app, ["backfill", "--since", since, "--timeframes", "1h"])
    assert result.exit_code == 0, result.output
    return e2e_world


@pytest.fixture(scope="module")
def server(e2e_server: Server, world: World) -> Server:
    return e2e_server


@pytest.fixture(scope="module")
def shell_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the blocks run: `.venv` is this interpreter's environment (the README writes `.venv/bin/...`), and no
    developer's `.env` is read."""
    here = tmp_path_factory.mktemp("readme-shell")
    (here / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return here


def shell_env(world: World) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALS_")}
    return {**keep, **world.env(), "COLUMNS": "100"}


def test_the_readme_keeps_its_runnable_blocks() -> None:
    """A renamed marker or a lost fence must not silently turn this test into nothing."""
    kinds = [block.kind for block in BLOCKS]
    assert kinds.count("run") >= 2 and kinds.count("stream") == 1, kinds
    curls = sum(block.text.count("curl ") for block in BLOCKS)
    assert curls >= 25, f"only {curls} curl commands in the runnable blocks"
    assert all("curl -s " not in block.text for block in BLOCKS), "a runnable curl without -f hides a 4xx/5xx"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "run"], ids=lambda b: f"line{b.line}")
def test_a_runnable_block_exits_0(block: Block, server: Server, world: World, shell_dir: Path) -> None:
    script = block.text.replace(README_URL, server.url)
    assert README_URL not in script
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=shell_dir,
        env=shell_env(world),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    assert done.returncode == 0, (
        f"README block at line {block.line} exited {done.returncode}\nstderr:\n{done.stderr[-3000:]}\n"
        f"stdout:\n{done.stdout[-2000:]}\nserver log:\n{server.log_tail(2000)}"
    )
    assert done.stdout.strip()
    if "/replay" in script:  # the pasted replay rebuilds the recorded signal bit for bit
        assert '"match":true' in done.stdout.replace(" ", ""), done.stdout[-3000:]


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "stream"], ids=lambda b: f"line{b.line}")
def test_a_stream_block_streams_until_stopped(block: Block, server: Server, world: World, shell_dir: Path) -> None:
    """curl ends only at its time limit (exit 28), having read the stream's events or heartbeats; an HTTP error
    would end it at once with 22."""
    script = block.text.replace(README_URL, server.url).replace("curl ", f"curl --max-time {STREAM_SECONDS} ")
    done = subprocess.run(
        ["bash", "-c", script], cwd=shell_dir, env=shell_env(world), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 28, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.startswith((":", "event:", "id:", "data:", "retry:")), done.stdout[:500]
