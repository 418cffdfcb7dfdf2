"""StackedCnnLstm: one batched call must give each row exactly what its own model gives (logits), and a stacked
group each name's own calibrated probabilities, one slot per distinct network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from signals.models.cnn_lstm.artifact import CnnLstmPredictor
from signals.models.cnn_lstm.network import CnnLstm, CnnLstmConfig
from signals.models.cnn_lstm.stacked import StackedCnnLstm, stack_predictors
from signals.models.registry import StoredModel
from signals.models.scaler import Scaler

TINY = CnnLstmConfig(conv_channels=(4, 6), kernel_size=3, pool=1, lstm_hidden=5, lstm_layers=2, head_hidden=4)
POOLED = TINY.model_copy(update={"pool": 4})
ATOL = 1e-12  # float64 logits: batching and stacking change them ~1e-16


def make_predictor(config: CnnLstmConfig, seed: int, network_id: str | None = None) -> CnnLstmPredictor:
    """Random weights, non-trivial BatchNorm statistics, scaler and temperature: every model differs."""
    torch.manual_seed(seed)
    network = CnnLstm(config)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.BatchNorm1d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_(1, 0.3)
                module.bias.normal_(0, 0.3)
    rng = np.random.default_rng(seed)
    scaler = Scaler(
        mean=rng.normal(size=config.n_features),
        std=rng.uniform(0.5, 2.0, size=config.n_features),
        feature_names=tuple(f"f{i}" for i in range(config.n_features)),
    )
    hashes = {"sha256": {"weights.safetensors": network_id, "scaler.json": "s"}} if network_id else {}
    stored = StoredModel(
        tag=f"m{seed}:test", name=f"m{seed}", version="test", path=Path("."), labels={}, metadata=hashes
    )
    return CnnLstmPredictor(
        stored=stored,
        network=network.eval(),
        scaler=scaler,
        temperature=float(rng.uniform(0.5, 2.0)),
        device=torch.device("cpu"),
    )


def windows(config: CnnLstmConfig, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, size=(n, config.lookback, config.n_features)).astype(np.float32)


def reference(stack: StackedCnnLstm, index: np.ndarray, batch: np.ndarray) -> np.ndarray:
    return np.concatenate([stack.predictors[m].logits(batch[i : i + 1]) for i, m in enumerate(index)])


@pytest.fixture(scope="module")
def tiny_stack() -> StackedCnnLstm:
    return StackedCnnLstm([make_predictor(TINY, seed) for seed in range(7)])


@pytest.fixture(scope="module")
def default_stack() -> StackedCnnLstm:
    return StackedCnnLstm([make_predictor(CnnLstmConfig(), seed) for seed in range(5)])


@pytest.mark.parametrize(
    "index",
    [
        np.array([3, 0, 6, 1, 1, 5, 2, 4, 0, 3, 6, 6, 2]),  # mixed order, repeats, every model
        np.array([5, 1, 5, 5, 1, 5, 5, 2]),  # three models, uneven counts (padded slots)
        np.array([4, 4, 4]),  # single model (plain path)
        np.array([2, 6, 2, 6]),  # two models (plain path)
        np.arange(7),  # every model once, canonical order (no weight gather)
    ],
)
def test_tiny_matches_per_model_logits(tiny_stack: StackedCnnLstm, index: np.ndarray) -> None:
    batch = windows(TINY, len(index), seed=len(index))
    out = tiny_stack.logits(index, batch)
    assert out.shape == (len(index), TINY.n_classes) and out.dtype == np.float64
    np.testing.assert_allclose(out, reference(tiny_stack, index, batch), atol=ATOL, rtol=0)


def test_a_pooled_conv_output_matches_per_model_logits() -> None:
    stack = StackedCnnLstm([make_predictor(POOLED, seed) for seed in range(4)])
    index = np.array([3, 0, 1, 1, 2, 3])
    batch = windows(POOLED, len(index), seed=9)
    np.testing.assert_allclose(stack.logits(index, batch), reference(stack, index, batch), atol=ATOL, rtol=0)


def test_default_size_matches_per_model_logits(default_stack: StackedCnnLstm) -> None:
    index = np.array([4, 2, 0, 2, 3, 1, 4, 4, 0])
    batch = windows(CnnLstmConfig(), len(index), seed=3)
    out = default_stack.logits(index, batch)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, reference(default_stack, index, batch), atol=ATOL, rtol=0)


def test_deterministic_dropout_off(tiny_stack: StackedCnnLstm) -> None:
    index = np.array([0, 3, 3, 5])
    batch = windows(TINY, len(index))
    first = tiny_stack.logits(index, batch)
    np.testing.assert_array_equal(first, tiny_stack.logits(index, batch))


def test_network_left_in_train_mode_is_evaluated_in_eval_mode() -> None:
    predictors = [make_predictor(TINY, seed) for seed in (11, 12, 13)]
    for predictor in predictors:
        predictor.network.train()
    stack = StackedCnnLstm(predictors)
    index = np.array([0, 0, 1, 2, 2])
    batch = windows(TINY, len(index))
    np.testing.assert_allclose(stack.logits(index, batch), reference(stack, index, batch), atol=ATOL)
    np.testing.assert_array_equal(stack.logits(index[:2], batch[:2]), stack.logits(index[:2], batch[:2]))


def test_empty_batch(tiny_stack: StackedCnnLstm) -> None:
    out = tiny_stack.logits(np.zeros(0, np.int64), windows(TINY, 0))
    assert out.shape == (0, TINY.n_classes) and out.dtype == np.float64


@pytest.mark.parametrize(
    ("index", "shape", "match"),
    [
        (np.array([0, 7]), (2, 60, 15), r"model_index must lie in \[0, 7\)"),
        (np.array([-1, 0]), (2, 60, 15), r"model_index must lie in"),
        (np.array([0.0, 1.0]), (2, 60, 15), r"integer array"),
        (np.array([0, 1, 2]), (2, 60, 15), r"shape \(2,\)"),
        (np.array([0, 1]), (2, 59, 15), r"windows must have shape \(n, 60, 15\)"),
        (np.array([0, 1]), (2, 900), r"windows must have shape"),
    ],
)
def test_bad_input_raises_value_error(
    tiny_stack: StackedCnnLstm, index: np.ndarray, shape: tuple[int, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_stack.logits(index, np.zeros(shape, np.float32))


def test_stack_predictors_groups_by_config() -> None:
    other = CnnLstmConfig(conv_channels=(3,), kernel_size=3, lstm_hidden=4, head_hidden=3)
    predictors = {
        "b-tiny": make_predictor(TINY, 1),
        "a-other": make_predictor(other, 2),
        "c-tiny": make_predictor(TINY, 3),
        "a-tiny": make_predictor(TINY, 4),
    }
    groups = stack_predictors(predictors)
    assert len(groups) == 2
    by_size = {len(group.model): group for group in groups}
    assert by_size[3].index == {"a-tiny": 0, "b-tiny": 1, "c-tiny": 2}
    assert by_size[1].index == {"a-other": 0}
    names = ["c-tiny", "a-tiny", "c-tiny", "b-tiny"]  # a group answers calibrated probabilities by name
    batch = windows(TINY, len(names))
    expected = np.concatenate([predictors[n].predict_proba(batch[i : i + 1]) for i, n in enumerate(names)])
    np.testing.assert_allclose(by_size[3].predict_proba(names, batch), expected, atol=ATOL, rtol=0)
    with pytest.raises(KeyError):
        by_size[3].predict_proba(["a-other"], windows(TINY, 1))


def test_names_sharing_one_network_share_one_slot_with_their_own_temperatures() -> None:
    shared = make_predictor(POOLED, 5, network_id="pooled-1h")
    twin = CnnLstmPredictor(
        stored=StoredModel("m6:test", "m6", "test", Path("."), {}, shared.stored.metadata),
        network=shared.network,
        scaler=shared.scaler,
        temperature=shared.temperature * 3,
        device=shared.device,
    )
    (group,) = stack_predictors({"btc": shared, "eth": twin})
    assert len(group.model) == 1 and group.index == {"btc": 0, "eth": 0}
    batch = windows(POOLED, 3)
    out = group.predict_proba(["btc", "eth", "eth"], batch)
    np.testing.assert_array_equal(out[0], shared.predict_proba(batch[:1])[0])  # float32, bit for bit
    np.testing.assert_array_equal(out[1:], twin.predict_proba(batch[1:]))
    assert not np.allclose(out[1], shared.predict_proba(batch[1:2])[0], atol=1e-4)  # its own temperature


def test_mixed_configs_refused_in_one_stack() -> None:
    with pytest.raises(ValueError, match="stack_predictors"):
        StackedCnnLstm([make_predictor(TINY, 1), make_predictor(CnnLstmConfig(lstm_hidden=8), 2)])
    with pytest.raises(ValueError, match="at least one"):
        StackedCnnLstm([])


def test_probabilities_are_the_same_bits_however_they_are_batched() -> None:
    """What `/replay` relies on: a window computed alone gives the float32 probabilities it got in any batch."""
    predictors = {f"m{seed}": make_predictor(CnnLstmConfig(), seed) for seed in range(4)}
    (group,) = stack_predictors(predictors)
    names = ["m0", "m3", "m1", "m1", "m2", "m0", "m3", "m2", "m2"]
    batch = windows(CnnLstmConfig(), len(names), seed=4)
    together = group.predict_proba(names, batch)
    alone = np.concatenate([predictors[n].predict_proba(batch[i : i + 1]) for i, n in enumerate(names)])
    np.testing.assert_array_equal(together, alone)
