"""The background loops' waiting and stopping: a stop always ends a loop, even when a wake-up lands with it, and a
shutdown is bounded even by a loop that ignores its stop."""

from __future__ import annotations

import asyncio

from signals.core.background import get_within, stop_task, wait_event, within


async def _wake_loop(wake: asyncio.Event, turns: list[int]) -> None:
    """The shape of the push tail and the alert sender: wait for a poke or the poll interval, work, repeat."""
    while True:
        await wait_event(wake, timeout_s=5)
        wake.clear()
        turns.append(1)
        await asyncio.sleep(0)


def test_a_stop_that_lands_with_a_wake_up_ends_the_loop() -> None:
    """asyncio.wait_for on Python 3.11 returns the result here and the loop runs on (the shutdown hung in CI)."""

    async def go() -> tuple[bool, bool]:
        wake = asyncio.Event()
        task = asyncio.create_task(_wake_loop(wake, []))
        await asyncio.sleep(0.01)
        wake.set()  # a poke from the ledger writer ...
        await asyncio.sleep(0)  # ... completes the loop's wait ...
        task.cancel()  # ... as the server stops
        done, _ = await asyncio.wait({task}, timeout=2)
        return bool(done), task.cancelled()

    assert asyncio.run(go()) == (True, True)


def test_wait_event_says_whether_the_event_came_before_the_timeout() -> None:
    async def go() -> tuple[bool, bool]:
        event = asyncio.Event()
        quiet = await wait_event(event, timeout_s=0.01)
        asyncio.get_running_loop().call_later(0.01, event.set)
        return quiet, await wait_event(event, timeout_s=2)

    assert asyncio.run(go()) == (False, True)


def test_get_within_gives_the_next_item_or_none_after_the_timeout_and_loses_nothing() -> None:
    async def go() -> list[int | None]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        empty = await get_within(queue, 0.01)
        queue.put_nowait(1)
        queue.put_nowait(2)
        return [empty, await get_within(queue, 1), await get_within(queue, 1), queue.qsize()]

    assert asyncio.run(go()) == [None, 1, 2, 0]


def test_within_raises_timeout_and_leaves_a_shielded_task_running() -> None:
    async def go() -> tuple[str, int]:
        slow = asyncio.create_task(asyncio.sleep(0.05, result=7))
        try:
            await within(asyncio.shield(slow), 0.01)
            outcome = "answered"
        except TimeoutError:
            outcome = "timed out"
        return outcome, await slow

    assert asyncio.run(go()) == ("timed out", 7)


def test_stop_task_is_bounded_even_for_a_loop_that_ignores_its_stop() -> None:
    async def stubborn(release: asyncio.Event) -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue  # the bug this bound guards against

    async def go() -> tuple[bool, bool, bool]:
        release = asyncio.Event()
        task = asyncio.create_task(stubborn(release))
        await asyncio.sleep(0)
        left = await stop_task(task, timeout_s=0.1)
        release.set()
        await task
        polite = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        return left, await stop_task(polite, timeout_s=1), await stop_task(None)

    assert asyncio.run(go()) == (False, True, True)
