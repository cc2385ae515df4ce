# One front door for every task. `make demo` and `make test` work on a fresh Debian
# machine with Python 3.11 and root: they install what they need first.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
PY          := $(BIN)/python
# Debian packages the tests use for real: SoftHSM and pkcs11-tool for the PKCS#11
# backend, PostgreSQL's initdb and pg_ctl for the scale-out store (the tests make their own
# cluster), PgBouncer to run the PostgreSQL ledger behind a pooler in transaction mode,
# openssl for chain checks, promtool (in prometheus), shellcheck for deploy/, and
# Debian's python3, which a test runs as another user (who may not reach the venv), with
# python3-venv, which Debian's python3 needs to make the venv.
DEB_PACKAGES := softhsm2 opensc postgresql pgbouncer openssl prometheus shellcheck python3 python3-venv
# Exact versions of everything the venv gets: the runtime's (the image's too) and the
# tools' (a new grpcio-tools or ruff must not change `make lint` on an unchanged tree).
CONSTRAINTS := deploy/constraints.txt deploy/dev-constraints.txt
PIP_PINS    := $(foreach file,$(CONSTRAINTS),-c $(file))
PROTO_DIR   := protos
PROTO_FILES := $(wildcard $(PROTO_DIR)/setpay/v1/*.proto)
PYTEST_ARGS ?=
# What the tools keep between runs stays in the clone, under build/ (make clean removes
# it), not in the user's home or the shared temporary directory: pip's wheels and buf's
# modules (both under XDG_CACHE_HOME), matplotlib's font cache, pytest's temporary
# directories.
# Tests that listen on a Unix socket in their tmp_path need its path under the 108 bytes
# of sun_path: pytest cuts a test's directory name to 30 characters, so the clone's path
# may have some 45 bytes. A clone deeper than that keeps pytest's own temporary directory
# (a socket that did not fit would fail its test).
CACHE_DIR     := $(CURDIR)/build/cache
PYTEST_BASE   := $(shell dir='$(CURDIR)'; [ $${#dir} -le 45 ] && echo "$$dir/build/pytest")
export XDG_CACHE_HOME := $(CACHE_DIR)
export PIP_CACHE_DIR  := $(CACHE_DIR)/pip
export MPLCONFIGDIR   := $(CACHE_DIR)/matplotlib

.PHONY: all demo test lint protos check-protos system-deps venv bench image-check clean
# One recipe at a time, whatever -j says: `make -j test` would otherwise run system-deps
# and a venv that needs python3-venv side by side, two apt-get runs on one dpkg lock.
.NOTPARALLEL:

all: test

# The plot extra too, so that the suite draws a real plot. Debian's own python3 makes a
# venv only with python3-venv (ensurepip): a first attempt that fails leaves a venv
# without pip, which is removed, the package installed and the venv made again. Pinned
# throughout, setuptools in the build environment too; a changed pin reinstalls.
$(VENV)/.installed: pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(BIN)/pip || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); } || \
	  { rm -rf $(VENV) && $(MAKE) --no-print-directory system-deps DEB_PACKAGES=python3-venv && \
	    $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet $(PIP_PINS) --upgrade pip
	$(PY) -m pip install --quiet $(PIP_PINS) --build-constraint deploy/dev-constraints.txt \
	  -e '.[dev,plot]'
	touch $@

venv: $(VENV)/.installed

# Installed means dpkg's status "installed", the second letter of its abbreviation, with
# no error flag (a third letter R asks for a reinstall), whatever the selection in the first
# ("ii", or "hi" for a package on hold): `dpkg -s` also succeeds for a package removed but
# not purged ("rc"), whose programs are gone. Recommends stay out: the tests need the
# programs, not the services they suggest (opensc's pcscd, prometheus's node exporter).
system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  case "$$(dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null)" in \
	    ?"i ") ;; \
	    *) missing="$$missing $$p" ;; \
	  esac; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then echo "need root to install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: venv
	$(BIN)/setpay demo

test: system-deps venv
	mkdir -p build
	$(BIN)/pytest $(if $(PYTEST_BASE),--basetemp=$(PYTEST_BASE)) $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/buf lint
	$(MAKE) --no-print-directory check-protos
	@if [ -f Dockerfile ]; then $(BIN)/hadolint Dockerfile; fi

# Regenerate the Python code of the wire contract (committed beside the .proto files).
protos: venv
	rm -f $(PROTO_DIR)/setpay/v1/*_pb2*.py $(PROTO_DIR)/setpay/v1/*_pb2.pyi
	$(PY) -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=$(PROTO_DIR) --pyi_out=$(PROTO_DIR) $(PROTO_FILES)
	$(PY) -m grpc_tools.protoc -I $(PROTO_DIR) --grpc_python_out=$(PROTO_DIR) $(PROTO_DIR)/setpay/v1/services.proto

# Fails when the committed generated code differs from a fresh regeneration.
check-protos: venv
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(PY) -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=$$tmp --pyi_out=$$tmp $(PROTO_FILES) && \
	$(PY) -m grpc_tools.protoc -I $(PROTO_DIR) --grpc_python_out=$$tmp $(PROTO_DIR)/setpay/v1/services.proto && \
	for f in $$tmp/setpay/v1/*; do \
	  diff -q $$f $(PROTO_DIR)/setpay/v1/$$(basename $$f) >/dev/null || { echo "stale generated code: $$(basename $$f) (run make protos)"; exit 1; }; \
	done; \
	for f in $(PROTO_DIR)/setpay/v1/*_pb2*; do \
	  test -f $$tmp/setpay/v1/$$(basename $$f) || { echo "generated file without a proto: $$f"; exit 1; }; \
	done; \
	echo "generated code is up to date"

# The spawned bank is kept on the repository's disk, not in the temporary directory the
# bench picks by default: that is a tmpfs on many hosts, where a ledger's fsync costs
# nothing and the bench doubts every run (exit 3). Removed before (a run stopped half-way
# leaves it) and after; the bench's exit status is make's.
BENCH_WORKDIR := build/bench
bench: venv
	rm -rf $(BENCH_WORKDIR)
	$(BIN)/setpay bench authorize --spawn --duration 10 --workdir $(BENCH_WORKDIR); \
	  status=$$?; rm -rf $(BENCH_WORKDIR); exit $$status

# Needs a Docker engine (not part of `make test`: CI has none). BuildKit for COPY --chmod;
# PYTHON_IMAGE names another base where Docker Hub is out of reach, and
# IMAGE_BUILD_FLAGS=--network=host builds on an engine without a bridge network
# (docs/OPERATIONS.md, section 12).
PYTHON_IMAGE ?= python:3.11-slim-bookworm
IMAGE_BUILD_FLAGS ?=
image-check:
	DOCKER_BUILDKIT=1 docker build $(IMAGE_BUILD_FLAGS) --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t setpay:check .
	deploy/image-check.sh setpay:check

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis \
	  .import_linter_cache build
