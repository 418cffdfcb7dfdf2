"""The request budget: a request that has not started answering within `SIGNALS_REQUEST_BUDGET_S` is cancelled and
answered by the edge (503 + Retry-After, or 408 while its body is still arriving), before BentoML's `traffic.timeout`
answers 504 outside the one error shape.

One watcher per event loop looks at the requests in flight a few times per budget, instead of a timer per request
(`asyncio.timeout` schedules and cancels two timer handles per request: most of the edge's cost on a warm request).
The deadline is therefore met within `tick_s`, well inside the gap between the budget and BentoML's timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Ticket:
    """One request in flight: its task, its deadline, and whether it answered or ran out of time."""

    task: asyncio.Task[object]
    deadline: float
    answered: bool = False
    expired: bool = False


@dataclass
class Budget:
    """Tickets in the order they were issued (with one budget, the order of their deadlines) and their watcher."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    tick_s: float = field(init=False)
    tickets: dict[Ticket, None] = field(init=False, default_factory=dict)
    _watcher: asyncio.Task[None] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.tick_s = min(0.5, self.seconds / 8)

    def issue(self) -> Ticket:
        """A ticket for the request running in the current task (its watcher started on this loop if needed)."""
        task = asyncio.current_task()
        assert task is not None, "the budget is issued inside a request's task"
        if self._watcher is None or self._watcher.done() or self._watcher.get_loop() is not task.get_loop():
            self.tickets.clear()  # a new loop (tests start one per client): the old one's requests are gone
            self._watcher = asyncio.ensure_future(self._watch())
        ticket = Ticket(task, self.clock() + self.seconds)
        self.tickets[ticket] = None
        return ticket

    def settle(self, ticket: Ticket) -> None:
        """The request answered (or ended): no longer watched."""
        ticket.answered = True
        self.tickets.pop(ticket, None)

    def expire_due(self) -> int:
        """Cancel every request past its deadline; how many."""
        now, due = self.clock(), []
        for ticket in self.tickets:
            if ticket.deadline > now:
                break
            due.append(ticket)
        for ticket in due:
            del self.tickets[ticket]
            ticket.expired = True
            ticket.task.cancel()
        return len(due)

    async def _watch(self) -> None:
        """Until no request is in flight (the next request starts it again)."""
        while self.tickets:
            await asyncio.sleep(self.tick_s)
            self.expire_due()
