"""The `signals` Typer app and the helpers every command module shares (options, tables, progress)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from signals.core.errors import SignalsError
from signals.core.settings import get_settings

app = typer.Typer(
    name="signals",
    help="Trading-signal model server: candle data, features, training and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stdout = Console()
stderr = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Candle store root. Default: env SIGNALS_DATA_DIR, else ./data.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ExchangeOption = Annotated[
    str | None, typer.Option("--exchange", help="ccxt exchange id. Default: env SIGNALS_EXCHANGE, else binance.")
]


def data_dir_or_default(data_dir: Path | None) -> Path:
    return data_dir if data_dir is not None else get_settings().data_dir


def exchange_or_default(exchange: str | None) -> str:
    return exchange if exchange is not None else get_settings().exchange


def split_csv(values: Sequence[str] | None) -> list[str]:
    """Options given as repeated flags and/or comma lists: `--symbols BTC/USDT,ETH/USDT --symbols SOL`."""
    return [item.strip() for value in values or () for item in value.split(",") if item.strip()]


def emit_table(rows: list[dict[str, Any]], *, as_json: bool, title: str | None = None) -> None:
    """Print rows as JSON (machine use) or as a rich table (people)."""
    if as_json:
        stdout.print_json(json.dumps(rows, default=str))
        return
    if not rows:
        stdout.print("(nothing)")
        return
    table = Table(title=title)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(column) is None else str(row[column]) for column in columns))
    if Measurement.get(stdout, stdout.options.update_width(100_000), table).maximum <= stdout.width:
        stdout.print(table)
        return
    # Too wide for this terminal: one field per line for each row, rather than columns squeezed to an ellipsis.
    for number, row in enumerate(rows, start=1):
        record = Table(title=f"{title or 'row'} ({number} of {len(rows)})", show_header=False)
        record.add_column("field", style="bold")
        record.add_column("value", overflow="fold")
        for column in columns:
            record.add_row(column, "" if row.get(column) is None else str(row[column]))
        stdout.print(record)


def progress_bar() -> Progress:
    """A progress bar on stderr, so `--json` output on stdout stays clean."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=False,
    )


def fail(error: Exception) -> typer.Exit:
    """Report a domain error in one line and exit 2 (no traceback: the message says what to fix)."""
    stderr.print(f"[red]error:[/red] {error}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


__all__ = ["SignalsError", "app", "fail"]
