"""The ceiling for the model part: in-process forward throughput of one stored CNN-LSTM and the PPO policy.

No HTTP, no features, no batching wait: `predict_proba` (scaler + network + softmax) on ready windows, one
torch thread (as the runners run). Whatever a served request costs beyond this is serving overhead.
Needs `BENTOML_HOME` pointing at the benchmark's store before it is imported (see `bench.setup_world`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

CNN_BATCHES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
PPO_BATCHES: tuple[int, ...] = (1, 64)
MIN_SECONDS = 0.25
MIN_CALLS = 5


def _time_calls(call: Callable[[], Any], min_seconds: float) -> dict[str, float]:
    """Median ms per call over repeated calls (at least `min_seconds` and MIN_CALLS), after 3 warm-up calls."""
    for _ in range(3):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < MIN_CALLS or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return {"ms_per_call": round(float(np.median(times)), 4), "calls": len(times)}


def bench_cnn_lstm(tag: str, min_seconds: float = MIN_SECONDS) -> dict[str, Any]:
    """samples/s and ms per call of `predict_proba` at batch 1..128 for one stored model."""
    from signals.models.cnn_lstm.artifact import load_cnn_lstm
    from signals.models.cnn_lstm.network import count_parameters

    predictor = load_cnn_lstm(tag)
    cfg = predictor.network.config
    rng = np.random.default_rng(0)
    rows = []
    for batch in CNN_BATCHES:
        windows = rng.standard_normal((batch, cfg.lookback, cfg.n_features)).astype(np.float32)
        timing = _time_calls(lambda w=windows: predictor.predict_proba(w), min_seconds)
        per_sample = timing["ms_per_call"] / batch
        rows.append(
            {
                "batch": batch,
                **timing,
                "ms_per_sample": round(per_sample, 4),
                "samples_per_s": round(1e3 / per_sample, 1),
            }
        )
    return {"model": predictor.tag, "parameters": count_parameters(predictor.network), "batches": rows}


def bench_ppo(tag: str = "ppo-1h:latest", min_seconds: float = MIN_SECONDS) -> dict[str, Any]:
    """ms per call of the policy's probabilities + value at batch 1 and 64."""
    from signals.features.ppo import PPO_OBS_SHAPE
    from signals.models.ppo.artifact import load_ppo

    policy = load_ppo(tag)
    rng = np.random.default_rng(0)
    rows = []
    for batch in PPO_BATCHES:
        obs = rng.standard_normal((batch, *PPO_OBS_SHAPE)).astype(np.float32)
        timing = _time_calls(lambda o=obs: policy.act(o), min_seconds)
        rows.append({"batch": batch, **timing, "samples_per_s": round(1e3 * batch / timing["ms_per_call"], 1)})
    return {"model": policy.tag, "batches": rows}


def run_raw_model(cnn_tag: str, ppo_tag: str = "ppo-1h:latest", min_seconds: float = MIN_SECONDS) -> dict[str, Any]:
    """Both ceilings with one torch thread; restores the thread count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            "torch_threads": 1,
            "cnn_lstm": bench_cnn_lstm(cnn_tag, min_seconds),
            "ppo": bench_ppo(ppo_tag, min_seconds),
        }
    finally:
        torch.set_num_threads(threads)
