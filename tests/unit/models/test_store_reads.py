"""Reading the model store at start: BentoML's `model.yaml` reader parses with libyaml (`store_yaml`), to the
same model info as PyYAML's own loader, and a scan parses a version again only when its `model.yaml` changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import bentoml
import pytest
import yaml
from bentoml._internal.models import model as bento_model

from signals.models import registry
from signals.models.store_yaml import use_libyaml
from tests.support.models import models_made_here

METADATA = {"nested": {"list": [1, 2.5, "three", "", True], "text": "a: b # not a comment"}, "n": 10**20}


@pytest.fixture
def stored() -> Iterator[bentoml.Model]:
    with models_made_here():
        saved = registry.save_model(
            "store-reads-test",
            labels={"kind": "first"},
            files={"file.txt": lambda path: path.write_text("x")},
            metadata=METADATA,
        )
        yield bentoml.models.get(saved.tag)


def test_libyaml_reads_the_same_model_info_as_pyyaml(stored: bentoml.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    assert use_libyaml() and bento_model.yaml is not yaml  # installed when the registry was imported
    fast = bentoml.models.get(stored.tag).info.to_dict()
    monkeypatch.setattr(bento_model, "yaml", yaml)  # BentoML's own reader, pure Python
    assert bentoml.models.get(stored.tag).info.to_dict() == fast
    assert fast["metadata"]["nested"] == METADATA["nested"] and fast["labels"] == {"kind": "first"}


def scanned(tag: str) -> bentoml.Model:
    models, _ = registry.scan_store()
    return next(model for model in models if str(model.tag) == tag)


def test_a_scan_parses_a_version_again_only_when_its_model_yaml_changed(stored: bentoml.Model) -> None:
    tag = str(stored.tag)
    first = scanned(tag)
    assert scanned(tag) is first  # unchanged: the same parsed model
    model_yaml = Path(stored.path) / "model.yaml"
    model_yaml.write_text(model_yaml.read_text().replace("kind: first", "kind: second-label"))
    again = scanned(tag)
    assert again is not first and again.info.labels == {"kind": "second-label"}
    assert registry.load_model(tag, check_signature=False).labels == {"kind": "second-label"}


def test_a_malformed_model_yaml_is_still_named_unreadable(stored: bentoml.Model) -> None:
    tag = str(stored.tag)
    scanned(tag)
    model_yaml = Path(stored.path) / "model.yaml"
    good = model_yaml.read_text()
    model_yaml.write_text("name: [unclosed\n")
    try:
        models, unreadable = registry.scan_store()
    finally:
        model_yaml.write_text(good)  # the fixture's clean-up lists the store with BentoML, which would raise
    assert tag not in {str(model.tag) for model in models}
    assert [entry.tag for entry in unreadable if entry.tag == tag] == [tag]
