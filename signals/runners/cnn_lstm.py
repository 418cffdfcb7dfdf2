"""The CNN-LSTM runner: every (symbol, timeframe) model of the configured universe, behind one batchable API.

The model work is `signals.models.local.LocalCnnLstm` (stacked forward passes, versions loaded on request, NaN
rows for what is not loaded); this service adds BentoML's adaptive batching across requests, the batch counters
(the batching proof) and the status route.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import bentoml

from signals.contract.wire import WindowRequest
from signals.core.settings import Settings, get_settings
from signals.models.families import CNN_LSTM
from signals.runners.common import (
    RUNNER_SERVICE_CONFIG,
    ModelRunner,
    ProbabilityRows,
    RunnerStatus,
    batching_options,
    declare_stored,
    declared_tag,
)

if TYPE_CHECKING:  # torch: imported when the runner starts, so that the API process and the arbiter never import it
    from signals.models.local import LocalCnnLstm


class _CnnLstmRunner(ModelRunner):
    """Loads the latest version of each configured CNN-LSTM present in the store, verified, once at start."""

    local: LocalCnnLstm

    def __init__(self, settings: Settings | None = None) -> None:
        from signals.models.local import LocalCnnLstm

        declared = getattr(type(self), "_declared", ())
        local = LocalCnnLstm(settings or get_settings(), names=declared, tag_of=lambda name: declared_tag(self, name))
        self._start(local)

    @bentoml.api(**batching_options(get_settings()))
    async def predict(self, requests: list[WindowRequest]) -> ProbabilityRows:
        """(SHORT, NO_TRADE, LONG) probabilities per request, in request order; NaN row = model not loaded."""
        self.counters.record(len(requests))
        return await self._forward(requests)

    @bentoml.api
    async def predict_many(self, requests: list[WindowRequest]) -> ProbabilityRows:
        """The same answers, without the batching queue: for a caller that already holds a batch (`/batch`).

        Queued behind single requests, a 34-window call would wait for the dispatcher and fill its batches alone;
        BentoML's dispatcher also learns its wait from such queueing, which slows later lone requests.
        """
        return await self._forward(requests)

    async def _forward(self, requests: list[WindowRequest]) -> list[list[float]]:
        """The forward pass on the event loop when every model it names is in memory, else in a thread.

        A sync API method ran in BentoML's one-thread pool: a hand-off there and back for a forward pass of ~0.35 ms
        (batch 1), and the GIL contended between the loop and the thread on 2 cores. One thread ran one call at a time
        anyway, so the loop loses no concurrency. A version named for the first time is read from the store (file
        I/O, verification): that call goes to a thread, so the loop keeps answering meanwhile.
        """
        if all(self.local.settled(request.model) for request in requests):
            return self.local.forward(requests)
        return await asyncio.to_thread(self.local.forward, requests)

    @bentoml.api
    def status(self) -> RunnerStatus:
        """Loaded models (name -> tag), refused ones (name -> reason), device, and batching counters."""
        return self._status()


CnnLstmRunner = bentoml.service(name="cnn_lstm_runner", **RUNNER_SERVICE_CONFIG)(
    declare_stored(CNN_LSTM, get_settings())(_CnnLstmRunner)
)
