"""Slim the image's virtualenv in the builder stage (deploy/image/Containerfile): `slim.py VENV SRC`.

1. Remove what serving never reads: test suites, C/C++ headers and Cython sources, torch's C++ test binaries,
   every `__pycache__` uv or pip left, and pyarrow's optional parts nothing here loads (Flight, the S3, GCS, HDFS
   and Azure filesystems: `pyarrow.fs` imports each inside `try/except ImportError`; the candle store is local).
2. Strip the symbol tables of the large shared libraries (libtorch_cpu.so alone carries ~90 MB of them): the
   dynamic symbols the loader needs stay. Only libraries a fresh interpreter loads are stripped, and one that does
   not load stripped (auditwheel's patchelf-edited numpy/scipy libraries) is put back as it was.
3. Hard-link shared libraries that are byte for byte the same (pyarrow ships libarrow_python.so three times under
   three names; numpy and scipy vendor the same libgfortran): one copy in the layer.
4. Compile to bytecode only the modules a start imports (the service with its runners, BentoML's server and worker,
   uvicorn, the CLI's ledger migration) and the project's own package, as unchecked-hash .pyc files: valid whatever
   timestamps the copy into the next stage gives, and the root filesystem is read-only at run time, so nothing
   could write them later. The rest of site-packages stays source only: what no start imports costs no bytes.
"""

from __future__ import annotations

import compileall
import hashlib
import importlib
import json
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

PRUNED_DIRS = {"tests", "__pycache__"}
PRUNED_SUFFIXES = {".pyx", ".pxd", ".pxi", ".h", ".hpp", ".c", ".cc", ".cpp", ".cu", ".cuh", ".a"}
PRUNED_PATHS = ["torch/test", "torch/include", "torch/share", "pyarrow/include", "pyarrow/src",
                "torch/lib/libtorchbind_test.so", "numpy/_core/include", "numpy/f2py/src"]  # fmt: skip
PRUNED_GLOBS = ["pyarrow/*flight*", "pyarrow/libarrow_s3.so*", "pyarrow/_s3fs.*", "pyarrow/_gcsfs.*",
                "pyarrow/_hdfs.*", "pyarrow/_azurefs.*", "pyarrow/_pyarrow_cpp_tests.*"]  # fmt: skip
STRIPPED_MIN_BYTES = 1_000_000
OPTIONAL = {"uvicorn.protocols.http.httptools_impl"}  # uvicorn's faster HTTP parser: not installed, h11 serves
LOADS = """
import ctypes, json, sys
loaded = []
for path in json.load(sys.stdin):
    try:
        ctypes.CDLL(path)
        loaded.append(path)
    except OSError:
        pass
print(json.dumps(loaded))
"""
STARTED = [
    "service",
    # what the runners and the live source import when they start, not with service.py (see signals.runners)
    "signals.models.local",
    "signals.models.model_set",
    "signals.models.cnn_lstm.network",
    "safetensors.torch",
    "stable_baselines3",
    "stable_baselines3.common.save_util",
    "stable_baselines3.common.policies",
    "lightgbm",  # the families runner's, when it loads a GBM model (signals.models.gbm.plugin)
    "ccxt.async_support",
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
    for pattern in PRUNED_GLOBS:
        for path in site.glob(pattern):
            freed += path.stat().st_size
            path.unlink()
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


def libraries(site: Path) -> list[Path]:
    found = []
    for path in site.rglob("*.so*"):
        if path.is_file() and not path.is_symlink() and (".so." in path.name or path.name.endswith(".so")):
            with path.open("rb") as file:
                if file.read(4) == b"\x7fELF":
                    found.append(path)
    return sorted(found)


def loadable(paths: list[Path]) -> set[str]:
    """The libraries a fresh interpreter can dlopen (each process loads a library once: one process per check)."""
    done = subprocess.run([sys.executable, "-c", LOADS], input=json.dumps([str(p) for p in paths]),
                          capture_output=True, text=True, check=True)  # fmt: skip
    return set(json.loads(done.stdout))


def strip(site: Path) -> int:
    tool = shutil.which("strip")
    if tool is None:
        print("slim: no `strip` in the builder (binutils): libraries kept as they are")
        return 0
    large = [p for p in libraries(site) if p.stat().st_size >= STRIPPED_MIN_BYTES]
    before = loadable(large)
    large = [p for p in large if str(p) in before]  # what cannot be checked here is left as it is
    sizes = {p: p.stat().st_size for p in large}
    backups = site.parent / "stripped-originals"
    backups.mkdir()
    for index, path in enumerate(large):
        shutil.copy2(path, backups / str(index))
        subprocess.run([tool, "--strip-unneeded", str(path)], check=True)
    broken = before - loadable(large)
    for index, path in enumerate(large):
        if str(path) in broken:
            shutil.copy2(backups / str(index), path)
            print(f"slim: kept {path.relative_to(site)} unstripped (it did not load stripped)")
    shutil.rmtree(backups)
    return sum(size - path.stat().st_size for path, size in sizes.items())


def deduplicate(site: Path) -> int:
    first: dict[tuple[int, str], Path] = {}
    freed = 0
    for path in libraries(site):
        key = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        if key in first:
            path.unlink()
            path.hardlink_to(first[key])
            freed += key[0]
        else:
            first[key] = path
    return freed


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
    stripped = strip(site)
    linked = deduplicate(site)
    sys.path.insert(0, str(src))
    compiled, missing = compile_started([venv, src])
    package = compileall.compile_dir(
        src / "signals", quiet=2, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    print(
        f"slim: removed {freed / 1e6:.0f} MB, stripped {stripped / 1e6:.0f} MB of symbols, hard-linked "
        f"{linked / 1e6:.0f} MB of duplicates; compiled {compiled} imported modules (package: {bool(package)})"
    )
    for line in missing:
        print(f"slim: not importable here: {line}")
    if any(line.split(" ")[0] not in OPTIONAL for line in missing) or not package:
        sys.exit("slim: a module a start imports does not import: the image would not start")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
