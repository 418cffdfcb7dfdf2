"""Shared fixtures. BENTOML_HOME points at a per-session temp dir before anything touches the model store
(BentoML resolves its home once, lazily, then caches it), so tests never read or write ~/bentoml."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.entry_points import ensure_project_entry_points
from tests.support.postgres import Postgres, postgres_server

if TYPE_CHECKING:  # the world imports bentoml: not before BENTOML_HOME is set below
    from tests.support.world import World

# Tests state their own configuration: a developer's SIGNALS_* environment must not leak into them.
for _name in [n for n in os.environ if n.startswith("SIGNALS_") and n != "SIGNALS_SHARED_DATA"]:
    del os.environ[_name]
_SESSION_HOME = tempfile.mkdtemp(prefix="signals-bentoml-home-")
os.environ["BENTOML_HOME"] = _SESSION_HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
# The checkout's entry points (the GBM family's among them) even where the environment was installed from an older
# checkout: discovery reads installed metadata.
ensure_project_entry_points(Path(tempfile.mkdtemp(prefix="signals-entry-points-")))


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return Path(_SESSION_HOME)


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The session's one trained world (tests/support/world.py): candles, tiny models in this session's model store.
    Read it as is; a module whose tests write to its data directory takes `copy_world` of it."""
    from tests.support.world import build_world

    return build_world(tmp_path_factory.mktemp("session-world"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many trained worlds this session built and what they cost (the suite's budget: one)."""
    world = sys.modules.get("tests.support.world")
    builds: list[float] = [] if world is None else world.BUILDS
    if builds:
        seconds = ", ".join(f"{s:.1f}" for s in builds)
        terminalreporter.write_line(f"trained worlds built: {len(builds)} ({seconds} s)")


@pytest.fixture(scope="module", autouse=True)
def models_stay_in_their_module() -> Iterator[None]:
    """The model store is the session's (one per worker) and a served pair reads its newest version, so a model a
    module stores would be served to every later module in that worker: each module's own models go at its end.
    (CI once ran the runner tests, which store an ETH 1h model with no walk-forward figures, between the world's
    build and the family tests in one worker: those then served it.)"""
    from tests.support.models import models_made_here

    with models_made_here():
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL server for the session (tests/support/postgres.py); each test makes its own database."""
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty ledger database of each kind the server supports: SQLite in a file, a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'signals.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")
