"""BentoML's generated client decodes every answer by the schema the server publishes, flattened its own way
(`_bentoml_sdk.method._flatten_field` keeps only the first branch of an anyOf). A nullable array whose first
branch is the array made the client fail on a null (`'NoneType' object is not iterable`): a pair without a
walk-forward accuracy interval broke `client.predict`. Pinned to the BentoML this project pins (1.4.39)."""

from __future__ import annotations

import copy

from _bentoml_impl.serde import JSONSerde
from _bentoml_sdk.method import _flatten_field

from signals.contract.schemas import Signal


def client_view(model: type[Signal]) -> dict[str, object]:
    schema = model.model_json_schema()
    return _flatten_field(copy.deepcopy(schema), schema.get("$defs", {}))


def test_the_generated_client_decodes_a_signal_with_and_without_an_accuracy_interval() -> None:
    schema = client_view(Signal)
    serde = JSONSerde()
    interval = schema["properties"]["model_accuracy_ci"]  # type: ignore[index]
    assert serde._decode(None, interval) is None
    assert serde._decode([0.41, 0.47], interval) == [0.41, 0.47]
