"""Framework floors in BentoML: what a trivial batchable endpoint costs here, alone and across one hop.

`EchoFloor` is a single service whose `/predict` is batchable (`batchable=True` means one parameter, a
list; the caller sends the batch dimension: `{"requests": [{"symbol": ..., "timeframe": ...}]}`).
`HopFloor` has our service's shape: an async API service taking `{symbol, timeframe}` that awaits a batchable
dependency through `bentoml.depends`. Both use the settings DESIGN.md prescribes (traffic timeout 10 s;
`runner_connection` fix for upstream issue #5540 on the dependency), so they measure the framework, not a
known pitfall.

Run: `bentoml serve bench.baselines.floor_bentoml:EchoFloor` (or `:HopFloor`).
"""

from __future__ import annotations

import bentoml
from pydantic import BaseModel, ConfigDict

MAX_BATCH_SIZE = 64
MAX_LATENCY_MS = 1000


class EchoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str
    timeframe: str


class EchoAnswer(BaseModel):
    symbol: str
    timeframe: str
    probabilities: dict[str, float]


def _answer(request: EchoRequest) -> EchoAnswer:
    return EchoAnswer(
        symbol=request.symbol, timeframe=request.timeframe, probabilities={"SHORT": 0.2, "NO_TRADE": 0.5, "LONG": 0.3}
    )


@bentoml.service(name="floor_echo", traffic={"timeout": 10}, workers=1)
class EchoFloor:
    @bentoml.api(route="/predict", batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, requests: list[EchoRequest]) -> list[EchoAnswer]:
        """Echo each request with fixed probabilities: no model, only the framework's batching path."""
        return [_answer(r) for r in requests]


@bentoml.service(
    name="floor_echo_runner",
    traffic={"timeout": 10},
    runner_connection={"max_requests": 10**9, "max_age": 1e9},
    workers=1,
)
class EchoRunner:
    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def echo(self, requests: list[EchoRequest]) -> list[EchoAnswer]:
        return [_answer(r) for r in requests]


@bentoml.service(name="floor_hop", traffic={"timeout": 10}, workers=1)
class HopFloor:
    runner = bentoml.depends(EchoRunner)

    @bentoml.api(route="/predict")
    async def predict(self, symbol: str, timeframe: str) -> EchoAnswer:
        """Our service's shape with nothing inside: async API -> batchable dependency -> answer."""
        (answer,) = await self.runner.to_async.echo([EchoRequest(symbol=symbol, timeframe=timeframe)])
        return EchoAnswer.model_validate(answer) if isinstance(answer, dict) else answer
