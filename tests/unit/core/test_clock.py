"""The clock the server runs on, and the one tests move."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from signals.core.clock import SYSTEM_CLOCK, Clock, SystemClock, epoch_ms
from tests.support.clock import FakeClock


def test_the_system_clock_is_the_wall_clock_shifted_by_its_offset() -> None:
    before = pd.Timestamp.now(tz="UTC")
    now, shifted = SYSTEM_CLOCK.now(), SystemClock(offset_s=-600).now()
    after = pd.Timestamp.now(tz="UTC")
    assert before <= now <= after and str(now.tz) == "UTC"
    assert before - pd.Timedelta(minutes=10) <= shifted <= after - pd.Timedelta(minutes=10)


def test_a_fake_clock_moves_only_when_told_and_waits_take_no_wall_time() -> None:
    clock: Clock = FakeClock("2026-11-20 10:00:00Z")
    assert isinstance(clock, FakeClock)
    assert clock.now() == clock.now() == pd.Timestamp("2026-11-20 10:00:00", tz="UTC")
    assert epoch_ms(clock) == clock.ms() == 1_795_168_800_000
    clock.advance(90)
    assert clock.now() == pd.Timestamp("2026-11-20 10:01:30", tz="UTC")
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)

    async def wait_an_hour() -> None:
        await clock.sleep(3600)

    asyncio.run(asyncio.wait_for(wait_an_hour(), timeout=5))  # an hour on the clock, no wall time
    assert clock.now() == pd.Timestamp("2026-11-20 11:01:30", tz="UTC")
    assert clock.sleeps == [(pd.Timestamp("2026-11-20 10:01:30", tz="UTC"), 3600)]


def test_a_frozen_fake_clock_stands_still_through_waits() -> None:
    clock = FakeClock("2026-11-20 10:00:00Z", autojump=False)
    asyncio.run(clock.sleep(120))
    assert clock.now() == pd.Timestamp("2026-11-20 10:00:00", tz="UTC") and clock.sleeps[0][1] == 120
    with pytest.raises(ValueError, match="naive"):
        FakeClock("2026-11-20 10:00:00")
