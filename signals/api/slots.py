"""Where a service puts what it builds at start, for ASGI apps that were mounted before it existed.

BentoML mounts the compatibility and web apps when the service class is declared, and builds the engine and the
push hub when a worker starts: the apps are given a slot (dependency injection) and read it per request. A
stack, not a variable: a second service instance in the same process (tests do this) binds its own and releases
it on shutdown, and the first one's is current again.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from fastapi import HTTPException

T = TypeVar("T")
STARTING_RETRY_AFTER_S = 5


class Slot(Generic[T]):
    def __init__(self, what: str) -> None:
        self.what = what
        self._items: list[T] = []

    def bind(self, item: T) -> None:
        self._items.append(item)

    def release(self, item: T) -> None:
        if item in self._items:
            self._items.remove(item)

    def current(self) -> T | None:
        """The current item, or None while the service is starting."""
        return self._items[-1] if self._items else None

    def __call__(self) -> T:
        """The current item; 503 with Retry-After while the service is starting (or has none)."""
        if not self._items:
            raise HTTPException(
                503,
                f"{self.what} is not available yet; retry in a few seconds",
                {"Retry-After": str(STARTING_RETRY_AFTER_S)},
            )
        return self._items[-1]
