# One gate for humans and CI: `make test` is what .ci/run calls.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
export BENTOML_DO_NOT_TRACK := true
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install lint typecheck test clean

install: $(STAMP)

# torch first, from the constraints file, so nothing later pulls a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip wheel setuptools
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $(STAMP)

# ruff, mypy (the package and service.py) and import-linter (the layer rule of ../shared/DESIGN.md).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# What the tests need beyond Python: Debian's PostgreSQL (the ledger's second database, started by the tests on
# 127.0.0.1), a headless Chromium with its WebDriver (the dashboard's tests), and podman, runc and debootstrap (the
# container image: `make image` and its test). Installed with apt-get when missing
# and allowed (root); otherwise a one-line message and exit 2.
.PHONY: system-deps
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v podman >/dev/null 2>&1 || missing="$$missing podman"; \
	command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing="$$missing runc"; \
	command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing system packages:$$missing; install them (e.g. sudo apt-get install$$missing)"; exit 2; fi; \
	fi

test: lint system-deps
	$(BIN)/pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# `make serve`: `signals serve` (signals/cli/serve.py) owns the defaults: the demo (synthetic candles the simulated
# source continues as time goes on; demo data and models bootstrapped when missing) unless SIGNALS_SOURCE says live
# or store; a busy port is one line before any setup. `make serve PORT=3001` (or SIGNALS_PORT) picks the port.
PORT ?= $(SERVE_PORT)

.PHONY: serve
serve: install
	@$(BIN)/signals serve $(if $(PORT),--port $(PORT))

# `make image`: an OCI image of the bento, built here with podman (no Docker engine, no Docker Hub): the two
# debootstrapped Debian bases (deploy/image/base.sh, cached), the demo models in the store, then
# deploy/image/build.py: the bento of the versions the ledger serves (it prints them) and a two-stage build
# (deploy/image/Containerfile) whose image holds no compiler, pip, wheel cache or build machine's CA bundle.
# `make run-image` runs it on 127.0.0.1:$(SERVE_PORT) (the README says the same with podman).
IMAGE_TAG ?= trading-signals:latest
image run-image: export CONTAINERS_CONF := $(CURDIR)/deploy/image/containers.conf
.PHONY: image run-image
image: install system-deps
	deploy/image/base.sh
	SIGNALS_EXCHANGE=synthetic $(BIN)/signals bootstrap --backfill-days 0
	SIGNALS_EXCHANGE=synthetic $(BIN)/python deploy/image/build.py --tag $(IMAGE_TAG)

run-image:
	podman run --rm --network=host --read-only --tmpfs /tmp -v trading-signals-data:/var/lib/signals \
	  -e SIGNALS_SOURCE=simulated -e SIGNALS_EXCHANGE=synthetic \
	  -e 'SIGNALS_UNIVERSE=["BTC/USDT","ETH/USDT","SOL/USDT"]' $(IMAGE_TAG) --host $(SERVE_HOST) --port $(SERVE_PORT)

# The reliability battery (issues 12 and 20): limits, fuzzing, exchange outage, runner kill, soak, full disk, the
# WebSocket and stream attacks, the idle-stream flood, a trickled body, the ledger's database stopped or locked.
# Issue 20's scenarios alone: `make chaos CHAOS_ARGS="--only sockets,ledger_outage_postgresql,ledger_outage_sqlite"`.
.PHONY: chaos
chaos: install
	$(PIP) -e '.[dev,bench]'
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

# The benchmark (issue 5): its own world under bench/.work, results in bench/results/ and BENCHMARKS.md.
# BENCH_ARGS passes options through, e.g. `make bench BENCH_ARGS="--duration 5 --clients 1,16"`.
.PHONY: bench
bench: install
	$(PIP) -e '.[dev,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.live_loop
	$(BIN)/python -m bench.fanout
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.summary
