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
