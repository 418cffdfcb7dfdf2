"""Symbol spellings in, ccxt's ``BASE/QUOTE`` out; file stems come from the normalised form only."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from signals.core.errors import InvalidSymbol

# Longest first, so that BTCUSDT splits as BTC + USDT and not BTCUSD + T.
KNOWN_QUOTES: Final[tuple[str, ...]] = tuple(
    sorted(("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY"), key=len, reverse=True)
)
MAX_SYMBOL_LENGTH: Final = 32
_ASSET = r"[A-Z0-9]{1,20}"
_SEPARATED = re.compile(rf"^({_ASSET})[/_-]({_ASSET})$")
_JOINED = re.compile(rf"^({_ASSET})$")
_EXAMPLES = "BTC/USDT, BTCUSDT, BTC-USDT or btc_usdt"


def _any_case(text: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in text)


_QUOTES = "(" + "|".join(_any_case(q) for q in KNOWN_QUOTES) + ")"
# A regular expression every spelling `normalize_symbol` accepts without trimming matches (the request schemas
# publish and enforce it): BASE[/_-]QUOTE with BASE up to 20 characters, or BASEQUOTE up to 20 characters.
SYMBOL_PATTERN: Final = rf"^([A-Za-z0-9]{{1,20}}[/_-]{_QUOTES}|[A-Za-z0-9]{{1,15}}{_QUOTES})$"


def normalize_symbol(raw: str) -> str:
    """``BTC/USDT``, ``BTCUSDT``, ``BTC-USDT``, ``btc_usdt`` -> ``BTC/USDT``; anything else raises."""
    if not isinstance(raw, str) or not raw:
        raise InvalidSymbol(f"empty symbol; expected e.g. {_EXAMPLES}")
    if len(raw) > MAX_SYMBOL_LENGTH:
        raise InvalidSymbol(
            f"symbol is {len(raw)} characters long (max {MAX_SYMBOL_LENGTH}); expected e.g. {_EXAMPLES}"
        )
    # Reject non-ASCII before upper-casing: str.upper() maps some look-alikes onto ASCII letters.
    if not raw.isascii():
        raise InvalidSymbol(f"symbol {raw!r} has non-ASCII characters; expected e.g. {_EXAMPLES}")
    text = raw.strip().upper()
    if match := _SEPARATED.match(text):
        base, quote = match.groups()
        if quote not in KNOWN_QUOTES:
            raise InvalidSymbol(f"unknown quote currency {quote!r} in {raw!r}; accepted: {', '.join(KNOWN_QUOTES)}")
        return f"{base}/{quote}"
    if _JOINED.match(text):
        for quote in KNOWN_QUOTES:
            if text.endswith(quote) and len(text) > len(quote):
                return f"{text[: -len(quote)]}/{quote}"
        raise InvalidSymbol(f"cannot find a known quote currency at the end of {raw!r}; expected e.g. {_EXAMPLES}")
    raise InvalidSymbol(f"malformed symbol {raw!r}; expected e.g. {_EXAMPLES}")


# Markets the exchange renamed (Binance swapped MATIC for POL and FTM for S, 1:1): the current name -> the name its
# older candles are stored under. The current name is served and fetched live; the old one's stored history feeds it.
RENAMED: Final[Mapping[str, str]] = MappingProxyType({"POL/USDT": "MATIC/USDT", "S/USDT": "FTM/USDT"})
_CURRENT: Final[Mapping[str, str]] = MappingProxyType({old: new for new, old in RENAMED.items()})


def current_symbol(symbol: str) -> str:
    """The name a pair trades under now: ``MATIC/USDT`` -> ``POL/USDT``; any other pair normalised, unchanged."""
    normalized = normalize_symbol(symbol)
    return _CURRENT.get(normalized, normalized)


def history_symbols(symbol: str) -> tuple[str, ...]:
    """The names a pair's stored candles may be under, oldest first: ``POL/USDT`` -> (``MATIC/USDT``, ``POL/USDT``).

    An old name is its own history only (``MATIC/USDT`` -> (``MATIC/USDT``,)): what is stored under it stays as it is.
    """
    normalized = normalize_symbol(symbol)
    old = RENAMED.get(normalized)
    return (old, normalized) if old else (normalized,)


def symbol_stem(symbol: str) -> str:
    """File-name stem of a symbol: ``BTC/USDT`` -> ``BTC_USDT`` (always normalised first)."""
    return normalize_symbol(symbol).replace("/", "_")


def symbols_csv_pattern(most: int | None = None) -> str:
    """A comma-separated list of symbols (at most `most`), as a regular expression."""
    inner = SYMBOL_PATTERN[1:-1]
    repeat = "*" if most is None else f"{{0,{max(most - 1, 0)}}}"
    return f"^{inner}(,{inner}){repeat}$"
