"""A circuit breaker for one exchange: after `failures` consecutive failed fetches, fail fast for `cooldown_s`,
then let one probe through (half-open); its success closes the circuit, its failure opens it again.

While the exchange is down, a request then answers 503 with `Retry-After` at once instead of waiting through
ccxt's retries, and the exchange is not hammered by every request. A small class of our own: the libraries that
offer one (pybreaker, aiobreaker) wrap calls synchronously or pull in Tornado, and this is twenty lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from signals.core.errors import ExchangeUnavailable

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self, name: str, *, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.failures_to_open = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state: State = "closed"
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.last_error: str | None = None
        self.probing = False
        self.opened_count = 0

    def before_call(self) -> None:
        """Raise ExchangeUnavailable (503, Retry-After: the cooldown left) while open; let one probe through after.
        The message names no pair: the last failure was another pair's (health shows it, `last_error`)."""
        if self.state == "closed":
            return
        now = self.clock()
        left = (self.opened_at or now) + self.cooldown_s - now
        if self.state == "open" and left <= 0:
            self.state, self.probing = "half_open", False
        if self.state == "half_open" and not self.probing:
            self.probing = True  # this call is the probe
            return
        raise ExchangeUnavailable(
            f"{self.name} is failing ({self.consecutive_failures} failed fetches in a row); "
            f"not asking it again for {max(left, 1.0):.0f} s",
            retry_after_s=max(left, 1.0),
        )

    def success(self) -> None:
        self.state, self.consecutive_failures, self.probing, self.opened_at = "closed", 0, False, None

    def failure(self, error: BaseException) -> None:
        self.consecutive_failures += 1
        self.last_error = " ".join(str(error).split())[:200]
        if self.state == "half_open" or self.consecutive_failures >= self.failures_to_open:
            if self.state != "open":
                self.opened_count += 1
            self.state, self.opened_at, self.probing = "open", self.clock(), False

    @property
    def degraded(self) -> bool:
        return self.state != "closed" or self.consecutive_failures > 0

    def status(self) -> dict[str, Any]:
        left = None
        if self.state == "open" and self.opened_at is not None:
            left = round(max(0.0, self.opened_at + self.cooldown_s - self.clock()), 1)
        return {
            "state": self.state,
            "degraded": self.degraded,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "retry_in_s": left,
            "times_opened": self.opened_count,
        }
