"""`signals serve` in live or store mode never shows the demo's synthetic track record (issue 21): a ledger that
holds records of the synthetic market is refused in one line before anything starts; the demo may keep using it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from signals.cli import app
from signals.core.settings import get_settings
from signals.ledger.store import Ledger
from tests.support.factories import action_record, signal_record
from tests.support.servers import free_port

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SIGNALS_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no developer's .env
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def ledger_with(data_dir: Path, *, signals: list[str], actions: list[str]) -> None:
    """The default ledger of `data_dir` with one signal record per data source in `signals` (and actions)."""
    ledger = Ledger(f"sqlite:///{data_dir / 'signals.db'}")
    ledger.migrate()
    start = 1_700_000_000_000
    ledger.record_signals([signal_record(data_source=s, candle_ms=start + i) for i, s in enumerate(signals)])
    ledger.record_actions([action_record(data_source=s, candle_ms=start + i) for i, s in enumerate(actions)])
    ledger.close()


def serve(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["serve", "--port", str(free_port()), "--dry-run", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("source", ["live", "store"])
def test_a_real_source_refuses_a_ledger_with_the_demos_records_in_one_line(data_dir: Path, source: str) -> None:
    # "ccxt:synthetic": what `SIGNALS_SOURCE=live make serve` wrote before serve refused the synthetic exchange
    ledger_with(data_dir, signals=["synthetic", "ccxt:synthetic", "ccxt:binance"], actions=["synthetic"])
    code, output = serve("--source", source)
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output
    assert f"{data_dir / 'signals.db'} holds 3 records of the synthetic demo" in output
    assert "SIGNALS_DATA_DIR" in output and "SIGNALS_DATABASE_URL" in output


def test_the_demo_keeps_its_ledger_and_a_real_ledger_serves_live(data_dir: Path) -> None:
    ledger_with(data_dir, signals=["synthetic"], actions=[])
    code, output = serve()
    assert code == 0 and json.loads(output)["SIGNALS_SOURCE"] == "simulated", output
    (data_dir / "signals.db").unlink()
    ledger_with(data_dir, signals=["ccxt:binance"], actions=["ccxt:binance"])
    code, output = serve("--source", "live")
    assert code == 0 and json.loads(output)["SIGNALS_SOURCE"] == "live", output


def test_no_ledger_yet_is_not_created_by_the_check(data_dir: Path) -> None:
    code, output = serve("--source", "live")
    assert code == 0, output
    assert not (data_dir / "signals.db").exists()
