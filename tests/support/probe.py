"""Run a snippet in a fresh interpreter at the repository root: what a new process imports, with the caller's
SIGNALS_* environment left out (the snippet states its own)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.paths import REPO_ROOT


def fresh_python(code: str, timeout: float = 120) -> str:
    """The snippet's stdout; the test fails with the tail of its stderr when it exits non-zero."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SIGNALS_")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
