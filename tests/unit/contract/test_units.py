"""One convention for returns on the wire: fractions of price, named so that no field claims percent."""

from __future__ import annotations

from signals.contract.schemas import EXPECTANCY_METRIC, Edge
from signals.serving.catalog import ModelEntry


def test_an_edge_stored_under_the_old_percent_name_reads_as_the_fraction_it_always_was() -> None:
    stored = {"verdict": "positive", "metric": "expectancy_after_costs_pct", "value": -0.00425, "n": 40}
    edge = Edge.model_validate(stored)
    assert edge.metric == EXPECTANCY_METRIC == "expectancy_after_costs_fraction"
    assert edge.value == -0.00425  # the figure is untouched: it was a fraction under either name
    assert Edge.model_validate({**stored, "metric": "hit_rate"}).metric == "hit_rate"  # other metrics as stored


def test_a_model_stored_without_an_edge_names_the_fraction_metric() -> None:
    entry = ModelEntry("cnn-lstm", "m", "m:v1", "v1", "BTC/USDT", "1h", {"metrics": {}})
    assert Edge.model_validate(entry.edge).metric == EXPECTANCY_METRIC and entry.edge["verdict"] == "insufficient_data"
