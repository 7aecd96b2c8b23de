# ferroloop — every set-up step lives here; CI runs `make test` on a clean clone.
PYTHON ?= python3
# The versions `make test` runs (each in .venv-X.Y); narrow with `make test PYTHONS=3.12`.
PYTHONS ?= 3.11 3.12 3.13
VENV ?= $(CURDIR)/.venv
VPY := $(VENV)/bin/python
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
ifdef CARGO_TARGET_DIR
export CARGO_TARGET_DIR
endif

.PHONY: all venv bridge build demo dist dist-tools wheel-install test test-one conformance e2e soak sanitize bench bench-all lint fmt clean

all: build

$(VENV)/.stamp: Makefile
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.5,<2" "pytest>=8" "pytest-timeout" "trustme>=1.2" "hypothesis>=6.100"
	touch $@

venv: $(VENV)/.stamp

build: venv
	$(VPY) -m maturin develop --release -q

demo: build
	@for f in examples/*.py; do echo "== $$f"; $(VPY) $$f || exit 1; done
	$(VPY) -m ferroloop examples/hello.py

# The end-to-end suite needs real libraries (PyPI) and servers (Debian packages).
$(VENV)/.e2e-stamp: $(VENV)/.stamp tests/e2e/requirements.txt
	$(VPY) -m pip install -q -r tests/e2e/requirements.txt
	touch $@

# A test-only Rust extension on pyo3-async-runtimes (tests/rust_bridge) for the e2e suite
# and benches/rust_bridge.py: one abi3 wheel (any Python >= 3.11), built once into a fixed
# target folder shared by every venv of the matrix, then installed into each VENV.
BRIDGE_DIR := $(CURDIR)/tests/rust_bridge
BRIDGE_TARGET := $(CURDIR)/target/rust_bridge
BRIDGE_SRC := $(BRIDGE_DIR)/Cargo.toml $(BRIDGE_DIR)/Cargo.lock $(BRIDGE_DIR)/pyproject.toml $(wildcard $(BRIDGE_DIR)/src/*.rs)
$(BRIDGE_TARGET)/.wheel-stamp: $(BRIDGE_SRC) | $(VENV)/.stamp
	rm -rf $(BRIDGE_TARGET)/wheels
	CARGO_TARGET_DIR=$(BRIDGE_TARGET) $(VPY) -m maturin build --release -q \
		-m $(BRIDGE_DIR)/Cargo.toml -i $(VPY) -o $(BRIDGE_TARGET)/wheels
	touch $@

$(VENV)/.bridge-stamp: $(BRIDGE_TARGET)/.wheel-stamp $(VENV)/.stamp
	$(VPY) -m pip install -q --force-reinstall --no-deps $(BRIDGE_TARGET)/wheels/ferroloop_rust_bridge-*-abi3-*.whl
	touch $@

bridge: $(VENV)/.bridge-stamp

# Every Python in PYTHONS, each in its own venv: conformance (CPython's test_asyncio),
# the side-by-side suite, then the end-to-end suite (aiohttp, uvicorn, websockets,
# asyncpg, redis, anyio, pytest-asyncio, gunicorn). A missing interpreter is reported
# loudly (tools/test-matrix.sh says when that fails the run).
test:
	bash tools/test-matrix.sh $(PYTHONS)

# One interpreter's run (PYTHON=/path/to/python VENV=...; the matrix sets both), on the
# thing users install: this Python's manylinux wheel, installed into VENV (no editable
# build), with no Rust toolchain on PATH; tests/test_installed.py checks all of that.
NO_RUST_PATH = $(shell echo "$(PATH)" | tr ':' '\n' | grep -v -e '\.cargo' -e rustup | paste -sd:)
INSTALLED = env PATH="$(NO_RUST_PATH)" FERROLOOP_EXPECT_INSTALLED=1

test-one: wheel-install $(VENV)/.e2e-stamp $(VENV)/.bridge-stamp
	$(INSTALLED) $(VPY) tests/conformance/run.py --min-ratio 1.0
	$(INSTALLED) $(VPY) -m pytest tests --ignore=tests/e2e -p no:cacheprovider --timeout=300
	bash tests/e2e/setup_services.sh
	$(INSTALLED) FERROLOOP_E2E_STRICT=1 $(VPY) -m pytest tests/e2e -p no:cacheprovider --timeout=300

# Build this Python's manylinux2014 wheel into dist/ and install it into VENV.
wheel-install: venv dist-tools
	$(VPY) -m pip install -q --force-reinstall --no-deps "$$(bash tools/build-wheel.sh $(VPY) dist)"

# The release artefacts (dist/): a manylinux2014 x86_64 wheel for every Python of
# PYTHONS and an sdist, then checks (glibc symbols via auditwheel, contents, twine) and
# a build of the sdist from a clean folder with only the Rust toolchain and pip.
DIST_TOOLS := $(CURDIR)/.venv-dist
$(DIST_TOOLS)/.stamp: Makefile
	$(PYTHON) -m venv $(DIST_TOOLS)
	$(DIST_TOOLS)/bin/python -m pip install -q --upgrade pip
	$(DIST_TOOLS)/bin/python -m pip install -q "maturin>=1.5,<2" ziglang auditwheel twine
	touch $@

dist-tools: $(DIST_TOOLS)/.stamp

dist: dist-tools
	bash tools/dist.sh $(PYTHONS)

e2e: build $(VENV)/.e2e-stamp $(VENV)/.bridge-stamp
	bash tests/e2e/setup_services.sh
	FERROLOOP_E2E_STRICT=1 $(VPY) -m pytest tests/e2e -p no:cacheprovider --timeout=300

# Long leak/soak checks at the issue's sizes, the call_soon_threadsafe flood (stop latency
# and RSS, ferroloop vs asyncio vs uvloop) and long property-based runs.
soak: build $(VENV)/.bench-stamp
	$(VPY) -m pytest tests/soak/soak_leaks.py -p no:cacheprovider -o addopts="" -s -v --timeout=0
	$(VPY) benches/flood.py --rounds 30 --loops ferroloop,asyncio,uvloop
	FERROLOOP_HYPOTHESIS_EXAMPLES=1000 FERROLOOP_STRESS_ROUNDS=20 $(VPY) -m pytest tests/test_property_differential.py tests/test_concurrency_stress.py tests/test_hostile.py -p no:cacheprovider --timeout=0

# A representative subset of the suite on ferroloop under valgrind memcheck.
VALGRIND := valgrind --tool=memcheck --undef-value-errors=no --suppressions=tests/soak/valgrind-python.supp --num-callers=40 --leak-check=no
SANITIZE_TESTS := tests/test_object_reuse.py tests/test_collect_at_every_allocation.py tests/test_futures.py tests/test_tasks.py tests/test_callbacks.py tests/test_timers.py tests/test_cancellation.py tests/test_context.py tests/test_refs.py tests/test_exception_handler.py tests/test_threadsafe.py tests/test_executor.py tests/test_readers_writers.py tests/test_stream_transport.py tests/test_tcp.py tests/test_unix_sockets.py tests/test_differential.py tests/test_property_differential.py tests/test_hostile.py tests/test_leaks.py tests/test_concurrency_stress.py tests/test_sock.py tests/test_tls_records.py tests/test_udp.py

sanitize: build
	command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind)
	PYTHONMALLOC=malloc FERROLOOP_PROPERTY_SLOT=0.1 FERROLOOP_HYPOTHESIS_EXAMPLES=10 \
	FERROLOOP_HOSTILE_CHILD_PREFIX="$(VALGRIND) --log-fd=1 -q" FERROLOOP_HOSTILE_CASE_TIMEOUT=300 \
	$(VALGRIND) --error-exitcode=99 $(VPY) -m pytest $(SANITIZE_TESTS) -k ferroloop -p no:cacheprovider --timeout=0 -rfE

conformance: build
	$(VPY) tests/conformance/run.py --verbose

$(VENV)/.bench-stamp: $(VENV)/.stamp
	$(VPY) -m pip install -q uvloop rloop
	touch $@

bench: build $(VENV)/.bench-stamp
	$(VPY) benches/micro.py

# Every family (micro, net, executor, tls, framework, rust_bridge); wrk for the HTTP load when missing.
bench-all: build $(VENV)/.bench-stamp $(VENV)/.e2e-stamp $(VENV)/.bridge-stamp
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || true
	$(VPY) benches/all.py

lint: venv
	cargo fmt --check
	cargo clippy --release -- -D warnings
	cargo fmt --check --manifest-path $(BRIDGE_DIR)/Cargo.toml
	CARGO_TARGET_DIR=$(BRIDGE_TARGET) cargo clippy --release --manifest-path $(BRIDGE_DIR)/Cargo.toml -- -D warnings
	$(VPY) -m pip install -q ruff
	$(VPY) -m ruff check python tests benches tools
	$(VPY) -m ruff format --check python tests benches tools

fmt:
	cargo fmt
	cargo fmt --manifest-path $(BRIDGE_DIR)/Cargo.toml

clean:
	rm -rf $(VENV) target
