"""Slim the image's virtualenv in the builder stage (deploy/image/Containerfile): `slim.py VENV SRC`.

1. Remove what serving never reads: test suites, C/C++ headers and Cython sources, torch's C++ test binaries,
   every `__pycache__` uv or pip left.
2. Compile to bytecode only the modules a start imports (the service with its runners, BentoML's server and worker,
   uvicorn, the CLI's ledger migration) and the project's own package, as unchecked-hash .pyc files: valid whatever
   timestamps the copy into the next stage gives, and the root filesystem is read-only at run time, so nothing
   could write them later. The rest of site-packages stays source only: what no start imports costs no bytes.
"""

from __future__ import annotations

import compileall
import importlib
import py_compile
import shutil
import sys
from pathlib import Path

PRUNED_DIRS = {"tests", "__pycache__"}
PRUNED_SUFFIXES = {".pyx", ".pxd", ".pxi", ".h", ".hpp", ".c", ".cc", ".cpp", ".cu", ".cuh", ".a"}
PRUNED_PATHS = ["torch/test", "torch/include", "torch/share", "pyarrow/include", "pyarrow/src",
                "torch/lib/libtorchbind_test.so", "numpy/_core/include", "numpy/f2py/src"]  # fmt: skip
STARTED = [
    "service",
    "signals.cli",
    "signals.cli.app",
    "bentoml_cli.cli",
    "bentoml_cli.serve",
    "_bentoml_impl.server.serving",
    "_bentoml_impl.server.app",
    "_bentoml_impl.worker.service",
    "circus.arbiter",
    "circus.watcher",
    "circus.sockets",
    "uvicorn",
    "uvicorn.main",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.protocols.websockets.wsproto_impl",
    "alembic.command",
    "alembic.runtime.migration",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
]


def prune(site: Path) -> int:
    freed = 0
    for relative in PRUNED_PATHS:
        path = site / relative
        if path.exists():
            freed += size(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in sorted(site.rglob("*"), reverse=True):
        if path.is_dir() and path.name in PRUNED_DIRS and not path.is_symlink():
            freed += size(path)
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in PRUNED_SUFFIXES:
            freed += path.stat().st_size
            path.unlink()
    return freed


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def compile_started(roots: list[Path]) -> tuple[int, list[str]]:
    sys.dont_write_bytecode = True  # the imports below must not write timestamp-checked .pyc files
    missing = []
    for name in STARTED:
        try:
            importlib.import_module(name)
        except Exception as error:  # an optional server part absent here: say so, keep the rest
            missing.append(f"{name} ({type(error).__name__}: {error})")
    compiled = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if source and source.endswith(".py") and any(Path(source).is_relative_to(root) for root in roots):
            py_compile.compile(source, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH, doraise=True)
            compiled += 1
    return compiled, missing


def main(venv: Path, src: Path) -> None:
    site = next(venv.glob("lib/python3*/site-packages"))
    freed = prune(site)
    sys.path.insert(0, str(src))
    compiled, missing = compile_started([venv, src])
    package = compileall.compile_dir(
        src / "signals", quiet=2, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    print(f"slim: removed {freed / 1e6:.0f} MB; compiled {compiled} imported modules (package: {bool(package)})")
    for line in missing:
        print(f"slim: not importable here: {line}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
