"""What every process of the service graph imports at start: BentoML imports `service.py` in its arbiter and in
each worker (the API and every runner), so a heavy import there is paid once per process. torch and its model
libraries are the runners' own (imported when a runner starts); ccxt is the live source's; alembic a migration's."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.support.paths import REPO_ROOT

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
    env = {key: value for key, value in os.environ.items() if not key.startswith("SIGNALS_")}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=RUNNER_ONLY + ON_DEMAND)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split() == ["none"]
