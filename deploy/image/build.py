"""`make image`'s build: the bento of the versions the ledger serves, then the two-stage image, quietly.

`python deploy/image/build.py [--tag trading-signals:latest]`, with the settings of the server whose models it bakes
(SIGNALS_DATA_DIR, SIGNALS_UNIVERSE, ...; BENTOML_HOME for the store):
1. the served version of each model, as the server would choose it now (`ModelCatalog.from_store` on the ledger's
   promotions and pins), never a newer candidate held in shadow; printed, one line each;
2. `bentoml build` with those versions as SIGNALS_PINNED_VERSIONS, so each runner declares (and the bento copies)
   exactly them (`runners.common.declare_models`);
3. BentoML's build context (the bento and its models), deploy/image/Containerfile and slim.py beside them, and
   `podman build`; its log goes to a file, named on failure. Prints the image's tag and size.
The context is made readable by all first: the image runs as BentoML's user, the copies belong to root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def served_versions() -> dict[str, str]:
    """Model name -> the version the server would serve now (what `/models` calls served, shadows excluded)."""
    from signals.core.settings import get_settings
    from signals.ledger.store import Ledger
    from signals.serving.catalog import ModelCatalog

    settings = get_settings()
    ledger = Ledger.from_settings(settings)
    try:
        states = ledger.model_states()
    except Exception as error:  # a ledger never migrated (no server ran yet): the newest version serves
        print(f"image: no promotions in the ledger ({type(error).__name__}); each model's newest version serves")
        states = {}
    finally:
        ledger.close()
    catalog = ModelCatalog.from_store(settings, states)
    served = {e.name: e.version for e in catalog.entries if e.error is None}
    served |= {e.name: e.version for e in catalog.shadows if e.lost_to is not None and e.error is None}
    for entry in catalog.entries:
        state = states.get(entry.name)
        why = "pinned" if entry.name in settings.pinned_versions or (state or {}).get("pinned") else (
            "promoted" if state else "newest")  # fmt: skip
        print(f"image: {entry.name}:{entry.version} ({why})" if entry.error is None
              else f"image: {entry.name} left out: {entry.error}")  # fmt: skip
    return served


def build_bento(served: dict[str, str]) -> str:
    env = {**os.environ, "SIGNALS_PINNED_VERSIONS": json.dumps(served), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = Path(sys.executable).parent / "bentoml"
    done = subprocess.run([str(bentoml), "build", "-o", "tag"], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"image: bentoml build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return next(line for line in done.stdout.splitlines() if line.startswith("__tag__:")).removeprefix("__tag__:")


def build_image(bento_tag: str, image_tag: str, log: Path) -> None:
    import bentoml
    from bentoml._internal.container import construct_containerfile

    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(HERE / "containers.conf"))}
    with construct_containerfile(bentoml.get(bento_tag)) as (context, _):
        shutil.copy(HERE / "Containerfile", Path(context) / "Containerfile")
        shutil.copy(HERE / "slim.py", Path(context) / "slim.py")
        readable(Path(context))
        command = ["podman", "build", "--network=host", "-f", "Containerfile", "-t", image_tag, "."]
        with log.open("w") as out:
            done = subprocess.run(command, cwd=context, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"image: podman build failed (log: {log}):\n" + "".join(log.read_text().splitlines(True)[-30:]))
    for line in log.read_text().splitlines():
        if line.startswith("slim:"):
            print(f"image: {line}")
    size = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", image_tag], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    print(f"image: {image_tag} from bento {bento_tag}, {int(size) / 1e9:.2f} GB")


def readable(context: Path) -> None:
    """Let every user read the build context: BentoML's store makes each model version's folder 0700 (mkdtemp),
    COPY keeps modes, and the image runs as `bentoml`, not as the root that owns the copies."""
    for path in [context, *context.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="trading-signals:latest", help="the image's tag")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "trading-signals-image.log")
    args = parser.parse_args()
    served = served_versions()
    bento_tag = build_bento(served)
    print(f"image: bento {bento_tag}")
    build_image(bento_tag, args.tag, args.log)


if __name__ == "__main__":
    main()
