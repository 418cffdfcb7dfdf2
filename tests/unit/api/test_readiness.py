"""The runners' readiness behind `/readyz`: a runner whose probe fails in any way is not ready (never an exception
that leaves `/readyz` without an answer), a runner in this process is ready."""

from __future__ import annotations

import asyncio

import aiohttp

from signals.api.readiness import runner_ready


class Runner:
    """BentoML's remote proxy as the service sees it: `is_ready(timeout)`, here answering or failing as told."""

    def __init__(self, answer: bool | BaseException) -> None:
        self.answer = answer
        self.asked: list[int] = []

    async def is_ready(self, timeout: int) -> bool:
        self.asked.append(timeout)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def test_a_runner_that_answers_is_ready_or_not_as_it_says() -> None:
    ready, loading = Runner(True), Runner(False)
    assert asyncio.run(runner_ready(ready, 5)) is True
    assert asyncio.run(runner_ready(loading, 5)) is False
    assert ready.asked == loading.asked == [5]


def test_a_probe_that_fails_is_not_ready() -> None:
    # aiohttp's total timeout raises TimeoutError: BentoML 1.4.39's probe let exactly this escape
    for failure in (TimeoutError(), aiohttp.ClientConnectionError("refused"), OSError("reset")):
        assert asyncio.run(runner_ready(Runner(failure), 5)) is False


def test_a_runner_in_this_process_is_ready() -> None:
    assert asyncio.run(runner_ready(object(), 5)) is True
