"""Import models into the BentoML model store with the SHA-256 of every file, and load them back verified.

Each family decides its files and metadata; this module owns the part they share: names, labels,
hashing, the atomic hand-over to BentoML (`bentoml.models.create` only saves when its block succeeds),
the check on load that refuses a missing or altered file with a message naming model and file, and, with a
signing key, the signed manifest that covers the whole metadata and every file (see "signatures" below).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound as BentoNotFound

from signals.core.errors import ModelIntegrityError, ModelNotFound
from signals.models.card import ModelCard
from signals.models.store_yaml import use_libyaml

logger = logging.getLogger(__name__)
use_libyaml()  # every store read of this process (the server's start reads each model.yaml several times)

FileWriter = Callable[[Path], None]
SHA256_KEY = "sha256"
SIGNATURE_FILE = "signature.json"  # beside the files, outside the SHA-256 map it signs
_TRACKED_LIBRARIES = (
    "torch",
    "numpy",
    "pandas",
    "ta-lib",
    "stable-baselines3",
    "gymnasium",
    "bentoml",
    "safetensors",
    "lightgbm",
)


@dataclass(frozen=True)
class StoredModel:
    """A model read back from the store whose files all matched their recorded SHA-256."""

    tag: str
    name: str
    version: str
    path: Path
    labels: dict[str, str]
    metadata: dict[str, Any]

    @cached_property
    def card(self) -> ModelCard:
        """The metadata, typed (the one reader of its keys)."""
        return ModelCard.from_metadata(self.metadata)

    def file(self, name: str) -> Path:
        return self.path / name


class StoredPredictor:
    """What every loaded predictor (CNN-LSTM, a plugin family's, the GBM) answers from its stored model, one way."""

    stored: StoredModel

    @property
    def tag(self) -> str:
        return self.stored.tag

    @property
    def horizon(self) -> int:
        horizon = self.stored.card.horizon
        if horizon is None:
            raise ModelIntegrityError(f"model {self.tag}: metadata field 'horizon' is missing; re-train it")
        return horizon

    @property
    def stop_atr(self) -> float:
        return self.stored.card.stop_atr


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
    key = _signing_key()
    if key is not None:
        sign_model(str(model.tag), key)
    return load_model(str(model.tag))


def without_none(value: Any) -> Any:
    """`value` with every None dropped from its dicts and lists, recursively."""
    if isinstance(value, dict):
        return {key: without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [without_none(item) for item in value if item is not None]
    return value


def load_model(tag: str, *, check_signature: bool = True) -> StoredModel:
    """Resolve `tag` (``name`` or ``name:version``, default latest) and verify every recorded file (and, when a
    signing key is configured and `check_signature`, the model's signature)."""
    try:
        model = _get(tag)
    except BentoNotFound as error:
        raise ModelNotFound(f"no model {tag!r} in the model store; run `signals models` to list them") from error
    metadata = dict(model.info.metadata)
    hashes = metadata.get(SHA256_KEY)
    if not isinstance(hashes, dict) or not hashes:
        raise ModelIntegrityError(f"model {model.tag} records no SHA-256 for its files; re-import it")
    root = Path(model.path)
    verified: dict[str, str] = {}
    for filename, expected in hashes.items():
        expected = str(expected)
        path = root / filename
        if not path.is_file():
            raise ModelIntegrityError(f"model {model.tag}: file {filename!r} is missing from its store directory")
        actual = sha256_of(path)
        if actual != expected:
            raise ModelIntegrityError(
                f"model {model.tag}: file {filename!r} fails its SHA-256 (recorded {expected[:12]}..., "
                f"found {actual[:12]}...); the file was altered or corrupted, re-train or re-import it"
            )
        verified[str(filename)] = actual
    key = _signing_key() if check_signature else None
    if key is not None:
        _verify_signature(model, verified, key)
    return StoredModel(
        tag=str(model.tag),
        name=model.tag.name,
        version=str(model.tag.version),
        path=root,
        labels=dict(model.info.labels),
        metadata=metadata,
    )


# --- signatures -----------------------------------------------------------------------------------------------
# The SHA-256 map sits in the model's own metadata: it detects a corrupted file, not a swapped one (whoever can
# replace policy.zip can rewrite its recorded hash too), and nothing at all guards the rest of the metadata, which
# the server acts on (edge verdict, threshold, temperature, costs, feature names). With SIGNALS_MODEL_SIGNING_KEY
# set, every model must carry a signed manifest (v2): its tag, the digest of its labels, of each top-level
# metadata key and of every file in its directory, with an HMAC-SHA256 over all of it made with the key. Without
# the key nothing can be re-signed, so any edit is refused at load, and the manifest's per-part digests let the
# refusal name what changed (a metadata key, a label, a file). A v1 signature (tag, labels and the SHA-256 map
# only) covers too little and is refused with the command that re-signs.

MANIFEST_VERSION = 2
_NOT_SIGNED = ("model.yaml", SIGNATURE_FILE)  # model.yaml is covered through its labels and metadata


def canonical_json(value: Any) -> bytes:
    """`value` as canonical JSON: sorted keys, no whitespace, UTF-8, tuples as lists.

    Floats are written as Python's shortest round-trip `repr` (what `json.dumps` does), which PyYAML also writes
    and reads back to the same float, so a save/load through BentoML's `model.yaml` gives the same bytes; ints stay
    ints and `1.0` stays `1.0` (YAML keeps the distinction), NaN and infinities are written `NaN`, `Infinity`,
    `-Infinity` (YAML's `.nan`, `.inf` read back as the same floats)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode()


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def manifest(tag: str, labels: dict[str, Any], metadata: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """What a v2 signature covers: the tag, and a digest of the labels, of each top-level metadata key (so a
    refusal names the key) and of every file (`files`: relative path -> SHA-256)."""
    return {
        "manifest": MANIFEST_VERSION,
        "tag": tag,
        "labels": _digest(labels),
        "metadata": {str(key): _digest(value) for key, value in metadata.items()},
        "files": dict(sorted(files.items())),
    }


def key_id(key: str) -> str:
    """A short public fingerprint of a signing key (which key signed, without revealing it)."""
    return hashlib.sha256(b"signals-key-id:" + key.encode()).hexdigest()[:16]


def _hmac(key: str, body: dict[str, Any]) -> str:
    return hmac.new(key.encode(), canonical_json(body), "sha256").hexdigest()


def directory_files(root: Path) -> list[str]:
    """Every file in a model's directory (relative, POSIX), except `model.yaml` and the signature itself."""
    names = (path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file() or path.is_symlink())
    return sorted(name for name in names if name not in _NOT_SIGNED)


def _file_hashes(tag: str, root: Path, known: dict[str, str] | None = None) -> dict[str, str]:
    """SHA-256 of every file in the model's directory (a symlink is refused: it could point anywhere)."""
    known = known or {}
    hashes: dict[str, str] = {}
    for name in directory_files(root):
        path = root / name
        if path.is_symlink():
            raise ModelIntegrityError(f"model {tag}: {name!r} is a symbolic link; refused")
        hashes[name] = known[name] if name in known else sha256_of(path)
    return hashes


def sign_model(tag: str, key: str) -> Path:
    """Write `signature.json` for a stored model (its files checked first); the file's path.

    The manifest is built from `model.yaml` as read back from disk, so what is signed is what the loader reads."""
    model = bentoml.models.get(tag)
    recorded = model.info.metadata.get(SHA256_KEY)
    if not isinstance(recorded, dict) or not recorded:
        raise ModelIntegrityError(f"model {model.tag} records no SHA-256 for its files; re-import it")
    load_model(str(model.tag), check_signature=False)  # refuse to sign files that already fail their hashes
    root = Path(model.path)
    files = _file_hashes(str(model.tag), root)
    body = manifest(str(model.tag), dict(model.info.labels), dict(model.info.metadata), files)
    signature = {"alg": "hmac-sha256", "key_id": key_id(key), **body, "value": _hmac(key, body)}
    path = root / SIGNATURE_FILE
    path.write_text(json.dumps(signature, sort_keys=True, indent=1))
    return path


def _verify_signature(model: bentoml.Model, verified: dict[str, str], key: str) -> None:
    """Refuse the model unless its v2 manifest is signed with `key` and still matches the tag, labels, metadata and
    files (`verified`: the files already hashed by the caller, reused)."""
    path = Path(model.path) / SIGNATURE_FILE
    resign = f"re-sign with `signals models sign {model.tag}` after checking where it came from"
    if not path.is_file():
        raise ModelIntegrityError(
            f"model {model.tag} is not signed, and SIGNALS_MODEL_SIGNING_KEY requires signed models; "
            f"sign it with `signals models sign {model.tag.name}` (after checking where it came from)"
        )
    try:
        signature = json.loads(path.read_text())
        recorded, signer = str(signature["value"]), str(signature["key_id"])
        version = signature.get("manifest", 1)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelIntegrityError(f"model {model.tag}: {SIGNATURE_FILE} is malformed ({error})") from error
    if version != MANIFEST_VERSION:
        raise ModelIntegrityError(
            f"model {model.tag} carries a manifest v{version} signature, which does not cover its metadata "
            f"(edge, threshold, calibration, costs); refused: {resign}"
        )
    if signer != key_id(key):
        raise ModelIntegrityError(f"model {model.tag} was signed with another key ({signer}); re-sign it")
    body = {name: signature.get(name) for name in ("manifest", "tag", "labels", "metadata", "files")}
    if not hmac.compare_digest(recorded, _hmac(key, body)):
        raise ModelIntegrityError(f"model {model.tag}: {SIGNATURE_FILE} was altered (its HMAC does not match); refused")
    root = Path(model.path)
    files = _file_hashes(str(model.tag), root, verified)
    current = manifest(str(model.tag), dict(model.info.labels), dict(model.info.metadata), files)
    changes = manifest_changes(body, current)
    if changes:
        raise ModelIntegrityError(
            f"model {model.tag} does not match its signature: {'; '.join(changes)} changed after signing; refused "
            f"(re-train it, or {resign})"
        )


def manifest_changes(signed: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a signed manifest and the model's current one, each part named."""
    changes = []
    if signed.get("tag") != current["tag"]:
        changes.append(f"tag (signed as {signed.get('tag')})")
    if signed.get("labels") != current["labels"]:
        changes.append("labels")
    for part, noun in (("metadata", "metadata"), ("files", "file")):
        found = signed.get(part)
        before: dict[str, Any] = found if isinstance(found, dict) else {}
        after: dict[str, Any] = current[part]
        for name in sorted(set(before) | set(after)):
            if name not in after:
                changes.append(f"{noun} {name!r} removed")
            elif name not in before:
                changes.append(f"{noun} {name!r} added")
            elif before[name] != after[name]:
                changes.append(f"{noun} {name!r}")
    return changes


def _signing_key() -> str | None:
    from signals.core.settings import get_settings

    secret = get_settings().model_signing_key
    return secret.get_secret_value() if secret is not None else None


@dataclass(frozen=True)
class Unreadable:
    """A version in the store whose `model.yaml` (or layout) BentoML cannot read: skipped, named, and why."""

    tag: str
    reason: str

    @property
    def name(self) -> str:
        return self.tag.split(":")[0]

    @property
    def version(self) -> str:
        return self.tag.split(":")[1]


def store_root() -> Path:
    """The model store's directory (BentoML keeps it on its container; there is no public accessor)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.model_store.get()._path)


def scan_store() -> tuple[list[bentoml.Model], list[Unreadable]]:
    """Every readable model version (newest first per name), and the unreadable ones named with the reason.

    `bentoml.models.list()` raises on the first malformed `model.yaml`, and a server listing its models at start
    would then never start (its worker crash-loops). Here each version is read on its own."""
    root = store_root()
    models: list[bentoml.Model] = []
    unreadable: list[Unreadable] = []
    if not root.is_dir():
        return models, unreadable
    for name_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for version_dir in sorted(p for p in name_dir.iterdir() if p.is_dir()):
            tag = f"{name_dir.name}:{version_dir.name}"
            try:
                models.append(_read_version(tag, version_dir))
            except Exception as error:  # a malformed model.yaml raises YAML, attrs or value errors
                reason = public_text(f"{type(error).__name__}: {' '.join(str(error).split())}", root)[:300]
                unreadable.append(Unreadable(tag, reason))
                logger.warning("model %s is unreadable and skipped: %s", tag, reason)
    return sorted(models, key=lambda m: (m.tag.name, m.info.creation_time), reverse=True), unreadable


_read: dict[Path, tuple[tuple[int, int, int], bentoml.Model]] = {}  # version dir -> (model.yaml's stat, model)


def _read_version(tag: str, version_dir: Path) -> bentoml.Model:
    """The stored version, parsed once per process while its `model.yaml` is unchanged: a server's start scans
    the store from each runner declaration and each runner (every model.yaml parsed several times per process)."""
    try:
        stat = (version_dir / "model.yaml").stat()
    except OSError:
        return bentoml.models.get(tag)  # BentoML names what is missing
    key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    cached = _read.get(version_dir)
    if cached is not None and cached[0] == key:
        return cached[1]
    model = bentoml.models.get(tag)
    _read[version_dir] = (key, model)
    return model


def _get(tag: str) -> bentoml.Model:
    """`bentoml.models.get(tag)`, through the per-process cache of `_read_version` when the version's directory is
    found (a version, or `latest` as BentoML's own `latest` file names it); BentoML's lookup otherwise."""
    name, _, version = tag.partition(":")
    root = store_root()
    try:
        if version in ("", "latest"):
            version = (root / name / "latest").read_text(encoding="utf-8").strip()
        version_dir = root / name / version
        if name and version and version_dir.is_dir():
            return _read_version(f"{name}:{version}", version_dir)
    except (OSError, ValueError):
        pass
    return bentoml.models.get(tag)


def public_text(text: str, root: Path | None = None) -> str:
    """`text` without the model store's absolute path (messages reach HTTP callers)."""
    root = root or store_root()
    return text.replace(str(root), "<model store>")


def list_models(family: str | None = None) -> Iterator[bentoml.Model]:
    """Every readable stored model (all versions, newest first per name), optionally of one family label."""
    models, _ = scan_store()
    for model in models:
        if family is None or model.info.labels.get("family") == family:
            yield model
