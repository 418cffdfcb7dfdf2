"""Training a model family the way a user does (`signals train <family> ... --json`), for the family tests."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from signals.cli import app
from tests.support.world import World

PAIRS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


def cli(*args: str) -> Any:
    """`signals <args>` in process: the result's exit code, stdout and output."""
    return CliRunner().invoke(app, list(args))


def train_family(family: str, world: World) -> list[dict[str, Any]]:
    """`signals train <family>` on the world's 1h candles of BTC, ETH and SOL; its JSON report rows."""
    result = cli(
        "train", family, "--symbols", ",".join(PAIRS), "--timeframes", "1h", "--max-bars", "900",
        "--data-dir", str(world.data_dir), "--exchange", "synthetic", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows
