"""The live candle source: ccxt's async client with rate limit, pagination, retries, timeouts and close().

Only closed candles come out (a bar is closed when ``open_time + timeframe <= now``), and every
result passes `validate_candles`. ccxt errors never leak: transient ones (network, timeout, 429,
5xx, a cut-off body) are retried with exponential backoff and then become `ExchangeUnavailable`
(503); an unknown market becomes `InvalidInput` (400).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import aiohttp
import pandas as pd

from signals.data.candles import CANDLE_COLUMNS, empty_candles, validate_candles
from signals.data.store import CandleStore, WriteResult, parse_exchange
from signals.core.symbols import current_symbol
from signals.core.timeframes import parse_timeframe, timeframe_seconds, utc_now
from signals.core.errors import ExchangeUnavailable, InvalidInput
from signals.core.settings import Settings

if TYPE_CHECKING:
    import ccxt.async_support as ccxt_async

# ccxt (about a second to import: every exchange's module) is imported where an exchange is built or its errors
# are read: a demo or store server, and every process of the service graph at start, never needs it.

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], pd.Timestamp]
MAX_PAGES: Final = 100_000  # a hard stop for a server that keeps answering without progress
_MESSAGE_CHARS: Final = 300


_SETTINGS = Settings.model_fields


@dataclass(frozen=True)
class ExchangeConfig:
    """How to reach one exchange; the defaults are those of `Settings` (read from it, not repeated)."""

    exchange_id: str = _SETTINGS["exchange"].default
    base_url: str | None = _SETTINGS["exchange_url"].default
    timeout_ms: int = _SETTINGS["exchange_timeout_ms"].default
    retries: int = _SETTINGS["exchange_retries"].default
    backoff_s: float = _SETTINGS["exchange_backoff_s"].default
    limit: int = 1000  # binance's largest klines page

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ExchangeConfig:
        values: dict[str, Any] = {
            "exchange_id": settings.exchange,
            "base_url": settings.exchange_url,
            "timeout_ms": settings.exchange_timeout_ms,
            "retries": settings.exchange_retries,
            "backoff_s": settings.exchange_backoff_s,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass(frozen=True)
class SyncResult(WriteResult):
    """A store write plus what the sync fetched (`fetched` bars from `start`, newest stored bar `last`)."""

    fetched: int
    start: pd.Timestamp
    last: pd.Timestamp | None


def is_transient(error: BaseException) -> bool:
    """Worth retrying: network errors, timeouts, 429/418 and 5xx (all `NetworkError` in ccxt 4.5), a malformed or
    empty body (`BadResponse`), and a body cut short, which ccxt wraps as a plain `ExchangeError` raised from
    aiohttp's ``ClientPayloadError``."""
    from ccxt.base.errors import BadResponse, DDoSProtection, ExchangeError, NetworkError, RateLimitExceeded

    if isinstance(error, NetworkError | RateLimitExceeded | DDoSProtection | BadResponse):
        return True
    return isinstance(error, ExchangeError) and isinstance(error.__cause__, aiohttp.ClientError)


def rehost(urls: Any, base_url: str) -> Any:
    """Every URL in ccxt's ``urls['api']`` tree with its scheme and host replaced by `base_url` (path kept).

    Rewriting them all, not only the ones we expect to call, means no request can leave `base_url`.
    """
    if isinstance(urls, str):
        return base_url.rstrip("/") + urlsplit(urls).path
    if isinstance(urls, dict):
        return {key: rehost(value, base_url) for key, value in urls.items()}
    return urls


class ExchangeSource:
    """One ccxt async exchange (one rate limiter, markets loaded once) shared by many fetches.

    Use as ``async with ExchangeSource(config) as source: await source.fetch(...)``; `aclose` is
    always awaited on exit. `exchange_class` lets tests wrap the real ccxt class (e.g. to count close()).
    """

    def __init__(
        self,
        config: ExchangeConfig | None = None,
        *,
        now: Clock | None = None,
        exchange_class: type[ccxt_async.Exchange] | None = None,
    ) -> None:
        self.config = config or ExchangeConfig()
        exchange_id = parse_exchange(self.config.exchange_id)
        if not 1 <= self.config.limit <= 1000:
            raise InvalidInput(f"page limit {self.config.limit} is outside 1..1000")
        if exchange_class is None:
            import ccxt.async_support as ccxt_async

            exchange_class = getattr(ccxt_async, exchange_id, None)
            if exchange_class is None:
                raise InvalidInput(f"unknown ccxt exchange id {exchange_id!r}")
        self.now: Clock = now or utc_now
        self.exchange = exchange_class({"enableRateLimit": True, "timeout": self.config.timeout_ms})
        self._configure(self.exchange)

    def _configure(self, exchange: ccxt_async.Exchange) -> None:
        # Spot only: binance's fetch_markets would otherwise also call the futures hosts (fapi, dapi).
        fetch_markets = exchange.options.get("fetchMarkets")
        if isinstance(fetch_markets, dict) and "types" in fetch_markets:
            exchange.options["fetchMarkets"] = {**fetch_markets, "types": ["spot"], "loadAllOptions": False}
        exchange.options["defaultType"] = "spot"
        if self.config.base_url:
            exchange.urls["api"] = rehost(exchange.urls["api"], self.config.base_url)

    @property
    def exchange_id(self) -> str:
        return self.config.exchange_id

    async def __aenter__(self) -> ExchangeSource:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close ccxt's aiohttp session (ccxt warns about, and leaks, unclosed sessions)."""
        await self.exchange.close()

    async def fetch(
        self,
        symbol: str,
        timeframe: str,
        since: pd.Timestamp | None,
        until: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Closed candles from `since` (inclusive; None: the newest page only) to `until` (inclusive).

        A renamed pair is asked for under its current name (MATIC/USDT -> POL/USDT: the old market is gone)."""
        symbol, timeframe = current_symbol(symbol), parse_timeframe(timeframe)
        step_ms = timeframe_seconds(timeframe) * 1000
        now_ms = _ms(self.now())
        until_ms = None if until is None else _ms(until)
        await self._call(symbol, timeframe, self.exchange.load_markets)
        if symbol not in self.exchange.markets:
            raise InvalidInput(f"{symbol} is not a market on {self.exchange_id}; check the symbol (e.g. BTC/USDT)")
        cursor = None if since is None else _ms(since)
        rows: list[list[Any]] = []
        for _ in range(MAX_PAGES):
            params = {} if until_ms is None else {"until": until_ms}
            request = partial(self.exchange.fetch_ohlcv, symbol, timeframe, cursor, self.config.limit, params)
            page: list[list[Any]] = await self._call(symbol, timeframe, request)
            fresh = [row for row in page if cursor is None or row[0] >= cursor]
            if rows:
                fresh = [row for row in fresh if row[0] > rows[-1][0]]
            rows.extend(fresh)
            logger.debug("%s %s %s: page of %d bars from %s", self.exchange_id, symbol, timeframe, len(fresh), cursor)
            if cursor is None or not fresh or len(page) < self.config.limit:
                break
            cursor = int(rows[-1][0]) + step_ms
            if cursor + step_ms > now_ms or (until_ms is not None and cursor > until_ms):
                break
        return self._frame(rows, timeframe, since, until_ms, now_ms)

    def _frame(
        self, rows: list[list[Any]], timeframe: str, since: pd.Timestamp | None, until_ms: int | None, now_ms: int
    ) -> pd.DataFrame:
        if not rows:
            return empty_candles()
        frame = pd.DataFrame(rows, columns=list(CANDLE_COLUMNS))
        open_ms = frame["timestamp"].astype("int64")
        closed = open_ms + timeframe_seconds(timeframe) * 1000 <= now_ms
        if until_ms is not None:
            closed &= open_ms <= until_ms
        if since is not None:
            closed &= open_ms >= _ms(since)
        frame = frame.loc[closed].copy()
        frame["timestamp"] = pd.to_datetime(frame["timestamp"].astype("int64"), unit="ms", utc=True)
        return validate_candles(frame, timeframe)

    async def _call(self, symbol: str, timeframe: str, request: Callable[[], Awaitable[T]]) -> T:
        """`request()` with retries on transient errors; ccxt errors become domain errors."""
        from ccxt.base.errors import BadSymbol, BaseError

        attempts = self.config.retries + 1
        for attempt in range(attempts):
            try:
                return await request()
            except BadSymbol as error:
                raise InvalidInput(f"{symbol} is not a market on {self.exchange_id}: {_short(error)}") from error
            except BaseError as error:
                if not is_transient(error):
                    raise ExchangeUnavailable(
                        f"{self.exchange_id} failed for {symbol} {timeframe}: {type(error).__name__}: {_short(error)}"
                    ) from error
                if attempt + 1 == attempts:
                    raise ExchangeUnavailable(
                        f"{self.exchange_id} unavailable for {symbol} {timeframe} after {attempts} attempt(s) "
                        f"(last error {type(error).__name__}: {_short(error)}); retry later, or raise "
                        "SIGNALS_EXCHANGE_RETRIES / SIGNALS_EXCHANGE_TIMEOUT_MS"
                    ) from error
                delay = self.config.backoff_s * 2**attempt
                logger.warning(
                    "%s %s %s: %s (attempt %d/%d), retrying in %.2fs",
                    self.exchange_id,
                    symbol,
                    timeframe,
                    type(error).__name__,
                    attempt + 1,
                    attempts,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")


def _ms(stamp: pd.Timestamp) -> int:
    stamp = pd.Timestamp(stamp)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value // 1_000_000)


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error.__cause__, aiohttp.ClientError):  # ccxt's message is only "<id> GET <url>"
        text += f" ({type(error.__cause__).__name__}: {' '.join(str(error.__cause__).split())})"
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "..."


async def fetch_candles(
    symbol: str,
    timeframe: str,
    since: pd.Timestamp | None,
    config: ExchangeConfig | None = None,
    *,
    now: Clock | None = None,
    until: pd.Timestamp | None = None,
    exchange_class: type[ccxt_async.Exchange] | None = None,
) -> pd.DataFrame:
    """One-shot fetch of closed candles; opens and always closes its own exchange client."""
    async with ExchangeSource(config, now=now, exchange_class=exchange_class) as source:
        return await source.fetch(symbol, timeframe, since, until)


async def sync_candles(
    store: CandleStore,
    exchange_id: str,
    symbol: str,
    timeframe: str,
    since: pd.Timestamp | None,
    *,
    source: ExchangeSource | None = None,
    config: ExchangeConfig | None = None,
    now: Clock | None = None,
) -> SyncResult:
    """Fetch only bars after the last stored one (from `since` when the store is empty) and merge them in.

    Pass a shared `source` to sync many pairs through one client (one rate limiter); else one is
    opened from `config` and closed here. A renamed pair syncs under its current name, after the last bar of its
    history (`symbols.history_symbols`: POL/USDT's new bars follow what was stored as MATIC/USDT).
    """
    symbol, timeframe = current_symbol(symbol), parse_timeframe(timeframe)
    last = await asyncio.to_thread(store.last_timestamp, exchange_id, symbol, timeframe)
    if last is not None:
        start = last + pd.Timedelta(seconds=timeframe_seconds(timeframe))
    elif since is not None:
        start = pd.Timestamp(since)
    else:
        raise InvalidInput(f"no stored {timeframe} candles for {symbol} on {exchange_id}: give a start (--since)")
    if source is None:
        config = config or ExchangeConfig(exchange_id=exchange_id)
        async with ExchangeSource(config, now=now) as own:
            candles = await own.fetch(symbol, timeframe, start)
    else:
        if source.exchange_id != exchange_id:
            raise InvalidInput(f"source is for {source.exchange_id}, the store entry for {exchange_id}")
        candles = await source.fetch(symbol, timeframe, start)
    if candles.empty:
        total = len(await asyncio.to_thread(store.read_or_empty, exchange_id, symbol, timeframe))
        path = store.path_for(exchange_id, symbol, timeframe)
        return SyncResult(added=0, total=total, path=path, fetched=0, start=start, last=last)
    # store.write does blocking file I/O (Parquet, fsync, flock): keep it off the event loop.
    written = await asyncio.to_thread(store.write, exchange_id, symbol, timeframe, candles)
    return SyncResult(
        added=written.added,
        total=written.total,
        path=written.path,
        fetched=len(candles),
        start=start,
        last=candles["timestamp"].iloc[-1],
    )
