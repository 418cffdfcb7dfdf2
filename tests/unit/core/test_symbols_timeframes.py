"""Symbols are accepted in four spellings and normalised to ccxt's form; anything else is refused in one line."""

from __future__ import annotations

import pytest

from signals.core.errors import InvalidInput, InvalidSymbol, InvalidTimeframe
from signals.core.settings import DEFAULT_UNIVERSE, Settings
from signals.core.symbols import RENAMED, current_symbol, history_symbols, normalize_symbol, symbol_stem
from signals.core.timeframes import parse_timeframe, timeframe_seconds


@pytest.mark.parametrize("spelling", ["BTC/USDT", "BTCUSDT", "BTC-USDT", "btc_usdt", "btcusdt", " BTC/USDT "])
def test_accepted_spellings_normalise_to_ccxt_form(spelling: str) -> None:
    assert normalize_symbol(spelling) == "BTC/USDT"


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [("ETHBTC", "ETH/BTC"), ("1000SATS-USDT", "1000SATS/USDT"), ("pepe_usdt", "PEPE/USDT"), ("SOLUSDC", "SOL/USDC")],
)
def test_other_pairs_split_on_the_known_quote(spelling: str, expected: str) -> None:
    assert normalize_symbol(spelling) == expected


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        ("../../etc/passwd", "malformed"),
        ("", "empty"),
        ("B" * 200, "characters long"),
        ("ＢＴＣ/USDT", "non-ASCII"),  # fullwidth letters upper-case onto ASCII look-alikes
        ("BTC/USDT\u200b", "non-ASCII"),  # zero-width space
        ("BTC/XYZ", "unknown quote"),
        ("BTC", "known quote"),
        ("USDT", "known quote"),
        ("BTC//USDT", "malformed"),
        ("BTC/USDT/ETH", "malformed"),
        ("BTC USDT", "malformed"),
        ("BTC/USDT;rm", "malformed"),
    ],
)
def test_everything_else_is_refused_with_a_one_line_reason(hostile: str, reason: str) -> None:
    with pytest.raises(InvalidSymbol) as caught:
        normalize_symbol(hostile)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    assert isinstance(caught.value, InvalidInput)


def test_file_stem_comes_from_the_normalised_symbol_only() -> None:
    assert symbol_stem("btc-usdt") == "BTC_USDT"
    with pytest.raises(InvalidSymbol):
        symbol_stem("../BTC_USDT")


def test_timeframes_are_validated_and_sized() -> None:
    assert parse_timeframe("1h") == "1h"
    assert timeframe_seconds("15m") == 900
    assert timeframe_seconds("1d") == 86400
    with pytest.raises(InvalidTimeframe, match="accepted: 1m, 5m, 15m"):
        parse_timeframe("3h")


@pytest.mark.parametrize(
    ("spelling", "current", "history"),
    [
        ("MATICUSDT", "POL/USDT", ("MATIC/USDT",)),  # the old name's file is its own history, as stored
        ("pol-usdt", "POL/USDT", ("MATIC/USDT", "POL/USDT")),  # the current name reads the old one first
        ("FTM/USDT", "S/USDT", ("FTM/USDT",)),
        ("SUSDT", "S/USDT", ("FTM/USDT", "S/USDT")),
        ("BTCUSDT", "BTC/USDT", ("BTC/USDT",)),
    ],
)
def test_renamed_pairs_trade_under_the_new_name_and_keep_the_old_one_as_history(
    spelling: str, current: str, history: tuple[str, ...]
) -> None:
    assert current_symbol(spelling) == current
    assert history_symbols(spelling) == history
    assert {RENAMED[new] for new in RENAMED} == {"MATIC/USDT", "FTM/USDT"}


def test_the_default_universe_names_pairs_as_they_trade_now_and_old_names_in_settings_read_as_new() -> None:
    assert {"POL/USDT", "S/USDT"} <= set(DEFAULT_UNIVERSE) and len(DEFAULT_UNIVERSE) == 34
    assert not {"MATIC/USDT", "FTM/USDT"} & set(DEFAULT_UNIVERSE)
    configured = Settings(universe=["maticusdt", "POL/USDT", "ftm-usdt", "BTC/USDT", "not a pair"])
    assert configured.universe == ["POL/USDT", "S/USDT", "BTC/USDT", "not a pair"]  # a bad entry stays, to be named
