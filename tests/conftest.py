"""Shared fixtures. BENTOML_HOME points at a per-session temp dir before anything touches the model store
(BentoML resolves its home once, lazily, then caches it), so tests never read or write ~/bentoml."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest

# Tests state their own configuration: a developer's SIGNALS_* environment must not leak into them.
for _name in [n for n in os.environ if n.startswith("SIGNALS_") and n != "SIGNALS_SHARED_DATA"]:
    del os.environ[_name]
_SESSION_HOME = tempfile.mkdtemp(prefix="signals-bentoml-home-")
os.environ["BENTOML_HOME"] = _SESSION_HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SIGNALS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SHARED_OHLCV = SHARED_DATA / "ohlcv"


def shared_candles(symbol_stem: str, timeframe: str, folder: str = "ohlcv") -> pd.DataFrame:
    """Real candles from ../shared/data, validated; skips the calling test where the folder is absent."""
    from signals.data.candles import validate_candles

    path = SHARED_DATA / folder / f"{symbol_stem}-{timeframe}.parquet"
    if not path.is_file():
        pytest.skip(f"real data not available: {path} is absent (set SIGNALS_SHARED_DATA to ../shared/data)")
    return validate_candles(pd.read_parquet(path), timeframe)


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return Path(_SESSION_HOME)
