"""The container image, built and run here: `make image`'s steps (the debootstrapped bases, deploy/image/build.py:
the bento of the served versions, the two-stage podman build) on the test world's models; what the image holds (no
compiler, pip, wheel or this machine's extra CA certificates; BentoML's user); then the image run with podman on
127.0.0.1 as `deploy/kubernetes` runs it (uid 1034, read-only root, /tmp a tmpfs, the data volume at
/var/lib/signals): ready, a /predict from the bento's own models, and the migration command of the deployment's Job.

The figures (image size, build and start times) are saved in test-artifacts/image.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.browser import ARTIFACTS
from tests.support.paths import REPO_ROOT
from tests.support.servers import free_port, wait_for_readyz
from tests.support.world import World, copy_world

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]  # a cold base image and containerize: minutes
CONF = {"CONTAINERS_CONF": str(REPO_ROOT / "deploy" / "image" / "containers.conf")}


def run(command: list[str], *, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env={**os.environ, **CONF, **(env or {})},
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: run `make system-deps` (apt-get install podman runc debootstrap)")
    return copy_world(trained_world, tmp_path_factory.mktemp("image-world"))


@pytest.fixture(scope="module")
def image(world: World) -> Iterator[tuple[str, dict[str, float]]]:
    figures: dict[str, float] = {}
    started = time.monotonic()
    run([str(REPO_ROOT / "deploy" / "image" / "base.sh")], timeout=900)
    figures["base_s"] = round(time.monotonic() - started, 1)
    image_tag = f"localhost/trading-signals-test:{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    built = run([sys.executable, str(REPO_ROOT / "deploy" / "image" / "build.py"), "--tag", image_tag],
                timeout=1500, env=world.env())  # fmt: skip
    figures["build_s"] = round(time.monotonic() - started, 1)
    assert "image: cnn-lstm" in built.stdout, built.stdout  # it says which versions it baked
    size = run(["podman", "image", "inspect", "--format", "{{.Size}}", image_tag], timeout=60).stdout.strip()
    figures["size_mb"] = round(int(size) / 1e6, 1)
    try:
        yield image_tag, figures
    finally:
        subprocess.run(["podman", "rmi", "-f", image_tag], capture_output=True, env={**os.environ, **CONF})


def test_the_image_serves_the_bentos_models_on_loopback(
    world: World, image: tuple[str, dict[str, float]], tmp_path: Path
) -> None:
    image_tag, figures = image
    data = tmp_path / "data"
    shutil.copytree(world.data_dir, data)
    for folder in [data, *data.rglob("*")]:
        folder.chmod(0o777 if folder.is_dir() else 0o666)  # the container runs as its own user
    port = free_port()
    name = f"signals-test-{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in world.env().items() if key != "SIGNALS_DATA_DIR"}  # the image's own
    options = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    started = time.monotonic()
    run(
        ["podman", "run", "-d", "--rm", "--name", name, "--network=host", "--read-only", "--tmpfs", "/tmp",
         "-v", f"{data}:/var/lib/signals", *options, image_tag,
         "--host", "127.0.0.1", "--port", str(port)],
        timeout=120,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def logs() -> str:
            done = subprocess.run(["podman", "logs", name], capture_output=True, text=True, env={**os.environ, **CONF})
            return done.stdout[-3000:] + done.stderr[-3000:]

        wait_for_readyz(url, timeout=180, logs=logs)
        figures["ready_s"] = round(time.monotonic() - started, 1)
        signal = httpx.post(f"{url}/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}, timeout=60)
        assert signal.status_code == 200, signal.text
        assert signal.json()["symbol"] == "BTC/USDT" and signal.json()["data_source"] == "synthetic"
        assert httpx.get(f"{url}/ui/").status_code == 200
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, env={**os.environ, **CONF})
    migrated = run(
        ["podman", "run", "--rm", "--network=host", "-e", "SIGNALS_DATABASE_URL=sqlite:////tmp/ledger.db", image_tag,
         "python", "-m", "signals", "ledger", "migrate"],
        timeout=120,
    )  # fmt: skip
    assert "at revision" in migrated.stdout, migrated.stdout  # the image's CLI migrated a fresh ledger
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "image.json").write_text(json.dumps(figures))


def certificates(bundle: str) -> set[str]:
    return {
        block.split("-----END CERTIFICATE-----")[0].strip() for block in bundle.split("-----BEGIN CERTIFICATE-----")[1:]
    }


def test_the_image_holds_no_build_tools_wheels_or_this_machines_certificates(
    image: tuple[str, dict[str, float]],
) -> None:
    image_tag, _ = image
    user = run(["podman", "image", "inspect", "--format", "{{.Config.User}}", image_tag], timeout=60).stdout.strip()
    assert user == "bentoml"
    probe = run(["podman", "run", "--rm", "--entrypoint", "sh", image_tag, "-c",
                 "id -u; for tool in gcc cc g++ make git gpg pip pip3 uv strip ld; do command -v $tool; done; "
                 "ls /wheels 2>/dev/null; "
                 "find /app /home -xdev \\( -name '*.whl' -o -type d -name tests \\) -print 2>/dev/null"],
                timeout=120).stdout.split()  # fmt: skip
    assert probe == ["1034"], probe  # BentoML's user (deploy/kubernetes: runAsUser 1034), and nothing else found
    bundle = run(["podman", "run", "--rm", "--entrypoint", "cat", image_tag, "/etc/ssl/certs/ca-certificates.crt"],
                 timeout=60).stdout  # fmt: skip
    stock = Path("/usr/share/ca-certificates").rglob("*.crt")
    extra = certificates(Path("/etc/ssl/certs/ca-certificates.crt").read_text()) - certificates(
        "".join(path.read_text() for path in stock)
    )  # this machine's own additions (a TLS-intercepting proxy's CA): the build stage's only
    assert certificates(bundle) and not extra & certificates(bundle)
