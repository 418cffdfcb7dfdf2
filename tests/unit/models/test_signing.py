"""Signed models (SIGNALS_MODEL_SIGNING_KEY): the signature covers the whole stored metadata and every file.

An edit of what the server acts on (edge verdict, threshold, temperature, costs, feature names), made in
`model.yaml` as an editor would, must be refused at load with a message naming what changed; an untouched signed
model loads; a v1 signature (tag, labels and file hashes only) is refused with the command that re-signs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from signals.cli import app
from signals.core.errors import ModelIntegrityError
from signals.models.cnn_lstm.artifact import CALIBRATION_FILE, load_cnn_lstm, save_cnn_lstm_models
from signals.models.cnn_lstm.training import TrainConfig, TrainingResult, train_pooled
from signals.models.registry import SIGNATURE_FILE, StoredModel, canonical_json, load_model, save_model, sha256_of
from tests.support.factories import random_walk_candles
from tests.support.models import TINY
from tests.support.world import environment

KEY = "a-secret-the-model-store-does-not-hold"
SYMBOL = "BTC/USDT"


@pytest.fixture(scope="module")
def trained() -> TrainingResult:
    candles = random_walk_candles(700, timeframe="1h", seed=3)
    return train_pooled({SYMBOL: candles}, "1h", TrainConfig(epochs=1, batch_size=64, horizon=4, seed=3), TINY)


@pytest.fixture(autouse=True)
def only_this_tests_models() -> Iterator[None]:
    """Every version a test saves (tampered ones included) is deleted afterwards: later tests share the store."""
    before = {str(m.tag) for m in bentoml.models.list()}
    yield
    for model in bentoml.models.list():
        if str(model.tag) not in before:
            bentoml.models.delete(model.tag)


@pytest.fixture()
def signing() -> Iterator[None]:
    with environment({"SIGNALS_MODEL_SIGNING_KEY": KEY}):
        yield


def signed_model(trained: TrainingResult) -> StoredModel:
    """A new version of the pair's model, saved (and so signed) with the key set."""
    (stored,) = save_cnn_lstm_models(trained, exchange="synthetic")
    assert (Path(stored.path) / SIGNATURE_FILE).is_file()
    return stored


def edit_model_yaml(stored: StoredModel, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the metadata in `model.yaml` as someone with write access to the store would (YAML in, YAML out)."""
    path = Path(stored.path) / "model.yaml"
    info = yaml.safe_load(path.read_text())
    change(info["metadata"])
    path.chmod(0o644)
    path.write_text(yaml.safe_dump(info, sort_keys=False))


def _make_positive(metadata: dict[str, Any]) -> None:
    metadata["edge"]["verdict"] = "positive"
    metadata["threshold"] = 0.30


def _set_threshold(metadata: dict[str, Any]) -> None:
    metadata["threshold"] = 0.30


def _double_temperature(metadata: dict[str, Any]) -> None:
    metadata["temperature"] = 2 * float(metadata["temperature"])


def _free_trading(metadata: dict[str, Any]) -> None:
    metadata["costs"]["fee"] = 0.0


def _rename_a_feature(metadata: dict[str, Any]) -> None:
    metadata["feature_names"][0] = "close"


EDITS = [
    pytest.param(_make_positive, ["metadata 'edge'", "metadata 'threshold'"], id="verdict-and-threshold"),
    pytest.param(_set_threshold, ["metadata 'threshold'"], id="threshold"),
    pytest.param(_double_temperature, ["metadata 'temperature'"], id="temperature"),
    pytest.param(_free_trading, ["metadata 'costs'"], id="costs"),
    pytest.param(_rename_a_feature, ["metadata 'feature_names'"], id="feature-name"),
]


def test_an_untouched_signed_model_loads(trained: TrainingResult, signing: None) -> None:
    stored = signed_model(trained)
    assert load_model(stored.tag).metadata == stored.metadata
    assert load_cnn_lstm(stored.tag).tag == stored.tag
    signature = json.loads((Path(stored.path) / SIGNATURE_FILE).read_text())
    assert signature["manifest"] == 2 and KEY not in json.dumps(signature)
    assert set(signature["files"]) == {"weights.safetensors", "scaler.json", CALIBRATION_FILE}


@pytest.mark.parametrize(("edit", "named"), EDITS)
def test_an_edit_of_the_metadata_is_refused_naming_what_changed(
    trained: TrainingResult, signing: None, edit: Callable[[dict[str, Any]], None], named: list[str]
) -> None:
    stored = signed_model(trained)
    edit_model_yaml(stored, edit)
    with pytest.raises(ModelIntegrityError, match="does not match its signature") as refused:
        load_cnn_lstm(stored.tag)
    message = str(refused.value)
    assert f"model {stored.tag}" in message and "re-sign with `signals models sign" in message
    for part in named:
        assert part in message
    assert "file " not in message  # the files are untouched: only the metadata is named
    assert load_model(stored.tag, check_signature=False).tag == stored.tag  # the signature alone refuses it


def test_an_edited_file_with_its_hash_rewritten_is_refused_naming_the_file(
    trained: TrainingResult, signing: None
) -> None:
    stored = signed_model(trained)
    calibration = Path(stored.file(CALIBRATION_FILE))
    calibration.chmod(0o644)
    calibration.write_text(json.dumps({**json.loads(calibration.read_text()), "threshold": 0.30}))
    digest = sha256_of(calibration)
    edit_model_yaml(stored, lambda metadata: metadata["sha256"].__setitem__(CALIBRATION_FILE, digest))
    with pytest.raises(ModelIntegrityError, match=re.escape(f"file '{CALIBRATION_FILE}'")) as refused:
        load_model(stored.tag)
    assert "metadata 'sha256'" in str(refused.value)


def test_a_file_added_to_a_signed_model_is_refused_naming_it(trained: TrainingResult, signing: None) -> None:
    stored = signed_model(trained)
    (Path(stored.path) / "extra.pkl").write_bytes(b"not signed")
    with pytest.raises(ModelIntegrityError, match="file 'extra.pkl' added"):
        load_model(stored.tag)


def test_an_altered_signature_file_is_refused(trained: TrainingResult, signing: None) -> None:
    stored = signed_model(trained)
    path = Path(stored.path) / SIGNATURE_FILE
    signature = json.loads(path.read_text())
    signature["metadata"]["threshold"] = "0" * 64  # the attacker rewrites the signed digest too
    path.write_text(json.dumps(signature))
    with pytest.raises(ModelIntegrityError, match="signature.json was altered"):
        load_model(stored.tag)


def test_a_v1_signature_is_refused_with_the_command_that_re_signs(trained: TrainingResult, signing: None) -> None:
    stored = signed_model(trained)
    path = Path(stored.path) / SIGNATURE_FILE
    signature = json.loads(path.read_text())
    path.write_text(json.dumps({"alg": "hmac-sha256", "key_id": signature["key_id"], "value": "ab" * 32}))
    with pytest.raises(ModelIntegrityError, match="manifest v1 signature") as refused:
        load_model(stored.tag)
    assert f"re-sign with `signals models sign {stored.tag}`" in str(refused.value)
    signed = CliRunner().invoke(app, ["models", "sign", stored.tag])
    assert signed.exit_code == 0, signed.output
    assert load_cnn_lstm(stored.tag).tag == stored.tag


TRICKY_FLOATS = {
    "tenth": 0.1,
    "third": 1 / 3,
    "tiny": 1e-300,
    "subnormal": 5e-324,
    "big": 1e16,
    "negative_zero": -0.0,
    "exponent_without_dot": 2.5e-07,
    "integral_float": 1.0,
    "integer": 1,
    "numpy": np.float64(0.30000000000000004),
    "nan": float("nan"),
    "infinity": float("-inf"),
    "nested": {"z": [0.1, 1e-05, {"b": True, "a": None}], "a": "ünïcode"},
}


def test_canonical_json_of_the_metadata_survives_a_round_trip_through_model_yaml() -> None:
    stored = save_model(
        "signing-round-trip",
        labels={"family": "test"},
        files={"blob.bin": lambda path: path.write_bytes(b"x")},
        metadata={"floats": TRICKY_FLOATS},
    )
    read_back = bentoml.models.get(stored.tag)  # model.yaml parsed from disk
    again = read_back.info.metadata["floats"]
    expected = {
        **TRICKY_FLOATS,
        "numpy": 0.30000000000000004,
        "nested": {"z": [0.1, 1e-05, {"b": True}], "a": "ünïcode"},
    }
    assert canonical_json(again) == canonical_json(expected)
    assert isinstance(again["integral_float"], float) and isinstance(again["integer"], int)
    assert math.copysign(1.0, again["negative_zero"]) == -1.0
    assert b'"nan":NaN' in canonical_json(again) and b'"infinity":-Infinity' in canonical_json(again)
