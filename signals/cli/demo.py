"""`signals demo-data`: fill the candle store with a seeded synthetic market, for offline machines."""

from __future__ import annotations

import logging
import time
from typing import Annotated

import pandas as pd
import typer

from signals.cli.app import (
    DataDirOption,
    JsonOption,
    OutputOption,
    app,
    data_dir_or_default,
    emit_table,
    fail,
    progress_bar,
    split_csv,
)
from signals.core.errors import InvalidInput, SignalsError
from signals.core.settings import DEFAULT_UNIVERSE
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import MODEL_TIMEFRAMES, iso_z, parse_timeframe
from signals.data.store import CandleStore, parse_exchange
from signals.data.synthetic import DEMO_EDGE, DEMO_SEED, SYNTHETIC_EXCHANGE, default_end
from signals.pipelines import write_synthetic_market

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 120


def _parse_end(value: str | None) -> pd.Timestamp:
    """`--end` as a UTC timestamp (naive means UTC); default: the last UTC midnight."""
    if value is None:
        return default_end()
    try:
        stamp = pd.Timestamp(value)
    except ValueError as error:
        raise InvalidInput(f"cannot read --end {value[:40]!r} as a date; expected e.g. 2024-12-31") from error
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@app.command("demo-data")
def demo_data(
    symbols: Annotated[
        list[str] | None, typer.Option("--symbols", help="Comma list or repeated. Default: the 34 USDT pairs.")
    ] = None,
    timeframes: Annotated[
        list[str] | None, typer.Option("--timeframes", help="Comma list or repeated. Default: 15m,1h,4h,1d.")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=3660, help="Days of history per symbol.")] = DEFAULT_DAYS,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same market, bit for bit.")] = DEMO_SEED,
    planted: Annotated[
        list[str] | None,
        typer.Option(
            "--planted",
            help="Symbols given a learnable edge: their large 15m moves continue for 12 bars (PlantedEdge). "
            "Default: none.",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--end", help="Exclusive end (UTC), floored to the coarsest timeframe. Default: today."),
    ] = None,
    exchange: Annotated[
        str, typer.Option("--exchange", help="Exchange id to store under; responses then name this source.")
    ] = SYNTHETIC_EXCHANGE,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace/--merge",
            help="Replace the generated files (default), or merge into them (two runs can then disagree).",
        ),
    ] = True,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Generate a synthetic market (regimes, volatility clustering, fat tails) and write it to the store.

    Each symbol is generated once on its finest timeframe and resampled, so all timeframes agree.
    """
    store = CandleStore(data_dir_or_default(data_dir))
    try:
        exchange_id = parse_exchange(exchange)
        symbol_list = split_csv(symbols) or list(DEFAULT_UNIVERSE)
        tf_list = [parse_timeframe(tf) for tf in split_csv(timeframes) or MODEL_TIMEFRAMES]
        end_at = _parse_end(end)
        planted_edges = {normalize_symbol(s): DEMO_EDGE for s in split_csv(planted)}
        if unknown := set(planted_edges) - {normalize_symbol(s) for s in symbol_list}:
            raise InvalidInput(f"--planted names symbols that are not generated: {', '.join(sorted(unknown))}")
    except SignalsError as error:
        raise fail(error) from error

    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    try:
        with progress_bar() as progress:
            task = progress.add_task("generating", total=len(symbol_list))
            for symbol in symbol_list:
                progress.update(task, description=f"generating {symbol}")
                frames = write_synthetic_market(
                    store,
                    [symbol],
                    tf_list,
                    days,
                    seed,
                    end=end_at,
                    exchange=exchange_id,
                    replace=replace,
                    planted=planted_edges,
                )
                for name, tf in frames:
                    # After a merge the file may span more than this run generated: report what it holds.
                    timestamps = store.read(exchange_id, name, tf)["timestamp"]
                    rows.append(
                        {
                            "symbol": name,
                            "planted": name in planted_edges,
                            "timeframe": tf,
                            "bars": len(timestamps),
                            "first": iso_z(timestamps.iloc[0]) if len(timestamps) else None,
                            "last": iso_z(timestamps.iloc[-1]) if len(timestamps) else None,
                        }
                    )
                progress.advance(task)
    except SignalsError as error:
        raise fail(error) from error
    logger.info(
        "wrote %d synthetic files (seed %d, %d days) in %.1f s", len(rows), seed, days, time.perf_counter() - started
    )
    emit_table(rows, as_json=as_json, title=f"Synthetic candles (seed {seed}) in {store.root / exchange_id}")
