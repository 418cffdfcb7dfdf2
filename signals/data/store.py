"""The Parquet candle store: one file per (exchange, symbol, timeframe), merged and written atomically.

Layout: ``<root>/<exchange>/<BASE>_<QUOTE>-<tf>.parquet``. Every path component comes from a
validated value (exchange id pattern, normalised symbol, known timeframe), never from raw user text.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from signals.data.candles import CANDLE_COLUMNS, empty_candles, validate_candles
from signals.core.symbols import history_symbols, normalize_symbol, symbol_stem
from signals.core.timeframes import TIMEFRAME_SECONDS, parse_timeframe, timeframe_seconds
from signals.core.errors import CandleDataError, DataNotFound, InvalidInput, StorageUnavailable

logger = logging.getLogger(__name__)

_EXCHANGE_ID = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_FILE_NAME = re.compile(r"^(?P<stem>[A-Z0-9]{1,20}_[A-Z0-9]{1,20})-(?P<tf>[0-9]+[mhd])\.parquet$")
PARQUET_COMPRESSION: Final = "zstd"
# Rows per Parquet row group: serving reads the last few hundred candles of a file by reading its last groups,
# not the whole file (a 15m file of a year holds 35,000 rows; its last 460 are in one or two groups).
ROW_GROUP_ROWS: Final = 1024


@dataclass(frozen=True)
class Gap:
    """Missing bars between two stored candles."""

    last_before: pd.Timestamp
    first_after: pd.Timestamp
    missing_bars: int


@dataclass(frozen=True)
class StoreEntry:
    """One file of the store, described by what it holds."""

    exchange: str
    symbol: str
    timeframe: str
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    bars: int
    gaps: list[Gap]
    path: Path


@dataclass(frozen=True)
class WriteResult:
    added: int
    total: int
    path: Path


def parse_exchange(exchange: str) -> str:
    if not isinstance(exchange, str) or not _EXCHANGE_ID.match(exchange):
        raise InvalidInput(f"malformed exchange id {str(exchange)[:40]!r}; expected a ccxt id such as 'binance'")
    return exchange


def find_gaps(timestamps: pd.Series, timeframe: str) -> list[Gap]:
    """Every place where consecutive timestamps are more than one timeframe apart."""
    if len(timestamps) < 2:
        return []
    step_ns = timeframe_seconds(timeframe) * 1_000_000_000
    ns = timestamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    jumps = np.diff(ns)
    return [
        Gap(timestamps.iloc[i], timestamps.iloc[i + 1], int(jumps[i] // step_ns) - 1)
        for i in np.flatnonzero(jumps > step_ns)
    ]


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temp file in the same directory, fsync, then rename over `path`.

    A crash or an exception mid-write leaves the previous file untouched and no temp file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(
        path,
        lambda handle: frame.to_parquet(
            handle, index=False, compression=PARQUET_COMPRESSION, row_group_size=ROW_GROUP_ROWS
        ),
    )


def merge_candles(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Union of two candle frames; where both hold a bar, the newer fetch wins."""
    if old.empty:
        return new.reset_index(drop=True)
    merged = pd.concat([old, new], ignore_index=True)
    merged = merged.drop_duplicates(subset="timestamp", keep="last")
    return merged.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _merged(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One pair's frames from its files, oldest name first, as one series (a later file wins a bar both hold)."""
    merged = frames[0]
    for frame in frames[1:]:
        merged = merge_candles(merged, frame)
    return merged


class CandleStore:
    """Reads and writes the Parquet files under `root`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path_for(self, exchange: str, symbol: str, timeframe: str) -> Path:
        name = f"{symbol_stem(symbol)}-{parse_timeframe(timeframe)}.parquet"
        return self.root / parse_exchange(exchange) / name

    def exists(self, exchange: str, symbol: str, timeframe: str) -> bool:
        return bool(self._history_paths(exchange, symbol, timeframe))

    def read(self, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
        """All stored candles, validated; `DataNotFound` when there is no file.

        A renamed pair (`symbols.RENAMED`) reads its old name's file and its own, merged (its own wins a bar both
        hold): POL/USDT's history is what was stored as MATIC/USDT, then what was fetched as POL/USDT."""
        frames = [self._read_path(path, timeframe) for path in self._existing(exchange, symbol, timeframe)]
        return _merged(frames)

    def read_tail(self, exchange: str, symbol: str, timeframe: str, rows: int) -> pd.DataFrame:
        """The last `rows` stored candles, validated, reading only the file's last row groups."""
        frames = [self._tail(path, timeframe, rows) for path in self._existing(exchange, symbol, timeframe)]
        return _merged(frames).iloc[-rows:].reset_index(drop=True) if len(frames) > 1 else frames[0]

    def _tail(self, path: Path, timeframe: str, rows: int) -> pd.DataFrame:
        parquet = pq.ParquetFile(path)
        groups: list[int] = []
        count = 0
        for group in range(parquet.num_row_groups - 1, -1, -1):
            groups.insert(0, group)
            count += parquet.metadata.row_group(group).num_rows
            if count >= rows:
                break
        table = parquet.read_row_groups(groups, columns=list(CANDLE_COLUMNS)) if groups else None
        frame = table.to_pandas() if table is not None else empty_candles()
        try:
            return validate_candles(frame.iloc[-rows:].reset_index(drop=True), timeframe)
        except CandleDataError as error:  # rows count from the tail here: say so, the bar's time names it
            raise CandleDataError(f"{path.name}, in its last {rows} candles: {error}") from error

    def read_since(self, exchange: str, symbol: str, timeframe: str, start: pd.Timestamp) -> pd.DataFrame:
        """Stored candles from `start` on, validated, skipping the row groups that end before it."""
        frames = [
            validate_candles(
                pq.read_table(path, columns=list(CANDLE_COLUMNS), filters=[("timestamp", ">=", start)])
                .to_pandas()
                .reset_index(drop=True),
                timeframe,
            )
            for path in self._existing(exchange, symbol, timeframe)
        ]
        return _merged(frames)

    @staticmethod
    def _read_path(path: Path, timeframe: str) -> pd.DataFrame:
        return validate_candles(pd.read_parquet(path, columns=list(CANDLE_COLUMNS)), timeframe)

    def _history_paths(self, exchange: str, symbol: str, timeframe: str) -> list[Path]:
        """The files holding the pair's candles, oldest name first (`history_symbols`); only those that exist."""
        paths = (self.path_for(exchange, name, timeframe) for name in history_symbols(symbol))
        return [path for path in paths if path.is_file()]

    def _existing(self, exchange: str, symbol: str, timeframe: str) -> list[Path]:
        paths = self._history_paths(exchange, symbol, timeframe)
        if not paths:
            names = " or ".join(history_symbols(symbol)[::-1])
            raise DataNotFound(
                f"no {timeframe} candles for {names} on {exchange} in {self.root} "
                f"(run `signals sync`, `signals import-candles` or `signals demo-data`)"
            )
        return paths

    def read_or_empty(self, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
        try:
            return self.read(exchange, symbol, timeframe)
        except DataNotFound:
            return empty_candles()

    def last_timestamp(self, exchange: str, symbol: str, timeframe: str) -> pd.Timestamp | None:
        stored = self.read_or_empty(exchange, symbol, timeframe)
        return None if stored.empty else stored["timestamp"].iloc[-1]

    def write(self, exchange: str, symbol: str, timeframe: str, candles: pd.DataFrame) -> WriteResult:
        """Merge `candles` into the stored file (dedupe on timestamp) and replace it atomically."""
        path = self.path_for(exchange, symbol, timeframe)
        new = validate_candles(candles, timeframe)
        with self._writable(path), self._locked(path):
            # this name's file only: a renamed pair's old history stays in its own file, merged on read
            old = self._read_path(path, timeframe) if path.is_file() else empty_candles()
            merged = merge_candles(old, new)  # two valid frames, deduped and sorted: valid by construction
            write_parquet_atomic(merged, path)
        return WriteResult(added=len(merged) - len(old), total=len(merged), path=path)

    def replace(self, exchange: str, symbol: str, timeframe: str, candles: pd.DataFrame) -> WriteResult:
        """Replace the stored file with exactly `candles` (no merge), atomically: for regenerated data sets."""
        path = self.path_for(exchange, symbol, timeframe)
        new = validate_candles(candles, timeframe)
        with self._writable(path), self._locked(path):
            write_parquet_atomic(new, path)
        return WriteResult(added=len(new), total=len(new), path=path)

    @contextmanager
    def _writable(self, path: Path) -> Iterator[None]:
        """A write that the file system refuses (disk full, read-only, quota, a file where a directory should be)
        is a `StorageUnavailable` naming the file relative to the store and the cause; the old file is intact."""
        try:
            yield
        except OSError as error:
            where = path.relative_to(self.root) if path.is_relative_to(self.root) else path.name
            cause = error.strerror or type(error).__name__
            raise StorageUnavailable(
                f"cannot write {where} in the candle store: {cause} (errno {error.errno}); free disk space or make "
                "the data directory writable; the stored file is unchanged"
            ) from error

    def remove_orphans(self, older_than_s: float = 60.0) -> list[Path]:
        """Delete temp files that a killed writer left (`.<name>.<random>.tmp`), once older than `older_than_s` (a
        live writer's temp file is younger); the removed paths."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        cutoff = time.time() - older_than_s
        for path in self.root.glob("*/.*.tmp"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except OSError as error:  # vanished meanwhile, or not ours to remove: leave it
                logger.debug("could not remove %s: %s", path, error)
        if removed:
            logger.warning("removed %d orphan temp file(s) a killed writer left in %s", len(removed), self.root)
        return removed

    def entries(self, exchange: str | None = None) -> Iterator[StoreEntry]:
        """Describe every well-named file of the store (others are ignored), sorted by path."""
        exchanges = [parse_exchange(exchange)] if exchange else self._exchanges()
        for exchange_id in exchanges:
            for path in sorted((self.root / exchange_id).glob("*.parquet")):
                match = _FILE_NAME.match(path.name)
                if not match or match["tf"] not in TIMEFRAME_SECONDS:
                    continue
                symbol = normalize_symbol(match["stem"])
                candles = self.read(exchange_id, symbol, match["tf"])
                timestamps = candles["timestamp"]
                yield StoreEntry(
                    exchange=exchange_id,
                    symbol=symbol,
                    timeframe=match["tf"],
                    first=timestamps.iloc[0] if len(timestamps) else None,
                    last=timestamps.iloc[-1] if len(timestamps) else None,
                    bars=len(candles),
                    gaps=find_gaps(timestamps, match["tf"]),
                    path=path,
                )

    def _exchanges(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _EXCHANGE_ID.match(p.name))

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """Serialise read-merge-write of one file across processes (sync and import may overlap)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
