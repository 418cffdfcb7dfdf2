"""The seam between a model family and everything that serves it: one small record, two instances.

What the catalog, the runners and the commands need to know of a family, and nothing else: its label in the
store, the store name of one (symbol, timeframe), which names the settings ask to serve, how to load a verified
model, and how to check that a stored model was built for the inputs this code computes. The instances live in
`signals.models.families`; there is deliberately no class hierarchy (StyleGuide: two families, one shape).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from signals.core.errors import SignalsError
from signals.core.settings import Settings
from signals.core.symbols import current_symbol, normalize_symbol
from signals.core.timeframes import parse_timeframe
from signals.models.registry import StoredModel, list_models

if TYPE_CHECKING:
    from typing import TypeAlias

    import torch

    Device: TypeAlias = torch.device | str  # a torch device; "cpu" for a family not on torch

logger = logging.getLogger(__name__)

Labels = Mapping[str, str]


@dataclass(frozen=True)
class ModelFamily:
    """One model family as the rest of the server sees it."""

    name: str  # the store label `family`, e.g. "cnn-lstm"
    per_symbol: bool  # one model per (symbol, timeframe), or one per timeframe for every symbol
    store_name: Callable[[str | None, str], str]  # (symbol or None, timeframe) -> store name
    load: Callable[[str, Device], Any]  # tag -> a loaded, verified model on a device
    check_contract: Callable[[StoredModel], None]  # raises ModelIntegrityError for a model of other inputs
    on_torch: bool = True  # loads onto the torch device the settings resolve; False: computes where its library does

    def key(self, labels: Labels) -> tuple[str | None, str] | None:
        """(symbol or None, timeframe) a stored model of this family serves, from its labels; None if malformed.

        A model trained under a renamed pair's old name serves the current one (`cnn-lstm-matic-usdt-1h` serves
        POL/USDT): it learned that market's history, and keeps serving until one is trained under the new name."""
        stored = self.stored_key(labels)
        if stored is None or stored[0] is None:
            return stored
        return current_symbol(stored[0]), stored[1]

    def stored_key(self, labels: Labels) -> tuple[str | None, str] | None:
        """(symbol or None, timeframe) as the model's labels name them (its store name follows them)."""
        if labels.get("family") != self.name:
            return None
        try:
            timeframe = parse_timeframe(labels.get("timeframe", ""))
            symbol = normalize_symbol(labels.get("symbol", "")) if self.per_symbol else None
        except SignalsError:
            return None
        return symbol, timeframe

    def renamed(self, labels: Labels) -> bool:
        """The model was stored under a renamed pair's old name (it serves the current one, see `key`)."""
        return self.key(labels) != self.stored_key(labels)

    def served_keys(self, settings: Settings) -> set[tuple[str | None, str]]:
        """Every (symbol or None, timeframe) the settings ask this family to serve; bad entries are skipped."""
        keys: set[tuple[str | None, str]] = set()
        for timeframe in settings.timeframes:
            for symbol in settings.universe if self.per_symbol else [None]:
                try:
                    keys.add((normalize_symbol(symbol) if symbol else None, parse_timeframe(timeframe)))
                except SignalsError as error:  # a bad entry in the settings must not stop the others
                    logger.warning("universe entry %r / %r ignored: %s", symbol, timeframe, error)
        return keys

    def wanted(self, settings: Settings) -> Callable[[Labels], str | None]:
        """`served_name` with the served keys computed once (runners call it per stored model)."""
        keys = self.served_keys(settings)

        def name_if_served(labels: Labels) -> str | None:
            key, stored = self.key(labels), self.stored_key(labels)
            return self.store_name(*stored) if key is not None and stored is not None and key in keys else None

        return name_if_served


def stored_names(family: ModelFamily, settings: Settings) -> list[str]:
    """Names of the stored models of `family` that the settings ask to serve.

    Never raises: a runner module must import (and `bentoml build` must read it) with an empty or odd store.
    """
    wanted = family.wanted(settings)
    try:
        names = {wanted(model.info.labels) for model in list_models(family.name)}
    except Exception as error:  # the store may be absent or half-written; loading reports details later
        logger.warning("could not list %s models in the store: %s", family.name, error)
        return []
    return sorted(name for name in names if name)
