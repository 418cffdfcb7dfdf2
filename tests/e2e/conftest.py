"""Servers more than one end-to-end module reads: started once for the session (a start costs 10-40 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import Server, bentoml_server
from tests.support.world import World, copy_world


@pytest.fixture(scope="session")
def e2e_world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A copy of the session world that the shared server serves (its ledger is written to)."""
    return copy_world(trained_world, tmp_path_factory.mktemp("e2e-data"))


@pytest.fixture(scope="session")
def e2e_server(e2e_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The world served as `bentoml serve` runs it, for test_e2e.py (the batching proof: the signal cache is off, so
    every request is cold and reaches the runner) and test_readme.py (the README's blocks; a 1 s heartbeat on the
    event stream), with BentoML's access log turned on (off by default) for test_e2e.py to read. Its readers only
    add records; none changes what another reads."""
    env = {
        **e2e_world.env(),
        "SIGNALS_SIGNAL_CACHE_SIZE": "0",
        "SIGNALS_STREAM_HEARTBEAT_S": "1",
        "SIGNALS_ACCESS_LOG": "true",
    }
    with bentoml_server(env, tmp_path_factory.mktemp("e2e-log"), name="e2e") as running:
        yield running
