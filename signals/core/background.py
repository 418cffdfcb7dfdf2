"""Waiting and stopping for the server's background loops (push tail, alert sender, candle-close scheduler).

Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives as the awaited thing completes (it
returns the result instead of raising, cpython gh-86296, fixed in 3.12 by building it on `asyncio.timeout`). A loop
that waits for a wake-up that way can miss its stop when a poke lands at the same moment, run on, and hang the
shutdown that awaits it. `asyncio.timeout` raises the cancellation as it should; stopping is bounded as well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
STOP_TIMEOUT_S = 10.0


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passed; True when it was set. A cancellation always propagates."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def get_within(queue: asyncio.Queue[T], timeout_s: float) -> T | None:
    """The next item of `queue`, or None after `timeout_s` (the queue never holds None). Cancellation propagates."""
    try:
        async with asyncio.timeout(timeout_s):
            return await queue.get()
    except TimeoutError:
        return None


async def within(awaitable: Awaitable[T], timeout_s: float) -> T:
    """`awaitable`'s result, TimeoutError after `timeout_s`; the caller's cancellation propagates."""
    async with asyncio.timeout(timeout_s):
        return await awaitable


async def stop_task(task: asyncio.Task[None] | None, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Cancel a background loop and wait for it, at most `timeout_s`: a shutdown never hangs on one loop.

    True when it ended; a loop that ignores its cancellation is logged and left behind (the process is stopping)."""
    if task is None or task.done():
        return True
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        logger.error("background task %s did not stop within %.0f s; leaving it", task.get_name(), timeout_s)
        return False
    if not task.cancelled() and task.exception() is not None:
        logger.warning("background task %s ended with %r", task.get_name(), task.exception())
    return True
