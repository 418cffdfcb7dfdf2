"""`bench/gpu_check.sh` (`python -m bench.gpu_check`): the runners on a GPU, checked against the CPU and timed.

On a machine with CUDA, in under 5 minutes:
1. a small world of its own (a temporary BentoML home): default-size CNN-LSTMs for a few pairs on one timeframe
   (one pooled network, so the stacked forward has several same-shape models) and a PPO policy;
2. the same random windows and observations through the CPU and the GPU model sets (`signals.models.local`, the
   code the runner services wrap): every probability must agree within `ATOL` (float32 on both sides; cuDNN's
   LSTM kernels round differently from the CPU's, hence a tolerance rather than equality);
3. the two runner services started on the GPU (`bentoml serve signals.runners...` with `SIGNALS_DEVICE=cuda`):
   their `/status` must say `cuda`, and their answers over HTTP must agree with the CPU within `ATOL`;
4. batched throughput, GPU against CPU (one torch thread, as the runners run on CPU), at several batch sizes.
Results: printed, and written to `bench/results/gpu-<date>.json` (or `--out`). Exit 1 when an answer differs.

Without CUDA it prints "no CUDA device: skipped" and exits 0 (the dry run `tests/unit/test_gpu_check.py` runs).
`--device cpu` runs every step with a CPU standing in for the GPU: a check of this script on any machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.gpu_check")

REPO_ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-4  # probabilities, GPU against CPU
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT", "ADA/USDT")
TIMEFRAME = "1h"
BATCHES = (1, 8, 64, 256)
WINDOWS_PER_MODEL = 16
SKIPPED = "no CUDA device: skipped"


def cuda_device() -> str | None:
    """The CUDA device's name, or None where torch sees none."""
    import torch

    if not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(0))


def build_world(work: Path) -> dict[str, float]:
    """Candles, one pooled default-size CNN-LSTM over SYMBOLS (one epoch: shapes, not skill) and a small PPO."""
    import pandas as pd
    import torch

    from signals.data.store import CandleStore
    from signals.models.cnn_lstm.training import TrainConfig
    from signals.pipelines import train_cnn_lstm_models, train_ppo_policy, write_synthetic_market

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    store = CandleStore(work / "data")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    write_synthetic_market(store, SYMBOLS, (TIMEFRAME,), 120, seed=11, end=pd.Timestamp("2026-11-20", tz="UTC"))
    train_cnn_lstm_models(store, "synthetic", SYMBOLS, TIMEFRAME, TrainConfig(epochs=1, folds=0, max_bars=700, seed=1))
    train_ppo_policy(store, "synthetic", SYMBOLS[:2], TIMEFRAME, 64, seed=1, max_bars=1500)
    timings["world_s"] = round(time.perf_counter() - started, 1)
    return timings


def world_env(work: Path) -> dict[str, str]:
    return {
        "BENTOML_HOME": str(work / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "SIGNALS_DATA_DIR": str(work / "data"),
        "SIGNALS_EXCHANGE": "synthetic",
        "SIGNALS_SOURCE": "store",
        "SIGNALS_UNIVERSE": json.dumps(list(SYMBOLS)),
        "SIGNALS_TIMEFRAMES": json.dumps([TIMEFRAME]),
        "SIGNALS_PPO_TIMEFRAME": TIMEFRAME,
    }


def inputs(cnn: Any, ppo: Any) -> tuple[list[Any], list[Any]]:
    """Seeded random windows for every loaded CNN-LSTM and observations for every loaded policy."""
    import numpy as np

    from signals.contract.wire import ObservationRequest, WindowRequest
    from signals.features.ppo import PPO_OBS_SHAPE

    rng = np.random.default_rng(0)
    windows = []
    for tag, model in sorted(cnn.versions.items()):
        config = model.network.config
        for _ in range(WINDOWS_PER_MODEL):
            window = rng.standard_normal((config.lookback, config.n_features)).astype(np.float32)
            windows.append(WindowRequest(model=tag, window=window))
    observations = [
        ObservationRequest(model=tag, observation=rng.standard_normal(PPO_OBS_SHAPE).astype(np.float32))
        for tag in sorted(ppo.versions)
        for _ in range(WINDOWS_PER_MODEL)
    ]
    return windows, observations


def largest_difference(a: list[list[float]], b: list[list[float]]) -> float:
    import numpy as np

    left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if left.shape != right.shape or not np.isfinite(left).all() or not np.isfinite(right).all():
        return float("inf")
    return float(np.abs(left - right).max()) if left.size else 0.0


def throughput(forward: Callable[[list[Any]], Any], requests: list[Any], batch: int, seconds: float) -> float:
    """Samples per second of `forward` on batches of `batch` requests (after a warm-up call)."""
    chunk = (requests * (batch // max(1, len(requests)) + 1))[:batch]
    forward(chunk)
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds:
        forward(chunk)
        calls += 1
    return round(calls * batch / (time.perf_counter() - started), 1)


@contextmanager
def runner_server(target: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """`bentoml serve <target>` on a free port of 127.0.0.1, ready when /readyz answers; stopped on exit."""
    import signal
    import socket
    import subprocess

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    bentoml = str(Path(sys.executable).parent / "bentoml")
    command = [bentoml, "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{target} exited ({process.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target} not ready within 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def served_answers(work: Path, device: str, windows: list[Any], observations: list[Any]) -> dict[str, Any]:
    """Both runner services on `device`, over HTTP: their device, and their answers to the same inputs."""
    import httpx

    env = {**world_env(work), "SIGNALS_DEVICE": device}
    out: dict[str, Any] = {}
    targets = {"cnn_lstm": "signals.runners.cnn_lstm:CnnLstmRunner", "ppo": "signals.runners.ppo:PpoRunner"}
    for family, target in targets.items():
        with runner_server(target, env, work / f"{family}.log") as url:
            status = httpx.post(url + "/status", json={}, timeout=60).json()
            if family == "cnn_lstm":
                body = {"requests": [{"model": w.model, "window": w.window.tolist()} for w in windows]}
                answer = httpx.post(url + "/predict_many", json=body, timeout=120).json()
            else:
                body = {"requests": [{"model": o.model, "observation": o.observation.tolist()} for o in observations]}
                answer = [row["probabilities"] for row in httpx.post(url + "/act", json=body, timeout=120).json()]
            out[family] = {"device": status.get("device"), "loaded": len(status.get("loaded", {})), "answer": answer}
    return out


def run(device: str, work: Path, seconds: float) -> dict[str, Any]:
    """Every step on `device` against the CPU; the results object (`ok` says whether every answer agreed)."""
    for name, value in world_env(work).items():
        os.environ.setdefault(name, value)  # before bentoml is first imported: it caches the store's path
    started = time.perf_counter()
    results: dict[str, Any] = {"device": device, "atol": ATOL, **build_world(work)}

    from signals.core.settings import Settings
    from signals.models.local import LocalCnnLstm, LocalPpo

    base = Settings(data_dir=work / "data", exchange="synthetic", universe=list(SYMBOLS), timeframes=[TIMEFRAME])
    cpu_settings, gpu_settings = base.model_copy(update={"device": "cpu"}), base.model_copy(update={"device": device})
    cpu_cnn, cpu_ppo = LocalCnnLstm(cpu_settings), LocalPpo(cpu_settings)
    gpu_cnn, gpu_ppo = LocalCnnLstm(gpu_settings), LocalPpo(gpu_settings)
    windows, observations = inputs(cpu_cnn, cpu_ppo)
    cpu_probabilities = cpu_cnn.forward(windows)
    cpu_actions = [row.probabilities for row in cpu_ppo.rows(observations)]
    results["models"] = {"cnn_lstm": len(cpu_cnn.versions), "stacks": len(cpu_cnn.stacks), "ppo": len(cpu_ppo.versions)}
    results["in_process_max_abs_diff"] = {
        "cnn_lstm": largest_difference(cpu_probabilities, gpu_cnn.forward(windows)),
        "ppo": largest_difference(cpu_actions, [row.probabilities for row in gpu_ppo.rows(observations)]),
    }
    served = served_answers(work, device, windows, observations)
    results["runners"] = {family: {k: v for k, v in s.items() if k != "answer"} for family, s in served.items()}
    results["served_max_abs_diff"] = {
        "cnn_lstm": largest_difference(cpu_probabilities, served["cnn_lstm"]["answer"]),
        "ppo": largest_difference(cpu_actions, served["ppo"]["answer"]),
    }
    timed = {}
    for batch in BATCHES:
        cpu = throughput(cpu_cnn.forward, windows, batch, seconds)
        on_device = throughput(gpu_cnn.forward, windows, batch, seconds)
        timed[str(batch)] = {"cpu": cpu, "device": on_device, "device_over_cpu": round(on_device / cpu, 2)}
    results["throughput_samples_per_s"] = timed  # the stacked CNN-LSTM forward, per batch size
    differences = [*results["in_process_max_abs_diff"].values(), *results["served_max_abs_diff"].values()]
    on_device = all(str(r["device"]).startswith(device) for r in results["runners"].values())
    results["ok"] = all(d <= ATOL for d in differences) and on_device
    results["total_s"] = round(time.perf_counter() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to check this script anywhere")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds timed per batch size and device")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.device == "cuda":
        name = cuda_device()
        if name is None:
            print(SKIPPED)  # noqa: T201  (a command's report)
            return 0
        logger.info("CUDA device: %s", name)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        results = run(args.device, Path(tmp), args.seconds)
    results["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["gpu"] = cuda_device()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-{results['date'][:10]}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))  # noqa: T201
    verdict = "same probabilities" if results["ok"] else "DIFFERENT probabilities or not on the device"
    print(f"gpu check: {verdict} (atol {ATOL}); results in {path}")  # noqa: T201
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
