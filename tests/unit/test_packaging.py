"""The packaging cannot drift: what the bento installs is what pyproject.toml declares, and the bento ships the
package without its test doubles."""

from __future__ import annotations

import tomllib

import yaml

from tests.support.paths import REPO_ROOT


def test_the_bento_installs_exactly_the_project_dependencies() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    bento = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())
    assert bento["python"]["packages"] == project["dependencies"]


def test_the_bento_includes_the_package_and_excludes_its_test_doubles() -> None:
    bento = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())
    assert {"service.py", "signals/**/*.py"} <= set(bento["include"])
    assert "/signals/testing/" in bento["exclude"] and "/tests/" in bento["exclude"]  # anchored at the root
    assert all(p.startswith(("/", "**/")) for p in bento["exclude"])  # "data/" alone also dropped signals/data/
    assert bento["service"] == "service:SignalService"
