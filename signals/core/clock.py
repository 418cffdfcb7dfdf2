"""Time as a dependency: what the candle-close loop (its leases, its backoffs, and through the engine's clock the
outcomes it resolves) and the alert sender (due times, retries) read and wait on.

Production runs on `SystemClock`. Tests hand those parts a clock they move (tests/support/clock.py), so that a test
reaches a candle close or a retry's backoff by advancing time instead of sleeping through it. A server started by an
end-to-end test may run on the wall clock shifted by `SIGNALS_CLOCK_OFFSET_S` (tests only): away from a candle
close for as long as the test runs, whatever the time of day.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import pandas as pd


class Clock(Protocol):
    """Now, and a wait that ends at now + seconds on this clock."""

    def now(self) -> pd.Timestamp:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class SystemClock:
    """The wall clock, shifted by `offset_s` (0 in production)."""

    offset_s: float = 0.0

    def now(self) -> pd.Timestamp:
        now = pd.Timestamp.now(tz="UTC")
        return now + pd.Timedelta(seconds=self.offset_s) if self.offset_s else now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def epoch_ms(clock: Clock) -> int:
    """The clock's now in milliseconds since the epoch (the ledger's time unit)."""
    return int(clock.now().value // 1_000_000)
