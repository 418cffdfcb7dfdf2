"""A clock that tests move (signals.core.clock.Clock): a candle close, a lease's expiry or a retry's backoff is reached
by advancing time, never by waiting for it."""

from __future__ import annotations

import asyncio

import pandas as pd


class FakeClock:
    """Time that stands still until moved.

    `advance` moves it. `sleep(seconds)` records the wait and, with `autojump` (the default), moves the clock to the
    moment it ends at once: a loop that waits for the next candle close wakes exactly at that close, in no time.
    Without `autojump` time stands still through waits (several workers polling one lease at the same instant); the
    wait then only lets the event loop run the others for a moment.
    """

    def __init__(self, start: pd.Timestamp | str, *, autojump: bool = True) -> None:
        self._now = pd.Timestamp(start)
        if self._now.tzinfo is None:
            raise ValueError(f"a FakeClock starts at a UTC time, not the naive {self._now}")
        self.autojump = autojump
        self.sleeps: list[tuple[pd.Timestamp, float]] = []  # (when, how long) of every wait asked for

    def now(self) -> pd.Timestamp:
        return self._now

    def advance(self, seconds: float) -> pd.Timestamp:
        if seconds < 0:
            raise ValueError(f"time only moves forward, not by {seconds} s")
        self._now += pd.Timedelta(seconds=seconds)
        return self._now

    def advance_to(self, moment: pd.Timestamp) -> pd.Timestamp:
        return self.advance(max(0.0, (moment - self._now).total_seconds()))

    def ms(self) -> int:
        return int(self._now.value // 1_000_000)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append((self._now, seconds))
        if self.autojump:
            self.advance(max(0.0, seconds))
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(min(max(seconds, 0.0), 0.01))
