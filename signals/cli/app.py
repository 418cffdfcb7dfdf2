"""The `signals` Typer app and the helpers every command module shares (options, tables, progress)."""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

# typer 0.29 runs commands on its own vendored click: its context, not the `click` package's, has the params.
from typer._click.globals import get_current_context

from signals.core.errors import SignalsError
from signals.core.settings import get_settings

app = typer.Typer(
    name="signals",
    help="Trading-signal model server: candle data, features, training and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
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
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table (--output json).")]


class Output(StrEnum):
    """What a table command prints."""

    table = "table"
    json = "json"
    csv = "csv"


OutputOption = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        help="table (fits the terminal; default), json or csv (every column).",
        show_default=False,
    ),
]
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


def output_format(as_json: bool = False) -> str:
    """table, json or csv: the command's `--output`, else `--json` (its alias), else a table. Read from the running
    command's context, so the helpers below need no extra argument."""
    context = get_current_context(silent=True)
    chosen = context.params.get("output") if context is not None else None
    return Output(chosen).value if chosen else ("json" if as_json else "table")


def machine(as_json: bool = False) -> bool:
    """Whether rows should carry raw values (json, csv) rather than the rounded figures a table shows."""
    return output_format(as_json) != "table"


def emit_table(rows: Sequence[Mapping[str, Any]], *, as_json: bool, title: str | None = None) -> None:
    """Print rows as JSON or CSV (machine use) or as a table that fits the terminal (people)."""
    fmt = output_format(as_json)
    if fmt == "json":
        stdout.print_json(json.dumps(rows, default=str))
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: _cell(value, raw=True) for key, value in row.items()} for row in rows)
        sys.stdout.flush()
        return
    if not rows:
        stdout.print("(nothing)")
        return
    shown, hidden = _fitting_columns(rows, columns, title)
    stdout.print(_table(rows, shown, title))
    if hidden:  # never squeezed to an ellipsis: the columns that do not fit are named, and one option shows them
        stdout.print(
            f"({len(hidden)} more column{'s' * (len(hidden) > 1)}: {', '.join(hidden)}; --output csv or json has "
            "every column, a wider terminal shows more)",
            highlight=False,
            soft_wrap=False,
        )


def _cell(value: Any, *, raw: bool = False) -> str:
    if value is None:
        return ""
    if raw and isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: list[str], title: str | None) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def _fitting_columns(
    rows: Sequence[Mapping[str, Any]], columns: list[str], title: str | None
) -> tuple[list[str], list[str]]:
    """The columns, in order, that fit the terminal's width unwrapped (at least the first), and the rest."""
    wide = stdout.options.update_width(100_000)
    shown: list[str] = []
    for column in columns:
        trial = [*shown, column]
        if not shown or Measurement.get(stdout, wide, _table(rows, trial, None)).maximum <= stdout.width:
            shown = trial
    return shown, [column for column in columns if column not in shown]


class LineProgress(Progress):
    """Progress where stderr is not a terminal (a log, CI, `make serve | tee`): a plain line per step, a new
    description or another tenth done, instead of a bar that draws nothing until the end."""

    def __init__(self, console: Console) -> None:
        super().__init__(console=console, disable=True)
        self._said: dict[TaskID, tuple[str, int]] = {}

    def update(self, task_id: TaskID, **changes: Any) -> None:
        super().update(task_id, **changes)
        self._report(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def _report(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        total = task.total or 0
        tenth = int(10 * task.completed / total) if total else 0
        said = (task.description, tenth)
        if self._said.get(task_id) == said:
            return
        self._said[task_id] = said
        done = f"{task.completed:g}/{total:g}" if total else f"{task.completed:g}"
        self.console.print(f"{task.description}: {done} ({task.elapsed or 0:.0f} s)", markup=False, highlight=False)


def progress_bar() -> Progress:
    """A progress bar on stderr, so `--json` output on stdout stays clean (lines when stderr is not a terminal)."""
    if not stderr.is_terminal:
        return LineProgress(stderr)
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
