"""`bench.family_compare` reads the CNN-LSTM's row from MODELS.md's table (not typed) and names a too-good figure."""

from __future__ import annotations

from bench.family_compare import cnn_lstm_rows, leak_check
from tests.support.paths import REPO_ROOT


def test_the_cnn_lstm_rows_come_from_models_md_by_timeframe() -> None:
    rows = cnn_lstm_rows(REPO_ROOT / "MODELS.md")
    assert set(rows) == {"15m", "1h", "4h", "1d"}
    for row in rows.values():
        assert {"samples", "accuracy [95 %]", "majority", "log-loss skill", "after-cost expectancy, % per call"} <= set(
            row
        )


def test_an_up_down_accuracy_far_above_the_anchors_is_flagged_as_a_leak() -> None:
    def result(accuracy: float) -> dict:
        return {"timeframe": "1d", "context": True, "walk_forward": {"direction": {"accuracy": {"value": accuracy}}}}

    assert leak_check([result(0.53)]) == []
    assert "far above the anchors" in leak_check([result(0.62)])[0]
