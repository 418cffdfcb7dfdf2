"""Small fakes: the runner ports (`signals.contract.wire`) answering fixed numbers, and metrics kept apart."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import REGISTRY

from signals.contract.wire import ActionRow, ObservationRequest, WindowRequest


@dataclass
class FakeCnnLstm:
    """Answers `probabilities` to every window; `calls` holds (method, number of windows) per call."""

    probabilities: Sequence[float] = (0.2, 0.5, 0.3)
    calls: list[tuple[str, int]] = field(default_factory=list)
    requests: list[WindowRequest] = field(default_factory=list)

    async def predict(self, requests: list[WindowRequest]) -> list[list[float]]:
        return self._answer("predict", requests)

    async def predict_many(self, requests: list[WindowRequest]) -> list[list[float]]:
        return self._answer("predict_many", requests)

    def _answer(self, method: str, requests: list[WindowRequest]) -> list[list[float]]:
        self.calls.append((method, len(requests)))
        self.requests.extend(requests)
        return [list(self.probabilities) for _ in requests]


@dataclass
class FakePpo:
    """Answers `row` to every observation, or fails the test when the PPO must not be called."""

    row: ActionRow | None = None
    requests: list[ObservationRequest] = field(default_factory=list)

    async def act(self, requests: list[ObservationRequest]) -> list[ActionRow]:
        if self.row is None:
            raise AssertionError("the PPO runner is not part of this request")
        self.requests.extend(requests)
        return [self.row for _ in requests]


@contextmanager
def separate_metrics() -> Iterator[None]:
    """Let a second service app start in this process: BentoML registers its HTTP metrics in prometheus_client's
    process-wide REGISTRY, once. The first app's collectors step aside and come back afterwards."""
    ours = [
        collector
        for collector in list(REGISTRY._collector_to_names)  # the registry lists its collectors only here
        if any(name.startswith("bentoml_") for name in REGISTRY._collector_to_names[collector])
    ]
    for collector in ours:
        REGISTRY.unregister(collector)
    try:
        yield
    finally:
        for collector in [c for c in list(REGISTRY._collector_to_names) if c not in ours]:
            if any(name.startswith("bentoml_") for name in REGISTRY._collector_to_names[collector]):
                REGISTRY.unregister(collector)
        for collector in ours:
            REGISTRY.register(collector)
