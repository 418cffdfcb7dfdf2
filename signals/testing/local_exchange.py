"""A local, Binance-compatible HTTP exchange that serves stored candles, with switchable faults.

It answers the part of Binance's public spot REST API that ccxt's ``load_markets`` and
``fetch_ohlcv`` use (``/api/v3/exchangeInfo``, ``/api/v3/klines``, ``/api/v3/ping``,
``/api/v3/time``), so tests run the real ccxt client code against it, and anyone without network
can run ``signals sync`` against it. It binds to 127.0.0.1 only.

The server is the standard library's ``ThreadingHTTPServer`` on a background thread: no extra
dependency, no event loop of its own (so it cannot collide with the client's asyncio loop in the
same test), and it starts and stops synchronously inside a fixture.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from signals.core.symbols import normalize_symbol
from signals.core.timeframes import TIMEFRAME_SECONDS, parse_timeframe, timeframe_seconds
from signals.data.candles import validate_candles
from signals.data.store import CandleStore, parse_exchange

logger = logging.getLogger(__name__)

HOST: Final = "127.0.0.1"
DEFAULT_KLINES_LIMIT: Final = 500
MAX_KLINES_LIMIT: Final = 1000
_STORE_FILE = re.compile(r"^(?P<stem>[A-Z0-9]{1,20}_[A-Z0-9]{1,20})-(?P<tf>[0-9]+[mhd])\.parquet$")
_TOO_MANY_REQUESTS = {
    "code": -1003,
    "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
    "Please use the websocket for live updates to avoid bans.",
}


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it (logged before any fault is applied)."""

    path: str
    params: dict[str, str]
    at: float


@dataclass(frozen=True)
class _Series:
    """One (symbol, timeframe) as arrays, so a klines page is a `searchsorted` and a slice."""

    open_ms: np.ndarray
    values: np.ndarray  # open, high, low, close, volume


class _ApiError(Exception):
    """A Binance-style error answer: HTTP status plus ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


class LocalExchange:
    """Serve candles from a `CandleStore` (``store`` + ``exchange_id``) or in-memory ``frames``.

    ``frames`` maps ``(symbol, timeframe)`` to candle frames. ``now`` (None: wall clock) hides bars
    that open after it and serves the bar containing it as a still-forming candle. Faults
    (``delay_s``, `fail_next`, `truncate_next`) can be switched while the server runs.
    """

    def __init__(
        self,
        store: CandleStore | Path | str | None = None,
        *,
        exchange_id: str = "binance",
        frames: Mapping[tuple[str, str], pd.DataFrame] | None = None,
        port: int = 0,
        now: pd.Timestamp | None = None,
        delay_s: float = 0.0,
    ) -> None:
        if store is None and frames is None:
            raise ValueError("LocalExchange needs a candle store or in-memory frames")
        self.store = CandleStore(store) if isinstance(store, Path | str) else store
        self.exchange_id = parse_exchange(exchange_id)
        self.port = port
        self.now = now
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._series: dict[tuple[str, str], _Series] = {}
        self._frames = {(normalize_symbol(s), parse_timeframe(tf)): f for (s, tf), f in (frames or {}).items()}
        self._fail_count, self._fail_status, self._truncate_count = 0, 503, 0
        self._log: list[LoggedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalExchange is not running; use `with LocalExchange(...) as ex:`")
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> LocalExchange:
        handler = type("_BoundHandler", (_Handler,), {"exchange": self})
        server = ThreadingHTTPServer((HOST, self.port), handler)
        server.daemon_threads = True  # a handler stuck in a delay or an idle keep-alive never blocks stop()
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-exchange", daemon=True
        )
        self._thread.start()
        logger.info("local exchange serving %s on %s", self.exchange_id, self.url)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, wake delayed handlers, close the socket and join the thread (bounded)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("local exchange thread did not stop within %.1fs", timeout_s)
        self._server, self._thread = None, None

    def __enter__(self) -> LocalExchange:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- faults and the request log ----------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next `n` requests with `status` (429 and 418 carry Binance's rate-limit JSON)."""
        with self._lock:
            self._fail_count, self._fail_status = n, status

    def truncate_next(self, n: int) -> None:
        """Answer the next `n` requests with a Content-Length larger than the body, then close."""
        with self._lock:
            self._truncate_count = n

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def klines_requests(self) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path == "/api/v3/klines"]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def _take_fault(self) -> tuple[int | None, bool]:
        with self._lock:
            if self._fail_count > 0:
                self._fail_count -= 1
                return self._fail_status, False
            if self._truncate_count > 0:
                self._truncate_count -= 1
                return None, True
            return None, False

    def _record(self, path: str, params: dict[str, str]) -> None:
        with self._lock:
            self._log.append(LoggedRequest(path, params, time.monotonic()))

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # -- data ----------------------------------------------------------------------------------------

    def now_ms(self) -> int:
        now = self.now if self.now is not None else pd.Timestamp.now(tz="UTC")
        return int(now.value // 1_000_000)

    def markets(self) -> list[str]:
        """Normalised symbols on offer, from the frames or the store's file names (no file is read)."""
        if self.store is None:
            return sorted({symbol for symbol, _ in self._frames})
        folder = self.store.root / self.exchange_id
        symbols = set()
        for path in folder.glob("*.parquet") if folder.is_dir() else []:
            if (match := _STORE_FILE.match(path.name)) and match["tf"] in TIMEFRAME_SECONDS:
                symbols.add(normalize_symbol(match["stem"]))
        return sorted(symbols)

    def series(self, symbol: str, timeframe: str) -> _Series | None:
        """Arrays for (symbol, timeframe), loaded once; None when there is no such data."""
        key = (symbol, timeframe)
        with self._lock:
            if key in self._series:
                return self._series[key]
        if self.store is not None:
            if not self.store.exists(self.exchange_id, symbol, timeframe):
                return None
            frame = self.store.read(self.exchange_id, symbol, timeframe)
        elif key in self._frames:
            frame = validate_candles(self._frames[key], timeframe)
        else:
            return None
        series = _Series(
            open_ms=frame["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64) // 1_000_000,
            values=frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype="float64"),
        )
        with self._lock:
            self._series[key] = series
        return series

    def klines(self, params: Mapping[str, str]) -> list[list[Any]]:
        """Binance's ``GET /api/v3/klines``: startTime/endTime inclusive on open time, newest page without them."""
        market_id = params.get("symbol", "")
        if not market_id:
            raise _ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        interval = params.get("interval", "")
        if interval not in TIMEFRAME_SECONDS:
            raise _ApiError(400, -1120, "Invalid interval.")
        limit = _int_param(params, "limit", DEFAULT_KLINES_LIMIT)
        if not 1 <= limit <= MAX_KLINES_LIMIT:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        symbol = self._symbol_for(market_id)
        series = self.series(symbol, interval) if symbol else None
        if series is None:
            raise _ApiError(400, -1121, "Invalid symbol.")
        step_ms = timeframe_seconds(interval) * 1000
        now_ms = self.now_ms()
        visible = int(np.searchsorted(series.open_ms, now_ms, side="right"))  # bars opened at or before now
        end_ms = min(_int_param(params, "endTime", now_ms), now_ms)
        hi = min(visible, int(np.searchsorted(series.open_ms, end_ms, side="right")))
        if "startTime" in params:
            lo = int(np.searchsorted(series.open_ms, _int_param(params, "startTime", 0), side="left"))
            hi = min(hi, lo + limit)
        else:
            lo = max(0, hi - limit)
        return [self._kline_row(series, i, step_ms, now_ms) for i in range(lo, hi)]

    def _symbol_for(self, market_id: str) -> str | None:
        for symbol in self.markets():
            if symbol.replace("/", "") == market_id:
                return symbol
        return None

    @staticmethod
    def _kline_row(series: _Series, i: int, step_ms: int, now_ms: int) -> list[Any]:
        open_ms = int(series.open_ms[i])
        o, h, lo, c, v = (float(x) for x in series.values[i])
        if open_ms + step_ms > now_ms:  # the still-forming bar: range so far, volume pro rata
            h, lo = max(o, c), min(o, c)
            v *= max(0.0, (now_ms - open_ms) / step_ms)
        quote_volume = v * c
        return [
            open_ms,
            repr(o),
            repr(h),
            repr(lo),
            repr(c),
            repr(v),
            open_ms + step_ms - 1,
            repr(quote_volume),
            0,
            repr(v / 2),
            repr(quote_volume / 2),
            "0",
        ]

    def exchange_info(self) -> dict[str, Any]:
        """Binance's ``GET /api/v3/exchangeInfo``, with only the fields ccxt's parse_market reads."""
        symbols = []
        for symbol in self.markets():
            base, quote = symbol.split("/")
            symbols.append(
                {
                    "symbol": f"{base}{quote}",
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "orderTypes": ["LIMIT", "MARKET"],
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": "1e-08", "maxPrice": "1000000", "tickSize": "1e-08"},
                        {"filterType": "LOT_SIZE", "minQty": "1e-08", "maxQty": "90000000000", "stepSize": "1e-08"},
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
            "exchangeFilters": [],
            "symbols": symbols,
        }


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    if name not in params:
        return default
    try:
        return int(params[name])
    except ValueError:
        raise _ApiError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


class _Handler(BaseHTTPRequestHandler):
    """Routes GET requests to the bound `LocalExchange`, applying its faults first."""

    exchange: LocalExchange  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, as ccxt's aiohttp session expects from a real exchange
    timeout = 10  # drop idle keep-alive connections so handler threads end

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first (its timeout): not our error
            logger.debug("client closed the connection before %s was answered", self.path)
            self.close_connection = True

    def _answer(self) -> None:
        exchange = self.exchange
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query))
        exchange._record(parts.path, params)
        if exchange.delay_s > 0:
            exchange._sleep(exchange.delay_s)
        status, truncate = exchange._take_fault()
        if status is not None:
            if status in (HTTPStatus.TOO_MANY_REQUESTS, 418):
                self._send_json(status, _TOO_MANY_REQUESTS, {"Retry-After": "1"})
            else:
                self._send_text(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
            return
        try:
            body = self._route(parts.path, params)
        except _ApiError as error:
            self._send_json(error.status, {"code": error.code, "msg": error.msg})
            return
        if body is None:
            self._send_json(404, {"code": -1, "msg": f"no route {parts.path}"})
            return
        self._send_json(200, body, truncate=truncate)

    def _route(self, path: str, params: dict[str, str]) -> Any:
        exchange = self.exchange
        if path == "/api/v3/klines":
            return exchange.klines(params)
        if path == "/api/v3/exchangeInfo":
            return exchange.exchange_info()
        if path == "/api/v3/ping":
            return {}
        if path == "/api/v3/time":
            return {"serverTime": exchange.now_ms()}
        return None

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None, *, truncate: bool = False
    ) -> None:
        self._send(status, json.dumps(payload, separators=(",", ":")).encode(), "application/json", headers, truncate)

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", None, False)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None, truncate: bool
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) + (1024 if truncate else 0)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if truncate else body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
        logger.debug("%s %s", self.address_string(), format % args)
