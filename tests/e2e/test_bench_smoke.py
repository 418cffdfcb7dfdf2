"""The benchmark harness cannot rot: `python -m bench.run --smoke` runs end to end in a subprocess.

It builds a tiny world, starts one real `bentoml serve` and one per-request baseline, loads them for a
second at 1 and 4 clients, and writes its JSON. No assertions on speed: only that every expected scenario
ran, answered, and had no errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.slow
SMOKE_TIMEOUT_S = 240
EXPECTED = {
    "ours_cold": {"predict_cold", "batch_cold"},
    "per_request_fastapi": {"predict_cold"},
}


def test_bench_smoke_runs_every_scenario_without_errors(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("BENTOML_HOME", None)  # the harness sets its own, under --out
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (results_file,) = tmp_path.glob("*.json")
    results = json.loads(results_file.read_text())
    assert results["smoke"] is True
    assert (tmp_path / "BENCHMARKS.md").is_file()
    for server, scenarios in EXPECTED.items():
        record = results["servers"][server]
        assert "failed" not in record, record["failed"]
        assert set(record["runs"]) == scenarios
        for scenario, runs in record["runs"].items():
            assert [r["clients"] for r in runs] == [1, 4], scenario
            for run in runs:
                assert run["requests"] > 0 and run["errors"] == 0, (server, scenario, run)
                assert run["signals_per_s"] > 0
    assert results["raw_model"]["cnn_lstm"]["batches"][0]["samples_per_s"] > 0
