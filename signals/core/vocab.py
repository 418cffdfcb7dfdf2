"""The two vocabularies every floor speaks: the classifier's classes and the policy's actions.

Their order is part of the model contract: a CNN-LSTM's output column i is CLASS_NAMES[i], a PPO action id is
an index into ACTION_NAMES. Both are stored in each model's metadata and checked at load.
"""

from __future__ import annotations

from typing import Final

SHORT: Final = 0
NO_TRADE: Final = 1
LONG: Final = 2
CLASS_NAMES: Final[tuple[str, ...]] = ("SHORT", "NO_TRADE", "LONG")

HOLD: Final = 0
BUY: Final = 1
SELL: Final = 2
ACTION_NAMES: Final[tuple[str, ...]] = ("HOLD", "BUY", "SELL")
