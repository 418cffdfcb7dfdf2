"""BentoML reads every `model.yaml` (and `bento.yaml`) with PyYAML's pure-Python loader: about 47 ms for one of our
16 kB model files on an idle core, and every server process reads each served model several times at start (the
service graph's declarations, the store scan, each load). libyaml's loader builds the same dict in a tenth of that.

`use_libyaml` points the `yaml` name of BentoML's two readers at a stand-in whose `safe_load` is libyaml's; writing
(`safe_dump`) and everything else stay PyYAML's own. Without libyaml it changes nothing.
"""

from __future__ import annotations

from types import ModuleType
from typing import IO, Any

import yaml


class _LibYamlReader:
    """The `yaml` module, except that `safe_load` is the libyaml loader (same result for the same input)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(yaml, name)

    @staticmethod
    def safe_load(stream: str | bytes | IO[Any]) -> Any:
        return yaml.load(stream, Loader=yaml.CSafeLoader)  # noqa: S506  # the safe loader, in C


def use_libyaml() -> bool:
    """Make BentoML's model and bento readers parse with libyaml; False (a no-op) when PyYAML lacks it."""
    if not getattr(yaml, "__with_libyaml__", False):
        return False
    from bentoml._internal.bento import bento
    from bentoml._internal.models import model

    readers: tuple[ModuleType, ...] = (model, bento)
    for module in readers:
        if getattr(module, "yaml", None) is yaml:
            setattr(module, "yaml", _LibYamlReader())  # noqa: B010  # replaces the module's own `yaml` name
    return True
