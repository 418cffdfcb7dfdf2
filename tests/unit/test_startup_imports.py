"""What every process of the service graph imports at start: BentoML imports `service.py` in its arbiter and in
each worker (the API and every runner), so a heavy import there is paid once per process. torch and its model
libraries are the runners' own (imported when a runner starts); ccxt is the live source's; alembic a migration's."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.probe import fresh_python

RUNNER_ONLY = ("torch", "safetensors", "stable_baselines3", "gymnasium")
ON_DEMAND = ("ccxt", "alembic")

PROBE = textwrap.dedent(
    """
    import sys

    import service  # the service graph: the API service, its runners and the routes
    from signals.data.exchange import ExchangeConfig
    from signals.models.families import CNN_LSTM, PPO

    assert CNN_LSTM.name and PPO.name and ExchangeConfig().exchange_id
    print(" ".join(sorted(name for name in {modules!r} if name in sys.modules)) or "none")
    """
)


def test_the_service_graph_imports_without_torch_ccxt_or_alembic() -> None:
    assert fresh_python(PROBE.format(modules=RUNNER_ONLY + ON_DEMAND)).split() == ["none"]


FAMILIES_START = textwrap.dedent(
    """
    import os
    import sys

    os.environ["BENTOML_HOME"] = {home!r}  # an empty store: the start itself, without a model to load

    from signals.models.families import plugin_families
    from signals.runners.families import FamiliesRunner

    assert plugin_families() and not any(family.on_torch for family in plugin_families())
    runner = FamiliesRunner.inner()
    print(runner._status().device, "torch" in sys.modules)
    """
)


def test_the_families_runner_starts_without_torch_when_no_family_needs_it(tmp_path: Path) -> None:
    """The installed families (GBM) compute on their own libraries: the runner that serves them loads no torch."""
    assert fresh_python(FAMILIES_START.format(home=str(tmp_path))).split() == ["cpu", "False"]
