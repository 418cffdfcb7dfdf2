"""Shared fixtures. BENTOML_HOME points at a per-session temp dir before anything touches the model store
(BentoML resolves its home once, lazily, then caches it), so tests never read or write ~/bentoml."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests state their own configuration: a developer's SIGNALS_* environment must not leak into them.
for _name in [n for n in os.environ if n.startswith("SIGNALS_") and n != "SIGNALS_SHARED_DATA"]:
    del os.environ[_name]
_SESSION_HOME = tempfile.mkdtemp(prefix="signals-bentoml-home-")
os.environ["BENTOML_HOME"] = _SESSION_HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "true"


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return Path(_SESSION_HOME)
