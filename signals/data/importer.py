"""Import candle files (Parquet or CSV in the format of ../shared/data/README.md) into the store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from signals.data.candles import CANDLE_COLUMNS, validate_candles
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import parse_timeframe
from signals.core.errors import CandleDataError, InvalidInput

_NAME = re.compile(r"^(?P<symbol>[A-Za-z0-9]+[_-][A-Za-z0-9]+)-(?P<tf>[0-9]+[mhd])$")


@dataclass(frozen=True)
class CandleFile:
    path: Path
    symbol: str
    timeframe: str
    candles: pd.DataFrame


def identify(path: Path, symbol: str | None = None, timeframe: str | None = None) -> tuple[str, str]:
    """Symbol and timeframe from options, else from a `<BASE>_<QUOTE>-<tf>.<ext>` file name."""
    match = _NAME.match(path.stem)
    if (symbol is None or timeframe is None) and not match:
        raise InvalidInput(
            f"cannot tell symbol and timeframe from file name {path.name!r}; "
            "name it like BTC_USDT-1h.parquet or pass --symbol and --timeframe"
        )
    resolved_symbol = normalize_symbol(symbol if symbol is not None else match["symbol"])  # type: ignore[index]
    resolved_tf = parse_timeframe(timeframe if timeframe is not None else match["tf"])  # type: ignore[index]
    return resolved_symbol, resolved_tf


def read_candle_file(path: Path, symbol: str | None = None, timeframe: str | None = None) -> CandleFile:
    """Read and validate one file; raises with the file name in the message."""
    resolved_symbol, resolved_tf = identify(path, symbol, timeframe)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            raw = pd.read_parquet(path)
        elif suffix == ".csv":
            raw = _read_csv(path)
        else:
            raise InvalidInput(f"{path.name}: unsupported file type {suffix!r}; accepted: .parquet, .csv")
        candles = validate_candles(raw, resolved_tf)
    except (CandleDataError, InvalidInput) as error:
        raise type(error)(f"{path.name}: {error}") from error
    except (OSError, ValueError) as error:
        raise CandleDataError(f"{path.name}: unreadable candle file ({error})") from error
    return CandleFile(path, resolved_symbol, resolved_tf, candles)


def _read_csv(path: Path) -> pd.DataFrame:
    """CSV with the Parquet columns; `timestamp` as ISO-8601 (UTC if no offset) or epoch milliseconds."""
    raw = pd.read_csv(path)
    missing = [c for c in CANDLE_COLUMNS if c not in raw.columns]
    if missing:
        raise CandleDataError(f"CSV lacks columns {missing}; expected {list(CANDLE_COLUMNS)}")
    stamps = raw["timestamp"]
    if pd.api.types.is_numeric_dtype(stamps):
        raw["timestamp"] = pd.to_datetime(stamps, unit="ms", utc=True)
    else:
        raw["timestamp"] = pd.to_datetime(stamps, utc=True, format="ISO8601")
    return raw
