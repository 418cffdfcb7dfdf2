"""Import models into the BentoML model store with the SHA-256 of every file, and load them back verified.

Each family decides its files and metadata; this module owns the part they share: names, labels,
hashing, the atomic hand-over to BentoML (`bentoml.models.create` only saves when its block succeeds),
and the check on load that refuses a missing or altered file with a message naming model and file.
"""

from __future__ import annotations

import hashlib
import logging
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound as BentoNotFound

from signals.core.errors import ModelIntegrityError, ModelNotFound

logger = logging.getLogger(__name__)

FileWriter = Callable[[Path], None]
SHA256_KEY = "sha256"
_TRACKED_LIBRARIES = ("torch", "numpy", "pandas", "ta-lib", "stable-baselines3", "gymnasium", "bentoml", "safetensors")


@dataclass(frozen=True)
class StoredModel:
    """A model read back from the store whose files all matched their recorded SHA-256."""

    tag: str
    name: str
    version: str
    path: Path
    labels: dict[str, str]
    metadata: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TRACKED_LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def save_model(
    name: str, *, labels: dict[str, str], files: dict[str, FileWriter], metadata: dict[str, Any]
) -> StoredModel:
    """Create a new version of `name`: write each file, record its SHA-256 in the metadata, save.

    `metadata` must hold only JSON-like values (BentoML stores it as YAML); None values are left out (BentoML
    refuses them), so a reader treats a missing key as "unset". Library versions are added.
    """
    with bentoml.models.create(name, labels=labels, metadata=without_none(metadata)) as model:
        hashes: dict[str, Any] = {}
        for filename, write in files.items():
            target = Path(model.path_of(filename))
            write(target)
            hashes[filename] = sha256_of(target)
        model.info.metadata[SHA256_KEY] = hashes
        versions: dict[str, Any] = dict(library_versions())
        model.info.metadata.setdefault("library_versions", versions)
    logger.info("saved %s with files %s", model.tag, sorted(hashes))
    return load_model(str(model.tag))


def without_none(value: Any) -> Any:
    """`value` with every None dropped from its dicts and lists, recursively."""
    if isinstance(value, dict):
        return {key: without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [without_none(item) for item in value if item is not None]
    return value


def load_model(tag: str) -> StoredModel:
    """Resolve `tag` (``name`` or ``name:version``, default latest) and verify every recorded file."""
    try:
        model = bentoml.models.get(tag)
    except BentoNotFound as error:
        raise ModelNotFound(f"no model {tag!r} in the model store; run `signals models` to list them") from error
    metadata = dict(model.info.metadata)
    hashes = metadata.get(SHA256_KEY)
    if not isinstance(hashes, dict) or not hashes:
        raise ModelIntegrityError(f"model {model.tag} records no SHA-256 for its files; re-import it")
    root = Path(model.path)
    for filename, expected in hashes.items():
        expected = str(expected)
        path = root / filename
        if not path.is_file():
            raise ModelIntegrityError(f"model {model.tag}: file {filename!r} is missing from {root}")
        actual = sha256_of(path)
        if actual != expected:
            raise ModelIntegrityError(
                f"model {model.tag}: file {filename!r} fails its SHA-256 (recorded {expected[:12]}..., "
                f"found {actual[:12]}...); the file was altered or corrupted, re-train or re-import it"
            )
    return StoredModel(
        tag=str(model.tag),
        name=model.tag.name,
        version=str(model.tag.version),
        path=root,
        labels=dict(model.info.labels),
        metadata=metadata,
    )


def list_models(family: str | None = None) -> Iterator[bentoml.Model]:
    """Every stored model (all versions, newest first per name), optionally of one family label."""
    for model in sorted(bentoml.models.list(), key=lambda m: (m.tag.name, m.info.creation_time), reverse=True):
        if family is None or model.info.labels.get("family") == family:
            yield model
