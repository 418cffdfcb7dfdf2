"""A long-or-flat trading environment over candle histories, for training the PPO policy.

Each step the agent sees the (50, 10) observation of `features.ppo` that ends at the current bar's close
(built with the same `market_windows` + `observation` as serving, so the policy trains on what it will
serve on), picks HOLD, BUY or SELL, and the order fills at that close, worsened by slippage and charged a
fee on its notional. Equity is then marked to market at the next close and the reward is the change in
log equity, so the episode return is the log growth of the account and the fees of every trade count; an
optional `trade_penalty` per fill makes the policy cost-aware beyond that (turnover is what lost to flat).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from signals.core.settings import Settings
from signals.core.vocab import ACTION_NAMES, BUY, SELL
from signals.features.cnn import FIRST_VALID_ROW
from signals.features.ppo import (
    CLIP,
    FLAT,
    LONG_POSITION,
    PPO_LOOKBACK,
    PPO_MARKET_FEATURES,
    PPO_OBS_SHAPE,
    market_windows,
    observation,
)

logger = logging.getLogger(__name__)

# The costs default to the server's settings (one home: `Settings.fee`, `Settings.slippage`).
DEFAULT_FEE: Final[float] = Settings.model_fields["fee"].default
DEFAULT_SLIPPAGE: Final[float] = Settings.model_fields["slippage"].default
DEFAULT_MAX_STEPS: Final = 512
# Bar index (in the candle frame) of the first complete observation window's last bar.
FIRST_WINDOW_BAR: Final = FIRST_VALID_ROW + PPO_LOOKBACK - 1


@dataclass(frozen=True)
class SymbolHistory:
    """One symbol's complete market windows and the close of each window's last bar (same index)."""

    symbol: str
    windows: np.ndarray  # (n, 50, 9) float32
    closes: np.ndarray  # (n,) float64, the close of the bar each window ends at
    timestamps: pd.DatetimeIndex  # (n,) open time of that bar

    def __post_init__(self) -> None:
        n_market = len(PPO_MARKET_FEATURES)
        if self.windows.ndim != 3 or self.windows.shape[1:] != (PPO_LOOKBACK, n_market):
            raise ValueError(f"{self.symbol}: windows have shape {self.windows.shape}, expected (n, 50, {n_market})")
        if not (len(self.windows) == len(self.closes) == len(self.timestamps)):
            raise ValueError(f"{self.symbol}: windows, closes and timestamps differ in length")
        if not np.isfinite(self.windows).all() or not (np.isfinite(self.closes) & (self.closes > 0)).all():
            raise ValueError(f"{self.symbol}: windows or closes hold NaN, inf or non-positive prices")

    @classmethod
    def from_candles(cls, symbol: str, candles: pd.DataFrame) -> SymbolHistory:
        """Every complete window of a candle history; window k ends at candle row FIRST_WINDOW_BAR + k."""
        windows, ends = market_windows(candles)
        closes = candles["close"].to_numpy(dtype=np.float64)[FIRST_WINDOW_BAR:]
        return cls(symbol, windows, closes, ends)

    def __len__(self) -> int:
        return len(self.closes)

    def slice(self, start: int, stop: int | None = None) -> SymbolHistory:
        """Windows start..stop-1 (their earlier bars stay inside each window as context only)."""
        return SymbolHistory(
            self.symbol, self.windows[start:stop], self.closes[start:stop], self.timestamps[start:stop]
        )


def fill_price(close: float, side: int, slippage: float) -> float:
    """The price an order fills at: worse than the close by `slippage` in the order's direction."""
    return close * (1.0 + slippage) if side == BUY else close * (1.0 - slippage)


class TradingEnv(gym.Env[np.ndarray, np.integer]):
    """Long-or-flat trading over one or more symbol histories; one symbol per episode.

    Actions: HOLD=0, BUY=1 (opens a long when flat, else no-op), SELL=2 (closes the long, else no-op).
    Reset picks a symbol and a start bar uniformly with the env's seeded generator (or takes
    ``options={"symbol": ..., "start": ..., "position": 1.0}``, the last starting long as if bought at the
    start close without costs); an episode runs `max_steps` steps or to
    the last bar (``max_steps=None``), whichever comes first, and ends as truncated: a time limit, not a
    terminal state. The account starts flat with equity 1.0.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        histories: Sequence[SymbolHistory],
        *,
        fee: float = DEFAULT_FEE,
        slippage: float = DEFAULT_SLIPPAGE,
        max_steps: int | None = DEFAULT_MAX_STEPS,
        trade_penalty: float = 0.0,
    ) -> None:
        super().__init__()
        usable = [history for history in histories if len(history) >= 2]
        if not usable:
            raise ValueError("no symbol history has the 2 or more windows an episode needs")
        if not (0.0 <= fee < 1.0 and 0.0 <= slippage < 1.0):
            raise ValueError(f"fee ({fee}) and slippage ({slippage}) must be fractions in [0, 1)")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
        self.histories = {history.symbol: history for history in usable}
        if not 0.0 <= trade_penalty < 1.0:
            raise ValueError(f"trade_penalty ({trade_penalty}) must be a fraction in [0, 1)")
        self.fee, self.slippage, self.max_steps = fee, slippage, max_steps
        self.trade_penalty = trade_penalty
        self.observation_space = spaces.Box(low=-CLIP, high=CLIP, shape=PPO_OBS_SHAPE, dtype=np.float32)
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        self._history = usable[0]
        self._index = self._start = 0
        self._cash, self._units = 1.0, 0.0
        self.trades = 0

    @property
    def position(self) -> float:
        return LONG_POSITION if self._units > 0 else FLAT

    @property
    def equity(self) -> float:
        """Account value marked to market at the current bar's close (no exit costs deducted)."""
        return self._cash + self._units * float(self._history.closes[self._index])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = options or {}
        symbols = sorted(self.histories)
        symbol = options.get("symbol", symbols[int(self.np_random.integers(len(symbols)))])
        if symbol not in self.histories:
            raise ValueError(f"unknown symbol {symbol!r}; this env holds {symbols}")
        self._history = self.histories[symbol]
        last_start = len(self._history) - 2
        start = int(options.get("start", self.np_random.integers(last_start + 1)))
        if not 0 <= start <= last_start:
            raise ValueError(f"start {start} is outside 0..{last_start} for {symbol}")
        self._index = self._start = start
        self._cash, self._units, self.trades = 1.0, 0.0, 0
        if float(options.get("position", FLAT)) == LONG_POSITION:
            self._units = 1.0 / float(self._history.closes[start])
            self._cash = 0.0
        return self._observation(), self._info()

    def step(self, action: np.integer | int) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action {action} is not one of {dict(enumerate(ACTION_NAMES))}")
        before, trades = self.equity, self.trades
        self._execute(action)
        self._index += 1
        # The log growth of the account, which already pays fees and slippage; the penalty on top makes turnover
        # cost more than it does, so that the policy trades only where the move should outrun its costs.
        reward = math.log(self.equity / before) - self.trade_penalty * (self.trades - trades)
        at_end = self._index >= len(self._history) - 1
        out_of_steps = self.max_steps is not None and self._index - self._start >= self.max_steps
        return self._observation(), reward, False, at_end or out_of_steps, self._info()

    def liquidate(self) -> float:
        """Sell an open long at the current close (with costs) and return the equity after it."""
        if self._units > 0:
            self._execute(SELL)
        return self._cash

    def _execute(self, action: int) -> None:
        close = float(self._history.closes[self._index])
        if action == BUY and self._units == 0:
            self._units = self._cash * (1.0 - self.fee) / fill_price(close, BUY, self.slippage)
            self._cash = 0.0
            self.trades += 1
        elif action == SELL and self._units > 0:
            self._cash = self._units * fill_price(close, SELL, self.slippage) * (1.0 - self.fee)
            self._units = 0.0
            self.trades += 1

    def _observation(self) -> np.ndarray:
        return observation(self._history.windows[self._index], self.position)

    def _info(self) -> dict[str, Any]:
        return {
            "symbol": self._history.symbol,
            "index": self._index,
            "timestamp": self._history.timestamps[self._index],
            "close": float(self._history.closes[self._index]),
            "position": self.position,
            "equity": self.equity,
            "trades": self.trades,
        }
