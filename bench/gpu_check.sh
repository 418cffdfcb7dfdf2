#!/usr/bin/env bash
# The GPU check (issue 22): the runners on CUDA against the CPU, and batched throughput, within 5 minutes.
# Without CUDA it says "no CUDA device: skipped" and exits 0. Options: see `python -m bench.gpu_check --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" BENTOML_DO_NOT_TRACK=true
exec timeout 300 "$PYTHON" -m bench.gpu_check "$@"
