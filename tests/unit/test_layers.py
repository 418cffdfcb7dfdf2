"""The serving path never needs training code: `service.py`, the runners and the model loaders import, and load
a stored model, with every training module made unimportable. (import-linter checks the package's own
imports in `make lint`; this also covers `service.py`, which is a module outside the package.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from signals.data.store import CandleStore
from signals.models.cnn_lstm.network import CnnLstmConfig
from signals.models.cnn_lstm.training import TrainConfig
from signals.pipelines import train_cnn_lstm_models, train_ppo_policy
from tests.support.factories import random_walk_candles
from tests.support.models import models_made_here
from tests.support.paths import REPO_ROOT
from tests.support.probe import fresh_python

TRAINING_MODULES = (
    "signals.models.cnn_lstm.training",
    "signals.models.cnn_lstm.evaluate",
    "signals.models.ppo.training",
    "signals.models.ppo.env",
    "signals.pipelines",
    "signals.testing",
    "scipy.optimize",
)

PROBE = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = {blocked!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"{{name}} is a training module: the serving path must not import it")
            return None

    sys.meta_path.insert(0, Block())
    import service  # the API service, its runners, the catalog, the model families and their loaders
    from signals.models.device import CPU
    from signals.models.families import CNN_LSTM, PPO

    cnn = CNN_LSTM.load({cnn_tag!r}, CPU)
    ppo = PPO.load({ppo_tag!r}, CPU)
    print("ok", cnn.tag, ppo.tag)
    """
)


@pytest.fixture
def own_models() -> Iterator[None]:
    with models_made_here():  # this test's versions leave the session's shared store with it
        yield


@pytest.mark.usefixtures("own_models")
def test_service_and_runners_import_and_load_models_with_training_modules_blocked(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("synthetic", "BTC/USDT", "1h", random_walk_candles(700, timeframe="1h", seed=2))
    tiny = CnnLstmConfig(conv_channels=(8,), lstm_hidden=8, head_hidden=8)
    (trained,) = train_cnn_lstm_models(store, "synthetic", ["BTC/USDT"], "1h", TrainConfig(epochs=1, folds=2), tiny)
    (cnn,) = trained.stored
    ppo, _ = train_ppo_policy(store, "synthetic", ["BTC/USDT"], "1h", timesteps=64)
    probe = PROBE.format(blocked=TRAINING_MODULES, cnn_tag=cnn.tag, ppo_tag=ppo.tag)
    assert fresh_python(probe).split() == ["ok", cnn.tag, ppo.tag]


def test_the_cli_imports_without_the_test_doubles_that_the_bento_leaves_out() -> None:
    """The image runs `python -m signals ledger migrate`; `signals.testing` is not in it."""
    probe = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "signals.testing" or name.startswith("signals.testing."):
                    raise ImportError("signals.testing is not shipped")
                return None

        sys.meta_path.insert(0, Block())
        sys.argv = ["signals", "--help"]
        import signals.cli
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
