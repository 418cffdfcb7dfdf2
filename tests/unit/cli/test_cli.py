"""The `signals` command: every subcommand documents itself, and the entry point is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from signals.cli import app

runner = CliRunner()


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path; groups are recognised by their `commands` (typer vendors its own click)."""
    paths = [prefix]
    if isinstance(getattr(command, "commands", None), dict):
        for name, sub in command.commands.items():
            paths += _command_paths(sub, (*prefix, name))
    return paths


COMMAND_PATHS = _command_paths(typer.main.get_command(app))


def test_the_foundation_commands_exist() -> None:
    names = {" ".join(path) for path in COMMAND_PATHS}
    assert {"candles", "import-candles", "sync", "exchange-server", "demo-data", "bootstrap"} <= names
    assert {"train cnn-lstm", "train ppo", "models", "evaluate"} <= names
    assert {"backfill", "scorecard", "history", "ledger migrate"} <= names
    assert {"models promote", "models rollback", "models pin", "models reload"} <= names


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "signals")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help, f"{' '.join(path)} has no help text"


@pytest.mark.parametrize(
    "path",
    [
        ("candles",),
        ("import-candles",),
        ("sync",),
        ("exchange-server",),
        ("demo-data",),
        ("bootstrap",),
        ("train", "cnn-lstm"),
        ("train", "ppo"),
        ("evaluate",),
        ("backfill",),
        ("scorecard",),
        ("history",),
        ("ledger", "migrate"),
    ],
    ids=" ".join,
)
def test_commands_that_read_or_write_candles_take_data_dir(path: tuple[str, ...]) -> None:
    assert "--data-dir" in runner.invoke(app, [*path, "--help"]).output


def test_console_script_is_installed() -> None:
    executable = Path(sys.executable).parent / "signals"
    assert executable.is_file(), f"no console script at {executable}: is the project installed (make install)?"
    completed = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0
    assert "candles" in completed.stdout


def test_a_full_disk_is_one_line_and_exit_code_2_not_a_traceback(tmp_path: Path) -> None:
    """A real write failure: the process may write at most 2 kB per file (RLIMIT_FSIZE), so the Parquet write
    fails with EFBIG as it would with ENOSPC on a full disk."""
    import resource
    import signal
    import subprocess
    import sys

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with an error instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    command = [str(Path(sys.executable).parent / "signals"), "demo-data", "--symbols", "BTC/USDT"]
    done = subprocess.run(
        [*command, "--timeframes", "1h", "--days", "30", "--data-dir", str(tmp_path / "data")],
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "cannot write synthetic/BTC_USDT-1h.parquet in the candle store: File too large" in errors[0]
    assert not list((tmp_path / "data").rglob("*.tmp"))  # nothing half-written left behind


def test_the_bot_without_a_network_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    """A token and nothing listening where the Bot API should be: the library's error in one line, not its trace."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {
        **os.environ,
        "SIGNALS_TELEGRAM_TOKEN": "123:abc",
        "SIGNALS_TELEGRAM_API_URL": f"http://127.0.0.1:{port}",
        "SIGNALS_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "signals"), "bot"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("error: the bot cannot reach Telegram at http://127.0.0.1:")
