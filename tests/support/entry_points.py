"""The checkout's own entry points (pyproject.toml) in this process's package metadata, as `pip install -e .`
would write them: a virtual environment installed from an older checkout lacks a newly declared one.

Written as a distribution of the project's own name on the front of `sys.path`: `importlib.metadata` takes the
first distribution of a name, so the stale one is shadowed (and an up-to-date install reads the same)."""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).parents[2]


def project_entry_points() -> dict[str, dict[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups: dict[str, dict[str, str]] = dict(project.get("entry-points", {}))
    groups["console_scripts"] = dict(project.get("scripts", {}))
    return groups


def ensure_project_entry_points(site: Path) -> bool:
    """Shadow the installed metadata when it lacks a declared entry point; True when it did."""
    groups = project_entry_points()
    installed = {(p.group, p.name, p.value) for group in groups for p in entry_points(group=group)}
    if all((g, n, v) in installed for g, names in groups.items() for n, v in names.items()):
        return False
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{n} = {v}\n" for n, v in names.items()) for group, names in groups.items()]
    (info / "entry_points.txt").write_text("\n".join(lines))
    sys.path.insert(0, str(site))
    return True
