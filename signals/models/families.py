"""The two model families this server trains and serves, as `ModelFamily` records (see `signals.models.family`)."""

from __future__ import annotations

from typing import Final

from signals.models.cnn_lstm import artifact as cnn_lstm_artifact
from signals.models.family import ModelFamily
from signals.models.ppo import artifact as ppo_artifact


def _cnn_lstm_name(symbol: str | None, timeframe: str) -> str:
    if symbol is None:
        raise ValueError("a CNN-LSTM is stored per (symbol, timeframe): give the symbol")
    return cnn_lstm_artifact.model_name(symbol, timeframe)


def _ppo_name(_symbol: str | None, timeframe: str) -> str:
    return ppo_artifact.model_name(timeframe)  # one policy per timeframe serves every symbol


CNN_LSTM: Final = ModelFamily(
    name=cnn_lstm_artifact.FAMILY,
    per_symbol=True,
    store_name=_cnn_lstm_name,
    load=lambda tag, device: cnn_lstm_artifact.load_cnn_lstm(tag, device),
    check_contract=cnn_lstm_artifact.check_feature_contract,
)
PPO: Final = ModelFamily(
    name=ppo_artifact.FAMILY,
    per_symbol=False,
    store_name=_ppo_name,
    load=lambda tag, device: ppo_artifact.load_ppo(tag, str(device)),
    check_contract=ppo_artifact.check_contract,
)
FAMILIES: Final = (CNN_LSTM, PPO)


def family_named(name: str | None) -> ModelFamily | None:
    """The family whose store label is `name`, or None."""
    return next((family for family in FAMILIES if family.name == name), None)


def family_of_store_name(store_name: str) -> ModelFamily | None:
    """The family a store name belongs to (every store name starts with its family's label), or None: what is left
    to go on for a version whose `model.yaml`, and so its labels, cannot be read."""
    return next((family for family in FAMILIES if store_name.startswith(f"{family.name}-")), None)
