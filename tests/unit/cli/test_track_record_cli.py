"""The track record from the command line: backfill a fresh install, read its scorecard and history, manage
versions; against the ledger database directly, no server running."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from signals.cli import app
from signals.core.settings import get_settings
from tests.support.world import World, copy_world

WIDE = {"COLUMNS": "250", "TERM": "dumb"}


@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import os

    built = copy_world(trained_world, tmp_path_factory.mktemp("cli-world")).narrowed(
        symbols=("BTC/USDT",), timeframes=("1h",), models=(("BTC/USDT", "1h"),)
    )
    saved = {key: os.environ.get(key) for key in built.env()}
    os.environ.update(built.env())
    get_settings.cache_clear()
    yield built
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


def test_backfill_then_scorecard_and_history(world: World) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["backfill", "--since", "2026-11-12", "--timeframes", "1h", "--json"], env=WIDE)
    assert done.exit_code == 0, done.output
    (row,) = json.loads(done.stdout)
    assert row["timeframe"] == "1h" and row["pairs"] == 1 and row["recorded"] == row["computed"] > 150
    assert row["verdict"] in {"insufficient_data", "no_evidence", "positive", "negative"}
    again = json.loads(runner.invoke(app, ["backfill", "--since", "2026-11-12", "--json"], env=WIDE).stdout)
    assert again[0]["recorded"] == 0  # recorded once

    live = json.loads(runner.invoke(app, ["scorecard", "--timeframe", "1h", "--json"], env=WIDE).stdout)[0]
    assert live["n"] == 0  # the default is mode live, and nothing was served live: backfill is not counted
    scorecard = ["scorecard", "--timeframe", "1h", "--mode", "backfill", "--json"]
    card = json.loads(runner.invoke(app, scorecard, env=WIDE).stdout)[0]
    assert card["n"] > 100 and card["modes"] == ["backfill"] and "accuracy_wilson" in card
    table = runner.invoke(app, ["scorecard", "--mode", "backfill"], env=WIDE)
    assert table.exit_code == 0 and "backfill" in table.stdout
    bad = runner.invoke(app, ["scorecard", "--mode", "sometimes"], env=WIDE)
    assert bad.exit_code == 2 and "unknown mode 'sometimes'" in bad.output

    history = json.loads(runner.invoke(app, ["history", "BTCUSDT", "--limit", "5", "--json"], env=WIDE).stdout)
    assert len(history) == 5 and all(item["mode"] == "backfill" for item in history)
    assert runner.invoke(app, ["history", "BTCUSDT"], env=WIDE).exit_code == 0

    migrated = runner.invoke(app, ["ledger", "migrate"], env=WIDE)
    assert migrated.exit_code == 0 and "at revision" in migrated.output


def test_promote_refuses_without_evidence_and_reload_needs_a_server(world: World) -> None:
    runner = CliRunner()
    refused = runner.invoke(
        app, ["models", "promote", "cnn-lstm-btc-usdt-1h", "--json", "--server", "http://127.0.0.1:1"], env=WIDE
    )
    assert refused.exit_code == 1, refused.output
    assert json.loads(refused.stdout)[0]["reason"] == "already served"
    missing = runner.invoke(app, ["models", "promote", "cnn-lstm-nope-usdt-1h"], env=WIDE)
    assert missing.exit_code == 2 and "no model 'cnn-lstm-nope-usdt-1h'" in missing.output
    reload = runner.invoke(app, ["models", "reload", "--server", "http://127.0.0.1:1"], env=WIDE)
    assert reload.exit_code == 2 and "no server answered" in reload.output
