"""The newcomer's path (issue 21): `signals serve` owns the serving defaults, tables fit the terminal, machine
output on request, progress lines off a TTY. Everything here runs on a tmp data dir; nothing is served."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from signals.cli import app
from signals.cli.app import LineProgress, emit_table
from signals.core.settings import SERVE_DEFAULTS, get_settings

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SIGNALS_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no developer's .env
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_a_busy_port_is_one_line_before_any_setup(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.output and "PORT=" in result.output
    assert len(result.output.strip().splitlines()) == 1 or "Traceback" not in result.output
    assert not list(data_dir.iterdir())  # no bootstrap, no ledger: nothing was set up


def test_serve_defaults_to_the_demo_and_live_never_touches_the_synthetic_exchange(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = json.loads(runner.invoke(app, ["serve", "--port", "0", "--dry-run"]).stdout)
    assert demo["SIGNALS_SOURCE"] == "simulated" and demo["SIGNALS_EXCHANGE"] == "synthetic"
    assert json.loads(demo["SIGNALS_UNIVERSE"]) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]  # no invented pairs
    monkeypatch.setenv("SIGNALS_SOURCE", "live")
    live = json.loads(runner.invoke(app, ["serve", "--port", "0", "--dry-run"]).stdout)
    assert live == {"host": "127.0.0.1", "port": live["port"], "SIGNALS_SOURCE": "live", "SIGNALS_EXCHANGE": "binance"}
    monkeypatch.setenv("SIGNALS_EXCHANGE", "synthetic")
    mixed = runner.invoke(app, ["serve", "--port", "0", "--dry-run"])
    assert mixed.exit_code == 2 and "would serve the synthetic demo as real data" in mixed.output


def test_the_cli_reads_what_serve_served_with(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from signals.cli.serve import serving_env, write_defaults
    from signals.core.settings import Settings

    assert get_settings().exchange == "binance"
    write_defaults(data_dir, serving_env(Settings()))
    get_settings.cache_clear()
    assert (data_dir / SERVE_DEFAULTS).is_file()
    assert (get_settings().exchange, get_settings().source) == ("synthetic", "simulated")
    monkeypatch.setenv("SIGNALS_EXCHANGE", "kraken")  # the environment still wins
    get_settings.cache_clear()
    assert get_settings().exchange == "kraken"


def test_a_backfill_that_computes_nothing_says_why_and_exits_2(data_dir: Path) -> None:
    result = runner.invoke(app, ["backfill", "--since", "2026-01-01", "--timeframes", "1h"])
    assert result.exit_code == 2, result.output
    assert "nothing computed" in result.output


ROWS = [
    {"model": f"cnn-lstm-pair{n}-usdt-1h", "version": "abcdefghijklmnop", "edge": "negative", "reason": "x" * 70}
    | {"n": n, "nested": {"a": n}}
    for n in range(3)
]


def test_a_table_fits_100_columns_and_names_the_columns_it_leaves_out(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    emit_table(ROWS, as_json=False, title="Models")
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert out.count("cnn-lstm-pair") == 3  # one line a row, not one card a row
    words = " ".join(out.split())  # the footnote may wrap (the console's width is read once per process)
    assert "more column: reason" in words and "--output csv or json" in words


def test_output_csv_and_json_carry_every_column(data_dir: Path) -> None:
    (data_dir / "synthetic").mkdir()
    as_csv = runner.invoke(app, ["candles", "--output", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    as_json = runner.invoke(app, ["candles", "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == json.loads(
        runner.invoke(app, ["candles", "-o", "json"]).stdout
    )
    assert as_csv.stdout.strip() == ""  # an empty store: no rows (and never the table's "(nothing)")


def test_completion_is_offered() -> None:
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output


def test_progress_off_a_tty_is_a_line_per_step() -> None:
    from rich.console import Console

    sink = io.StringIO()
    with LineProgress(Console(file=sink, force_terminal=False, width=100)) as progress:
        task = progress.add_task("bootstrap", total=3)
        for step in ("candles BTC/USDT", "cnn-lstm 1h", "ppo 1h"):
            progress.update(task, advance=1, description=step)
    lines = sink.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["candles BTC/USDT", "cnn-lstm 1h", "ppo 1h"]
    assert lines[-1].startswith("ppo 1h: 3/3")
