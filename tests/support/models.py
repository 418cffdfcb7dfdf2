"""Tiny models trained in a second or two, for tests that need a stored model and not its quality."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import bentoml

from signals.models.cnn_lstm.artifact import save_cnn_lstm_models
from signals.models.cnn_lstm.network import CnnLstmConfig
from signals.models.cnn_lstm.training import TrainConfig, train_pooled
from signals.models.registry import StoredModel
from tests.support.factories import random_walk_candles

TINY = CnnLstmConfig(conv_channels=(8,), kernel_size=3, lstm_hidden=8, head_hidden=8, dropout=0.0)


def tiny_cnn_lstm(symbol: str, timeframe: str = "1h", *, seed: int = 0, bars: int = 700, folds: int = 0) -> StoredModel:
    """One network trained on one pair's random-walk candles (its own weights), stored as that pair's model."""
    candles = random_walk_candles(bars, timeframe=timeframe, seed=seed)
    config = TrainConfig(epochs=1, batch_size=64, horizon=4, seed=seed, folds=folds)
    (stored,) = save_cnn_lstm_models(train_pooled({symbol: candles}, timeframe, config, TINY), exchange="synthetic")
    return stored


@contextmanager
def models_made_here() -> Iterator[None]:
    """Delete, on the way out, every model version stored inside the block, except the session world's (built
    inside it when the block is the first to ask for it): the session's store is shared, and a module's extra
    version of a pair would be served by the modules that run after it."""
    from tests.support import world

    before = {str(model.tag) for model in bentoml.models.list()}
    try:
        yield
    finally:
        kept = before | world.WORLD_MODELS
        for model in bentoml.models.list():
            if str(model.tag) not in kept:
                bentoml.models.delete(model.tag)
