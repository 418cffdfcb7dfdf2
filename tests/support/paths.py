"""Where the repository and the real candles of ../shared/data are, and how a test reads them."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("SIGNALS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SHARED_OHLCV = SHARED_DATA / "ohlcv"


def shared_candles(symbol_stem: str, timeframe: str, folder: str = "ohlcv") -> pd.DataFrame:
    """Real candles from ../shared/data, validated; skips the calling test where the folder is absent."""
    from signals.data.candles import validate_candles

    path = SHARED_DATA / folder / f"{symbol_stem}-{timeframe}.parquet"
    if not path.is_file():
        pytest.skip(f"real data not available: {path} is absent (set SIGNALS_SHARED_DATA to ../shared/data)")
    return validate_candles(pd.read_parquet(path), timeframe)
