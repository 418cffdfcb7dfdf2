"""The model card reads stored metadata of any age: missing or malformed fields answer as the raw reads did."""

from __future__ import annotations

from signals.models.card import DEFAULT_CLIP_RANGE, DEFAULT_STOP_ATR, ModelCard


def test_a_full_card_exposes_typed_fields() -> None:
    card = ModelCard.from_metadata(
        {
            "family": "cnn-lstm",
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "horizon": 12,
            "stop_atr": 2,
            "threshold": 0.6,
            "costs": {"round_trip": 0.003},
            "hyperparameters": {"hidden": 8},
            "metrics": {"accuracy": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}, "majority_share": 0.45},
            "walk_forward": {"pooled": {"n": 9}},
            "edge": {"verdict": "positive", "rule": {"passed": True, "version": 2, "text": "the rule", "p": 0.01}},
            "sha256": {"weights.safetensors": "ab"},
        }
    )
    assert (card.family, card.symbol, card.timeframe, card.horizon) == ("cnn-lstm", "BTC/USDT", "1h", 12)
    assert card.stop_atr == 2.0 and card.threshold == 0.6 and card.round_trip_cost == 0.003
    assert card.accuracy == 0.5 and card.accuracy_ci == [0.4, 0.6] and card.baseline_accuracy == 0.45
    assert card.pooled_walk_forward == {"n": 9} and card.hyper_parameters == {"hidden": 8}
    assert card.rule == {"passed": True, "version": 2, "p": 0.01}  # the text is carried once by the answer
    assert card.edge["verdict"] == "positive" and card.edge["rule_status"] == "passed"
    assert card.sha256 == {"weights.safetensors": "ab"}


def test_missing_and_malformed_fields_answer_as_before() -> None:
    card = ModelCard.from_metadata({"metrics": "not a mapping", "threshold": True, "horizon": "12"})
    assert card.metrics == {} and card.accuracy is None and card.accuracy_ci is None
    assert card.threshold is None and card.horizon is None  # a bool or a string is no number
    assert card.stop_atr == DEFAULT_STOP_ATR and card.clip_range == DEFAULT_CLIP_RANGE
    assert card.rule is None and card.verdict is None and card.health == []
    assert card.edge["verdict"] == "insufficient_data" and card.edge["rule_status"] == "stored_before_rule"


def test_a_model_stored_before_the_rule_is_never_positive() -> None:
    card = ModelCard.from_metadata({"edge": {"verdict": "positive", "value": 0.01}})
    assert card.verdict == "positive"  # as written at training time
    assert card.edge["verdict"] == "none" and card.edge["rule_status"] == "stored_before_rule"  # as the gate reads it


def test_ppo_hyper_parameters_give_the_clip_range() -> None:
    assert ModelCard.from_metadata({"hyper_parameters": {"clip_range": 0.1}}).clip_range == 0.1
