"""The model families this server trains and serves, as `ModelFamily` records (see `signals.models.family`): the two
built into the package, and every family installed as its own package (`signals.models.plugin`, entry points)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from signals.models import plugin as plugins
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


def _plugin_name(family: str) -> Callable[[str | None, str], str]:
    def name(symbol: str | None, timeframe: str) -> str:
        if symbol is None:
            raise ValueError(f"a {family} model is stored per (symbol, timeframe): give the symbol")
        return plugins.model_name(family, symbol, timeframe)

    return name


def plugin_family(plugin: plugins.FamilyPlugin) -> ModelFamily:
    """The record of an installed family: per (symbol, timeframe), loaded and checked through the seam."""
    return ModelFamily(
        name=plugin.name,
        per_symbol=True,
        store_name=_plugin_name(plugin.name),
        load=lambda tag, _device: plugins.load_family_model(plugin, tag),
        check_contract=lambda stored: plugins.check_contract(plugin, stored),
        on_torch=False,  # the seam hands a family no device: its runner imports torch only if the family does
    )


def plugin_families() -> tuple[ModelFamily, ...]:
    """Every installed family that discovery accepted (`plugin.discover`), in name order."""
    found = plugins.discover().plugins
    return tuple(plugin_family(found[name]) for name in sorted(found))


def all_families() -> tuple[ModelFamily, ...]:
    """The built-in families, then the installed ones."""
    return (*FAMILIES, *plugin_families())


def signal_families() -> tuple[ModelFamily, ...]:
    """The families that answer (SHORT, NO_TRADE, LONG) probabilities per (symbol, timeframe): the CNN-LSTM and
    every installed family (the PPO answers actions); per pair, evidence chooses which of them serves."""
    return (CNN_LSTM, *plugin_families())


def family_named(name: str | None) -> ModelFamily | None:
    """The family whose store label is `name`, or None."""
    return next((family for family in all_families() if family.name == name), None)


def family_of_store_name(store_name: str) -> ModelFamily | None:
    """The family a store name belongs to (every store name starts with its family's label), or None: what is left
    to go on for a version whose `model.yaml`, and so its labels, cannot be read."""
    found = [family for family in all_families() if store_name.startswith(f"{family.name}-")]
    return max(found, key=lambda family: len(family.name), default=None)  # the longest prefix: "demo-x-" over "demo-"
