"""Exchange commands: `signals sync` (incremental candle download) and `signals exchange-server`."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Final

import pandas as pd
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
    split_csv,
    stderr,
)
from signals.core.errors import ExchangeUnavailable, InvalidInput
from signals.core.settings import get_settings
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import iso_z, parse_timeframe
from signals.data.exchange import ExchangeConfig, ExchangeSource, SyncResult, sync_candles
from signals.data.store import CandleStore

logger = logging.getLogger(__name__)

# Pairs run concurrently through ONE ccxt client, so its rate limiter paces them all; a few in flight
# hide round-trip latency without bursting the exchange's weight limit.
MAX_CONCURRENT_PAIRS: Final = 4


def _parse_since(since: str | None) -> pd.Timestamp | None:
    if since is None:
        return None
    try:
        stamp = pd.Timestamp(since)
    except ValueError as error:
        raise InvalidInput(f"cannot read --since {since[:40]!r}; expected a date such as 2024-01-01") from error
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


async def _sync_all(
    store: CandleStore,
    config: ExchangeConfig,
    pairs: list[tuple[str, str]],
    since: pd.Timestamp | None,
    on_done: Callable[[], None],
) -> list[SyncResult]:
    """Sync every pair, at most `MAX_CONCURRENT_PAIRS` at a time; the first error cancels the rest."""
    gate = asyncio.Semaphore(MAX_CONCURRENT_PAIRS)
    async with ExchangeSource(config) as source:

        async def one(symbol: str, timeframe: str) -> SyncResult:
            async with gate:
                result = await sync_candles(store, config.exchange_id, symbol, timeframe, since, source=source)
            on_done()
            return result

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(symbol, timeframe)) for symbol, timeframe in pairs]
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None  # one line for the user: the first failure
    return [task.result() for task in tasks]


@app.command("sync")
def sync(
    exchange: ExchangeOption = None,
    symbols: Annotated[
        list[str] | None, typer.Option("--symbols", help="Comma list, e.g. BTC/USDT,ETH/USDT. Default: the universe.")
    ] = None,
    timeframes: Annotated[
        list[str] | None, typer.Option("--timeframes", help="Comma list, e.g. 15m,1h. Default: settings.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Start (UTC) for pairs with no stored candles, e.g. 2024-01-01.")
    ] = None,
    exchange_url: Annotated[
        str | None, typer.Option("--exchange-url", help="Replace the exchange's API host, e.g. http://127.0.0.1:8765.")
    ] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Download closed candles after the last stored bar of each (symbol, timeframe) and merge them in."""
    settings = get_settings()
    exchange_id = exchange_or_default(exchange)
    store = CandleStore(data_dir_or_default(data_dir))
    try:
        symbol_list = [normalize_symbol(s) for s in (split_csv(symbols) or settings.universe)]
        timeframe_list = [parse_timeframe(tf) for tf in (split_csv(timeframes) or settings.timeframes)]
        start = _parse_since(since)
        config = ExchangeConfig.from_settings(settings, exchange_id=exchange_id, base_url=exchange_url)
        pairs = [(symbol, timeframe) for symbol in dict.fromkeys(symbol_list) for timeframe in timeframe_list]
        with progress_bar() as progress:
            task = progress.add_task(f"syncing {exchange_id}", total=len(pairs))
            results = asyncio.run(_sync_all(store, config, pairs, start, lambda: progress.advance(task)))
    except (ExchangeUnavailable, InvalidInput) as error:
        raise fail(error) from error
    rows = [
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "fetched": result.fetched,
            "added": result.added,
            "total": result.total,
            "last": iso_z(result.last),
        }
        for (symbol, timeframe), result in zip(pairs, results, strict=True)
    ]
    emit_table(rows, as_json=as_json, title=f"Synced {exchange_id} into {store.root}")


@app.command("exchange-server")
def exchange_server(
    data_dir: DataDirOption = None,
    exchange: ExchangeOption = None,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port).")] = 8765,
) -> None:
    """Serve the candle store as a local Binance-compatible API on 127.0.0.1 until Ctrl-C (a development tool: it
    is not in the bento, where `signals.testing` does not ship)."""
    from signals.testing.local_exchange import LocalExchange

    store = CandleStore(data_dir_or_default(data_dir))
    try:
        server = LocalExchange(store, exchange_id=exchange_or_default(exchange), port=port)
    except InvalidInput as error:
        raise fail(error) from error
    try:
        server.start()
    except OSError as error:
        raise fail(OSError(f"cannot listen on 127.0.0.1:{port}: {error.strerror}; pick another --port")) from error
    stderr.print(f"serving {server.exchange_id} candles from {store.root} at {server.url} (Ctrl-C stops)")
    try:
        threading.Event().wait()  # the server runs on its own thread; this one only waits for Ctrl-C
    except KeyboardInterrupt:
        logger.info("stopping the local exchange")
    finally:
        server.stop()
