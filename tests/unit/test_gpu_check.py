"""The GPU check's dry run: on a machine without CUDA (every CI box so far) the script says so and succeeds, without
building a world or starting a runner."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.gpu_check import SKIPPED, cuda_device
from tests.support.paths import REPO_ROOT


@pytest.mark.skipif(cuda_device() is not None, reason="a CUDA device is present: the check would really run")
def test_without_cuda_the_gpu_check_says_skipped_and_exits_0(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "bench" / "gpu_check.sh"), "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == SKIPPED
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written
