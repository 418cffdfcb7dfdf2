"""Candle-store commands: `signals candles` and `signals import-candles`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from signals.cli.app import (
    DataDirOption,
    ExchangeOption,
    JsonOption,
    OutputOption,
    app,
    data_dir_or_default,
    emit_table,
    exchange_or_default,
    fail,
    progress_bar,
)
from signals.core.errors import SignalsError
from signals.core.timeframes import iso_z
from signals.data.importer import read_candle_file
from signals.data.store import CandleStore


@app.command("candles")
def list_candles(
    data_dir: DataDirOption = None,
    exchange: Annotated[str | None, typer.Option(help="Only this exchange.")] = None,
    show_gaps: Annotated[bool, typer.Option("--gaps", help="List every gap, not only the count.")] = False,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """List what the candle store holds: symbol, timeframe, first and last bar, bars, gaps."""
    store = CandleStore(data_dir_or_default(data_dir))
    try:
        rows = []
        for entry in store.entries(exchange):
            row: dict[str, object] = {
                "exchange": entry.exchange,
                "symbol": entry.symbol,
                "timeframe": entry.timeframe,
                "first": iso_z(entry.first),
                "last": iso_z(entry.last),
                "bars": entry.bars,
                "gaps": len(entry.gaps),
                "missing_bars": sum(gap.missing_bars for gap in entry.gaps),
            }
            if show_gaps:
                row["gap_list"] = [
                    {"after": iso_z(g.last_before), "before": iso_z(g.first_after), "missing": g.missing_bars}
                    for g in entry.gaps
                ]
            rows.append(row)
    except SignalsError as error:
        raise fail(error) from error
    emit_table(rows, as_json=as_json, title=f"Candle store {store.root}")


@app.command("import-candles")
def import_candles(
    files: Annotated[list[Path], typer.Argument(help="Parquet or CSV files named like BTC_USDT-1h.parquet.")],
    symbol: Annotated[str | None, typer.Option(help="Symbol for every file (else from the file name).")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Timeframe for every file (else from the file name).")] = None,
    exchange: ExchangeOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Import candle files into the store (merge + dedupe, atomic write). Bad files are named and skipped."""
    store = CandleStore(data_dir_or_default(data_dir))
    exchange_id = exchange_or_default(exchange)
    rows, failures = [], 0
    with progress_bar() as progress:
        task = progress.add_task("importing", total=len(files))
        for path in files:
            try:
                candle_file = read_candle_file(path, symbol, timeframe)
                result = store.write(exchange_id, candle_file.symbol, candle_file.timeframe, candle_file.candles)
                rows.append(
                    {
                        "file": path.name,
                        "symbol": candle_file.symbol,
                        "timeframe": candle_file.timeframe,
                        "added": result.added,
                        "total": result.total,
                    }
                )
            except (SignalsError, FileNotFoundError) as error:
                failures += 1
                rows.append(
                    {
                        "file": path.name,
                        "symbol": None,
                        "timeframe": None,
                        "added": 0,
                        "total": None,
                        "error": str(error),
                    }
                )
            progress.advance(task)
    emit_table(rows, as_json=as_json, title=f"Imported into {store.root / exchange_id}")
    if failures:
        raise typer.Exit(code=2)
