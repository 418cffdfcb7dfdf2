"""Real ccxt (async) against the local Binance-compatible server on 127.0.0.1, fed with real candles.

No mock replaces ccxt: faults are produced by the server (429, 5xx, delays, cut-off bodies), so the
retry, timeout, pagination and close() paths of `features.exchange` run as they would in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import pandas as pd
import pytest
from typer.testing import CliRunner

import signals.cli.exchange  # noqa: F401  (registers `sync` on the app without importing every CLI module)
from signals.cli.app import app
from signals.core.errors import ExchangeUnavailable, InvalidInput
from signals.core.settings import get_settings
from signals.data.exchange import ExchangeConfig, ExchangeSource, fetch_candles, sync_candles
from signals.data.store import CandleStore
from signals.testing.local_exchange import LocalExchange

from tests.support.paths import SHARED_OHLCV as OHLCV

EXCHANGE = "binance"
BARS = {("BTC/USDT", "15m"): 1500, ("ETH/USDT", "15m"): 700, ("BTC/USDT", "1h"): 400, ("ETH/USDT", "1h"): 300}
FAST = {"timeout_ms": 2000, "retries": 3, "backoff_s": 0.01, "limit": 400}

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not OHLCV.is_dir(), reason=f"shared candle data not found at {OHLCV} (set SIGNALS_SHARED_DATA)"),
]


@pytest.fixture(scope="module")
def source_frames() -> dict[tuple[str, str], pd.DataFrame]:
    """A small slice of real Binance candles per (symbol, timeframe), from the start of 2024."""
    frames = {}
    for (symbol, timeframe), bars in BARS.items():
        path = OHLCV / f"{symbol.replace('/', '_')}-{timeframe}.parquet"
        frames[(symbol, timeframe)] = pd.read_parquet(path).iloc[:bars].reset_index(drop=True)
    return frames


@pytest.fixture
def server_store(tmp_path: Path, source_frames: dict[tuple[str, str], pd.DataFrame]) -> CandleStore:
    store = CandleStore(tmp_path / "server")
    for (symbol, timeframe), frame in source_frames.items():
        store.write(EXCHANGE, symbol, timeframe, frame)
    return store


@pytest.fixture
def exchange(server_store: CandleStore) -> Iterator[LocalExchange]:
    with LocalExchange(server_store, exchange_id=EXCHANGE) as server:
        yield server


def fetch(server: LocalExchange, symbol: str = "BTC/USDT", timeframe: str = "15m", **options: Any) -> pd.DataFrame:
    kwargs = {**FAST, **options}
    since = kwargs.pop("since", pd.Timestamp("2024-01-01", tz="UTC"))
    clients = {key: kwargs.pop(key) for key in ("now", "until", "exchange_class") if key in kwargs}
    config = ExchangeConfig(EXCHANGE, server.url, **kwargs)
    return asyncio.run(fetch_candles(symbol, timeframe, since, config, **clients))


def test_pagination_returns_the_source_bars_exactly(
    exchange: LocalExchange, source_frames: dict[tuple[str, str], pd.DataFrame]
) -> None:
    candles = fetch(exchange)

    pd.testing.assert_frame_equal(candles, source_frames[("BTC/USDT", "15m")])
    klines = exchange.klines_requests()
    assert len(klines) >= 3
    starts = [int(r.params["startTime"]) for r in klines]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(r.params["limit"] == "400" and r.params["symbol"] == "BTCUSDT" for r in klines)
    # load_markets touched only the spot exchangeInfo: no futures hosts, no keyed currency endpoint.
    assert {r.path for r in exchange.requests} == {"/api/v3/exchangeInfo", "/api/v3/klines"}


def test_rate_limited_then_success(exchange: LocalExchange, source_frames: dict[tuple[str, str], pd.DataFrame]) -> None:
    exchange.fail_next(2, 429)
    candles = fetch(exchange, "ETH/USDT")

    pd.testing.assert_frame_equal(candles, source_frames[("ETH/USDT", "15m")])
    assert [r.path for r in exchange.requests[:3]] == ["/api/v3/exchangeInfo"] * 3


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_burst_then_success(
    exchange: LocalExchange, source_frames: dict[tuple[str, str], pd.DataFrame], status: int
) -> None:
    async def run() -> pd.DataFrame:
        async with ExchangeSource(ExchangeConfig(EXCHANGE, exchange.url, **{**FAST, "limit": 100})) as source:
            await source.exchange.load_markets()
            exchange.fail_next(3, status)  # the burst hits the klines pages, mid-fetch
            return await source.fetch("ETH/USDT", "1h", pd.Timestamp("2024-01-01", tz="UTC"))

    candles = asyncio.run(run())

    pd.testing.assert_frame_equal(candles, source_frames[("ETH/USDT", "1h")])
    klines = exchange.klines_requests()
    assert len(klines) == 3 + 4  # 3 failures, then pages of 100, 100, 100 and an empty one
    assert len({r.params["startTime"] for r in klines[:4]}) == 1  # the failed page was retried as is


def test_delay_past_timeout_gives_up_with_a_clear_error(exchange: LocalExchange) -> None:
    exchange.delay_s = 1.0
    started = time.monotonic()
    with pytest.raises(ExchangeUnavailable) as caught:
        fetch(exchange, timeout_ms=150, retries=1, backoff_s=0.01)

    assert time.monotonic() - started < 5
    message = str(caught.value)
    for part in ("binance", "BTC/USDT", "2 attempt", "RequestTimeout", "retry later"):
        assert part in message
    assert len(exchange.requests) == 2


def test_truncated_body_is_retried(exchange: LocalExchange, source_frames: dict[tuple[str, str], pd.DataFrame]) -> None:
    exchange.truncate_next(2)
    candles = fetch(exchange, "BTC/USDT", "1h")

    pd.testing.assert_frame_equal(candles, source_frames[("BTC/USDT", "1h")])
    assert len(exchange.requests) == 2 + 1 + 2  # two cut-off answers, exchangeInfo, a full page, an empty page


def test_still_forming_candle_is_dropped(
    exchange: LocalExchange, source_frames: dict[tuple[str, str], pd.DataFrame]
) -> None:
    source = source_frames[("BTC/USDT", "15m")]
    forming = source["timestamp"].iloc[1000]
    now = forming + pd.Timedelta(minutes=7)
    exchange.now = now

    candles = fetch(exchange, now=lambda: now)

    pd.testing.assert_frame_equal(candles, source.iloc[:1000].reset_index(drop=True))
    # The server did serve the forming bar (partial volume); the client dropped it.
    start_ms = int(forming.value // 1_000_000)
    url = f"{exchange.url}/api/v3/klines?symbol=BTCUSDT&interval=15m&startTime={start_ms}&limit=5"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (127.0.0.1 test server)
        rows = json.loads(response.read())
    assert [row[0] for row in rows] == [start_ms]
    assert float(rows[0][5]) < source["volume"].iloc[1000]


def test_bad_symbol_is_invalid_input(exchange: LocalExchange) -> None:
    with pytest.raises(InvalidInput, match="SOL/USDT"):
        fetch(exchange, "SOL/USDT")


def test_incremental_sync_fetches_only_after_the_last_stored_bar(
    exchange: LocalExchange, source_frames: dict[tuple[str, str], pd.DataFrame], tmp_path: Path
) -> None:
    source = source_frames[("BTC/USDT", "15m")]
    client = CandleStore(tmp_path / "client")
    client.write(EXCHANGE, "BTC/USDT", "15m", source.iloc[:1000])
    config = ExchangeConfig(EXCHANGE, exchange.url, **FAST)

    result = asyncio.run(sync_candles(client, EXCHANGE, "BTC/USDT", "15m", None, config=config))

    first_start = pd.Timestamp(int(exchange.klines_requests()[0].params["startTime"]), unit="ms", tz="UTC")
    assert first_start == source["timestamp"].iloc[999] + pd.Timedelta(minutes=15)
    assert (result.fetched, result.added, result.total) == (500, 500, 1500)
    assert result.last == source["timestamp"].iloc[-1]
    pd.testing.assert_frame_equal(client.read(EXCHANGE, "BTC/USDT", "15m"), source)

    exchange.clear_log()
    again = asyncio.run(sync_candles(client, EXCHANGE, "BTC/USDT", "15m", None, config=config))
    assert (again.fetched, again.added, again.total) == (0, 0, 1500)
    assert len(exchange.klines_requests()) == 1


class RecordingBinance(ccxt_async.binance):  # type: ignore[misc,name-defined]
    """The real ccxt binance client, counting close() calls."""

    closes = 0

    async def close(self) -> None:
        type(self).closes += 1
        await super().close()
        assert self.session is None


@pytest.mark.parametrize(("symbol", "error"), [("BTC/USDT", ExchangeUnavailable), ("SOL/USDT", InvalidInput)])
def test_close_is_called_on_failure(exchange: LocalExchange, symbol: str, error: type[Exception]) -> None:
    RecordingBinance.closes = 0
    if error is ExchangeUnavailable:
        exchange.fail_next(10, 503)
    with pytest.raises(error):
        fetch(exchange, symbol, retries=0, exchange_class=RecordingBinance)
    assert RecordingBinance.closes == 1


def test_source_is_closed_after_success(exchange: LocalExchange) -> None:
    async def run() -> bool:
        source = ExchangeSource(ExchangeConfig(EXCHANGE, exchange.url, **FAST), exchange_class=RecordingBinance)
        async with source:
            await source.fetch("BTC/USDT", "1h", pd.Timestamp("2024-01-01", tz="UTC"))
        return source.exchange.session is None

    RecordingBinance.closes = 0
    assert asyncio.run(run())
    assert RecordingBinance.closes == 1


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fast retries for the CLI, which reads `get_settings()` (cached: cleared around the test)."""
    monkeypatch.setenv("SIGNALS_EXCHANGE_RETRIES", "1")
    monkeypatch.setenv("SIGNALS_EXCHANGE_BACKOFF_S", "0.01")
    monkeypatch.setenv("SIGNALS_EXCHANGE_TIMEOUT_MS", "2000")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def sync_args(exchange: LocalExchange, data_dir: Path, *extra: str) -> list[str]:
    return [
        "sync",
        "--exchange",
        EXCHANGE,
        "--symbols",
        "BTC/USDT,ETH/USDT",
        "--timeframes",
        "15m,1h",
        "--since",
        "2024-01-01",
        "--exchange-url",
        exchange.url,
        "--data-dir",
        str(data_dir),
        *extra,
    ]


@pytest.mark.usefixtures("cli_env")
def test_cli_sync_table_then_json(
    exchange: LocalExchange, source_frames: dict[tuple[str, str], pd.DataFrame], tmp_path: Path
) -> None:
    runner = CliRunner()
    first = runner.invoke(app, sync_args(exchange, tmp_path / "client"))
    assert first.exit_code == 0, first.output
    assert "BTC/USDT" in first.stdout and "ETH/USDT" in first.stdout and "1500" in first.stdout

    again = runner.invoke(app, sync_args(exchange, tmp_path / "client", "--json"))
    assert again.exit_code == 0, again.output
    rows = json.loads(again.stdout)
    assert {(r["symbol"], r["timeframe"]) for r in rows} == set(source_frames)
    assert all(r["fetched"] == 0 and r["added"] == 0 for r in rows)
    assert {(r["symbol"], r["timeframe"]): r["total"] for r in rows} == BARS
    client = CandleStore(tmp_path / "client")
    for (symbol, timeframe), frame in source_frames.items():
        pd.testing.assert_frame_equal(client.read(EXCHANGE, symbol, timeframe), frame)


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(("symbols", "expected"), [("BTC/USDT", "unavailable"), ("SOL/USDT", "SOL/USDT")])
def test_cli_sync_errors_exit_2_with_one_line(
    exchange: LocalExchange, tmp_path: Path, symbols: str, expected: str
) -> None:
    if expected == "unavailable":
        exchange.fail_next(100, 503)
    args = sync_args(exchange, tmp_path / "client")
    args[args.index("--symbols") + 1] = symbols
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0]


def test_a_renamed_pair_is_fetched_live_under_its_new_name_after_the_history_stored_under_the_old_one(
    tmp_path: Path,
) -> None:
    """Binance lists POL/USDT, not MATIC/USDT: the client store holds real MATIC/USDT candles (as imported from
    ../shared/data), the exchange offers the next ones as POL/USDT; a sync of either name asks for POLUSDT from the
    bar after the MATIC history and writes POL_USDT, and POL/USDT then reads as one series."""
    real = pd.read_parquet(OHLCV / "MATIC_USDT-1h.parquet").iloc[:400].reset_index(drop=True)
    client = CandleStore(tmp_path / "client")
    client.write(EXCHANGE, "MATIC/USDT", "1h", real.iloc[:300])
    with LocalExchange(frames={("POL/USDT", "1h"): real.iloc[300:]}, exchange_id=EXCHANGE) as server:
        config = ExchangeConfig(EXCHANGE, server.url, **FAST)
        result = asyncio.run(sync_candles(client, EXCHANGE, "MATIC/USDT", "1h", None, config=config))
        (request, *_) = server.klines_requests()
        assert request.params["symbol"] == "POLUSDT"
        assert pd.Timestamp(int(request.params["startTime"]), unit="ms", tz="UTC") == real["timestamp"].iloc[300]
        assert result.path.name == "POL_USDT-1h.parquet" and (result.added, result.total) == (100, 100)
        pd.testing.assert_frame_equal(client.read(EXCHANGE, "POL/USDT", "1h"), real)
        pd.testing.assert_frame_equal(client.read(EXCHANGE, "MATIC/USDT", "1h"), real.iloc[:300])

        fresh = fetch(server, "MATIC/USDT", "1h", since=real["timestamp"].iloc[390])
    pd.testing.assert_frame_equal(fresh, real.iloc[390:].reset_index(drop=True))
