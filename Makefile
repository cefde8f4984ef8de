# Vitrine: `make run` starts the whole system with the demo collection; `make test` runs the suite.
# Both install whatever is missing first (virtual environment, pinned dependencies, models,
# generated stubs, test tools), so a fresh machine needs nothing typed before them.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL_DIR ?= $(HOME)/.cache/vitrine/models
MPNET := $(MODEL_DIR)/all-mpnet-base-v2/modules.json
INSTALLED := $(VENV)/.installed
STUBS := services/v1/.generated
PROTOS := $(wildcard protos/vitrine/v1/*.proto)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export VITRINE_EMBEDDER_MODEL_DIR ?= $(MODEL_DIR)

.PHONY: help install proto models tools run test test-fast lint format bench load lock clean compare-annif train clients

help:
	@echo "make run      start embedder, tagger and search with the demo collection (Ctrl-C stops)"
	@echo "make test     run the whole test suite"
	@echo "make test-fast  the hermetic unit tests only (tests/unit), the loop to run on every change"
	@echo "make install  virtual environment with every pinned dependency (requirements.lock)"
	@echo "make models   assemble the real all-mpnet-base-v2 into $(MODEL_DIR)"
	@echo "make proto    generate Python stubs from protos/ into services/v1"
	@echo "make lint     ruff + buf lint + buf breaking against the last release (protos/releases)"
	@echo "make clients  build the JavaScript and Go client examples (clients/)"
	@echo "make bench    benchmarks (JSON results in bench/results)"
	@echo "make load     load test of a running system (make run first): 64 clients, 60 s a service"
	@echo "make train    train a tagger version on the whole Tate training split (var/tagger/models)"
	@echo "make compare-annif  Annif 1.4.3 on the same split, scored by the same metric code"

install: $(INSTALLED) $(STUBS)

# torch and torchvision come from this machine's local package index (see requirements.lock).
$(INSTALLED): requirements.lock pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) scripts/gen_protos.py  # the package includes the generated stubs (vitrine.v1)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -c "import torch, sentence_transformers, open_clip, grpc, qdrant_edge"
	@touch $@

proto: $(STUBS)
$(STUBS): $(PROTOS) scripts/gen_protos.py $(INSTALLED)
	$(PY) scripts/gen_protos.py
	@touch $@

models: $(MPNET)
$(MPNET): | $(INSTALLED)
	$(PY) scripts/fetch_models.py $(MODEL_DIR)

# Command-line tools the end-to-end tests use (Debian): a real Prometheus server and promtool,
# PostgreSQL, and headless Chromium with its WebDriver for the explorer's browser tests; Go with
# its gRPC packages, protoc and its Go plugins, and Node.js with clients/js's npm packages for
# the client examples (clients/).
tools:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  ( $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null )
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || \
	  ( $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql >/dev/null )
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ( $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null )
	@command -v go >/dev/null && command -v protoc >/dev/null && command -v protoc-gen-go >/dev/null && \
	  command -v protoc-gen-go-grpc >/dev/null && [ -d /usr/share/gocode/src/google.golang.org/grpc ] && \
	  [ -f /usr/share/gocode/src/github.com/golang/protobuf/proto/registry.go ] || \
	  ( $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends golang-go golang-google-grpc-dev \
	      golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc \
	      protobuf-compiler >/dev/null )
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  ( $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null )
	@[ clients/js/node_modules/.package-lock.json -nt clients/js/package-lock.json ] || \
	  ( cd clients/js && npm ci --no-audit --no-fund --loglevel=error )

# The client examples (README: Calling the services from other languages): the Go one compiled
# into build/clients/go/bin against Debian's Go gRPC packages; the JavaScript one checked by node.
clients: install tools
	bash clients/go/build.sh build/clients
	node --check clients/js/index.mjs

run: install models
	$(PY) -m vitrine.cli run $(ARGS)

test: install models tools
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The hermetic unit tests: no shared data, model weights, database servers, child processes or
# network beyond the test's own loopback servers (tests/unit/conftest.py fails a test that
# tries), so neither models nor tools are needed. About a minute on 2 cores.
test-fast: install
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check services tests scripts bench
	$(VENV)/bin/ruff format --check services tests scripts bench
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf breaking --against protos/releases/v1.binpb  # a v1 break cannot land

format: install
	$(VENV)/bin/ruff format services tests scripts bench
	$(VENV)/bin/ruff check --fix services tests scripts bench

bench: install models
	$(PY) -m bench.run
	$(PY) -m bench.search
	@if ls var/tagger/models/*/meta.json >/dev/null 2>&1; then $(PY) -m bench.tagger; \
	  else echo "tagger benchmark skipped: no trained version yet (make train, or make run once)"; fi

# Load test of the running system (start it with `make run` in another terminal first):
# 64 clients for 60 s against each service -> bench/results/load.{json,md}.
load: install
	$(PY) -m bench.load

# A tagger version trained on the whole Tate training split and evaluated on dev (about 10 minutes
# on 2 CPU cores once the MPNet embeddings are cached, 40 more the first time).
TAGGER_VERSION ?= tate-$(shell date +%Y%m%d-%H%M)
train: install models
	$(VENV)/bin/vitrine-tagger train --data ../shared/data/tate/tate_train.jsonl.gz \
	  --eval-data ../shared/data/tate/tate_dev.jsonl.gz --out var/tagger/models/$(TAGGER_VERSION) $(ARGS)

# Reproducible comparison with Annif 1.4.3 (Omikuji Bonsai) on the Tate dev split, scored by
# services/evaluation/metrics.py; results in var/annif/metrics.json. Not part of `make test`. Annif pins
# its own dependencies, so it gets its own virtual environment (.venv-annif, made once).
ANNIF_VENV ?= .venv-annif
compare-annif:
	@[ -x $(ANNIF_VENV)/bin/annif ] || { $(PYTHON) -m venv $(ANNIF_VENV) && \
	  $(ANNIF_VENV)/bin/pip install -q -r requirements-annif.txt; }
	$(ANNIF_VENV)/bin/python scripts/compare_annif.py $(ARGS)

# Re-resolve requirements.in into requirements.lock (every version pinned).
lock:
	rm -rf /tmp/vitrine-lock && $(PYTHON) -m venv /tmp/vitrine-lock
	/tmp/vitrine-lock/bin/pip install -q -r requirements.in
	/tmp/vitrine-lock/bin/pip freeze > requirements.lock

clean:
	rm -rf $(VENV) services/v1 var test-output .pytest_cache
