"""The Parquet candle store: layout, merge + dedupe, atomic writes, gap report, and the store commands."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from signals.cli import app
from signals.core.errors import StorageUnavailable, CandleDataError, DataNotFound, InvalidInput, InvalidSymbol
from signals.data import store as store_module
from signals.data.importer import read_candle_file
from signals.data.store import CandleStore, atomic_write, find_gaps
from tests.support.paths import SHARED_OHLCV
from tests.support.factories import random_walk_candles

runner = CliRunner()


def test_files_are_laid_out_by_exchange_symbol_and_timeframe(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    assert store.path_for("binance", "btc-usdt", "1h") == tmp_path / "binance" / "BTC_USDT-1h.parquet"


@pytest.mark.parametrize(("exchange", "symbol"), [("../x", "BTC/USDT"), ("binance", "../../etc/passwd")])
def test_path_components_never_come_from_raw_text(tmp_path: Path, exchange: str, symbol: str) -> None:
    with pytest.raises(InvalidInput):
        CandleStore(tmp_path).path_for(exchange, symbol, "1h")


def test_write_merges_and_dedupes_with_the_newer_fetch_winning(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    candles = random_walk_candles(100)
    first = store.write("binance", "BTC/USDT", "15m", candles.iloc[:60])
    revised = candles.iloc[50:].copy()
    revised.loc[revised.index[0], ["close", "high"]] = [1e6, 1e6]  # the exchange corrected bar 50
    second = store.write("binance", "BTC/USDT", "15m", revised)
    stored = store.read("binance", "BTC/USDT", "15m")
    assert (first.added, first.total) == (60, 60)
    assert (second.added, second.total) == (40, 100)
    assert stored["timestamp"].is_monotonic_increasing and stored["timestamp"].is_unique
    assert stored.loc[50, "close"] == 1e6
    pd.testing.assert_frame_equal(stored.drop(index=50), candles.drop(index=50), check_exact=True)


def test_rewriting_the_same_candles_adds_nothing(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    candles = random_walk_candles(30)
    store.write("binance", "ETH/USDT", "15m", candles)
    assert store.write("binance", "ETH/USDT", "15m", candles).added == 0


def test_invalid_candles_are_refused_before_touching_the_file(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("binance", "BTC/USDT", "15m", random_walk_candles(10))
    bad = random_walk_candles(10, start="2024-02-01")
    bad.loc[3, "close"] = float("nan")
    with pytest.raises(CandleDataError, match="NaN"):
        store.write("binance", "BTC/USDT", "15m", bad)
    assert len(store.read("binance", "BTC/USDT", "15m")) == 10


def test_a_write_that_fails_halfway_leaves_the_old_file_intact(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = CandleStore(tmp_path)
    original = random_walk_candles(40)
    store.write("binance", "BTC/USDT", "15m", original)
    path = store.path_for("binance", "BTC/USDT", "15m")
    before = path.read_bytes()

    def crash_halfway(frame: pd.DataFrame, target: Path) -> None:
        def write(handle) -> None:  # type: ignore[no-untyped-def]
            handle.write(before[: len(before) // 2])
            raise OSError(28, "No space left on device")

        atomic_write(target, write)

    monkeypatch.setattr(store_module, "write_parquet_atomic", crash_halfway)
    with pytest.raises(StorageUnavailable, match="No space left on device"):
        store.write("binance", "BTC/USDT", "15m", random_walk_candles(80))
    assert path.read_bytes() == before
    pd.testing.assert_frame_equal(store.read("binance", "BTC/USDT", "15m"), original)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_missing_file_reads_as_not_found_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(DataNotFound, match="signals sync"):
        CandleStore(tmp_path).read("binance", "BTC/USDT", "1h")


def test_gap_report_counts_missing_bars() -> None:
    candles = random_walk_candles(20).drop(index=[5, 6, 7, 12]).reset_index(drop=True)
    gaps = find_gaps(candles["timestamp"], "15m")
    assert [(g.last_before.minute, g.missing_bars) for g in gaps] == [(0, 3), (45, 1)]
    assert find_gaps(random_walk_candles(20)["timestamp"], "15m") == []


def test_entries_describe_every_file(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("binance", "BTC/USDT", "15m", random_walk_candles(20).drop(index=[4]))
    store.write("synthetic", "ETH/USDT", "15m", random_walk_candles(10))
    (tmp_path / "binance" / "notes.parquet").write_text("not a candle file")
    entries = list(store.entries())
    assert [(e.exchange, e.symbol, e.bars, len(e.gaps)) for e in entries] == [
        ("binance", "BTC/USDT", 19, 1),
        ("synthetic", "ETH/USDT", 10, 0),
    ]


def test_import_reads_csv_with_iso_or_epoch_millisecond_times(tmp_path: Path) -> None:
    candles = random_walk_candles(12, timeframe="1h")
    iso = tmp_path / "SOL_USDT-1h.csv"
    candles.assign(timestamp=candles["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(iso, index=False)
    epoch = tmp_path / "whatever.csv"
    candles.assign(timestamp=candles["timestamp"].astype("int64") // 1_000_000).to_csv(epoch, index=False)
    from_iso = read_candle_file(iso)
    from_epoch = read_candle_file(epoch, symbol="SOLUSDT", timeframe="1h")
    assert (from_iso.symbol, from_iso.timeframe) == ("SOL/USDT", "1h")
    pd.testing.assert_frame_equal(from_iso.candles, candles, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(from_epoch.candles, from_iso.candles)


def test_import_names_the_file_when_it_cannot_tell_or_read_it(tmp_path: Path) -> None:
    odd = tmp_path / "candles.csv"
    odd.write_text("timestamp,open\n")
    with pytest.raises(InvalidInput, match="candles.csv.*--symbol and --timeframe"):
        read_candle_file(odd)
    with pytest.raises(InvalidSymbol):
        read_candle_file(tmp_path / "BTC_XXX-1h.csv")
    corrupt = tmp_path / "BTC_USDT-1h.parquet"
    corrupt.write_bytes(b"PAR1 garbage")
    with pytest.raises(CandleDataError, match="BTC_USDT-1h.parquet: unreadable"):
        read_candle_file(corrupt)


def test_cli_imports_files_and_lists_the_store(tmp_path: Path) -> None:
    candles = random_walk_candles(48, timeframe="1h").drop(index=[10])
    source = tmp_path / "in" / "BTC_USDT-1h.parquet"
    source.parent.mkdir()
    candles.to_parquet(source)
    store_dir = tmp_path / "store"
    imported = runner.invoke(app, ["import-candles", str(source), "--data-dir", str(store_dir), "--json"])
    assert imported.exit_code == 0, imported.output
    listed = runner.invoke(app, ["candles", "--data-dir", str(store_dir), "--json"])
    rows = json.loads(listed.stdout)
    assert rows == [
        {
            "exchange": "binance",
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "first": "2024-01-01T00:00:00Z",
            "last": "2024-01-02T23:00:00Z",
            "bars": 47,
            "gaps": 1,
            "missing_bars": 1,
        }
    ]
    table = runner.invoke(app, ["candles", "--data-dir", str(store_dir)])
    assert "BTC/USDT" in table.stdout and "47" in table.stdout


def test_cli_import_reports_a_bad_file_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "ETH_USDT-1h.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,1,nan\n")
    result = runner.invoke(app, ["import-candles", str(bad), "--data-dir", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 2
    assert "NaN" in result.stdout


def test_cli_data_dir_defaults_to_the_environment(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from signals.core.settings import get_settings

    CandleStore(tmp_path).write("binance", "BTC/USDT", "15m", random_walk_candles(5))
    monkeypatch.setenv("SIGNALS_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        rows = json.loads(runner.invoke(app, ["candles", "--json"]).stdout)
    finally:
        get_settings.cache_clear()
    assert [row["bars"] for row in rows] == [5]


@pytest.mark.realdata
def test_real_files_import_with_their_documented_gaps(tmp_path: Path) -> None:
    source = SHARED_OHLCV.parent / "ohlcv_2023" / "BTC_USDT-15m.parquet"
    if not source.is_file():
        pytest.skip(f"real data not available: {source} is absent")
    candle_file = read_candle_file(source)
    store = CandleStore(tmp_path)
    store.write("binance", candle_file.symbol, candle_file.timeframe, candle_file.candles)
    (entry,) = list(store.entries())
    assert entry.bars == 34994
    assert [(g.last_before.isoformat(), g.missing_bars) for g in entry.gaps] == [("2023-03-24T12:30:00+00:00", 5)]


def test_temp_files_a_killed_writer_left_are_removed_and_a_live_writers_are_kept(tmp_path: Path) -> None:
    import os
    import time as clock

    store = CandleStore(tmp_path)
    store.write("binance", "BTC/USDT", "1h", random_walk_candles(50, timeframe="1h"))
    folder = tmp_path / "binance"
    orphan, live = folder / ".BTC_USDT-1h.parquet.abc123.tmp", folder / ".BTC_USDT-1h.parquet.def456.tmp"
    orphan.write_bytes(b"half a parquet file")
    live.write_bytes(b"being written now")
    old = clock.time() - 3600
    os.utime(orphan, (old, old))
    assert store.remove_orphans(older_than_s=60) == [orphan]
    assert not orphan.exists() and live.exists()
    assert len(store.read("binance", "BTC/USDT", "1h")) == 50  # the data file is untouched


def test_a_write_the_file_system_refuses_is_one_storage_error_and_the_old_file_stays(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("binance", "BTC/USDT", "1h", random_walk_candles(50, timeframe="1h"))
    (tmp_path / "synthetic").write_text("a file where a directory should be")
    with pytest.raises(
        StorageUnavailable, match=r"cannot write synthetic/BTC_USDT-1h.parquet in the candle store"
    ) as refused:
        store.write("synthetic", "BTC/USDT", "1h", random_walk_candles(50, timeframe="1h"))
    assert str(tmp_path) not in str(refused.value)  # the file is named relative to the store
    assert len(store.read("binance", "BTC/USDT", "1h")) == 50


def test_a_renamed_pair_reads_its_old_names_real_history_then_its_own_and_writes_only_its_own(tmp_path: Path) -> None:
    """POL/USDT's history is Binance's MATIC/USDT candles (../shared/data has only MATIC_USDT-*): imported under the
    old name, read under the new one; bars fetched as POL/USDT follow them, and win a bar both hold."""
    path = SHARED_OHLCV / "MATIC_USDT-1h.parquet"
    if not path.is_file():
        pytest.skip(f"real data not available: {path} is absent (set SIGNALS_SHARED_DATA to ../shared/data)")
    matic = read_candle_file(path)
    assert matic.symbol == "MATIC/USDT"
    store = CandleStore(tmp_path)
    store.write("binance", matic.symbol, "1h", matic.candles)

    pd.testing.assert_frame_equal(store.read("binance", "POL/USDT", "1h"), matic.candles)
    pd.testing.assert_frame_equal(
        store.read_tail("binance", "POLUSDT", "1h", 50), matic.candles.iloc[-50:].reset_index(drop=True)
    )
    assert (
        store.exists("binance", "POL/USDT", "1h")
        and store.last_timestamp("binance", "POL/USDT", "1h") == matic.candles["timestamp"].iloc[-1]
    )

    last = matic.candles["timestamp"].iloc[-1]
    fetched = random_walk_candles(30, timeframe="1h", start=str(last - pd.Timedelta(hours=9)), price=0.37, seed=3)
    written = store.write("binance", "POL/USDT", "1h", fetched)
    assert written.path.name == "POL_USDT-1h.parquet" and (written.added, written.total) == (30, 30)  # no copy of MATIC

    merged = store.read("binance", "POL/USDT", "1h")
    assert len(merged) == len(matic.candles) - 10 + 30  # 10 bars overlap: the POL/USDT fetch wins them
    pd.testing.assert_frame_equal(merged.iloc[-30:].reset_index(drop=True), fetched)
    pd.testing.assert_frame_equal(
        store.read_tail("binance", "POL/USDT", "1h", 40), merged.iloc[-40:].reset_index(drop=True)
    )
    since = matic.candles["timestamp"].iloc[-15]
    pd.testing.assert_frame_equal(
        store.read_since("binance", "POL/USDT", "1h", since),
        merged[merged["timestamp"] >= since].reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(store.read("binance", "MATIC/USDT", "1h"), matic.candles)  # the old name: as stored
    assert [e.symbol for e in store.entries("binance")] == ["MATIC/USDT", "POL/USDT"]  # files described as they are


def test_a_renamed_pair_with_no_candles_names_both_names(tmp_path: Path) -> None:
    with pytest.raises(DataNotFound, match=r"no 1h candles for S/USDT or FTM/USDT on binance"):
        CandleStore(tmp_path).read_tail("binance", "S/USDT", "1h", 10)
