# ferroloop — every set-up step lives here; CI runs `make test` on a clean clone.
PYTHON ?= python3
VENV := $(CURDIR)/.venv
VPY := $(VENV)/bin/python
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)

.PHONY: all venv build demo test conformance e2e bench bench-all lint fmt clean

all: build

$(VENV)/.stamp: Makefile
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.5,<2" "pytest>=8" "pytest-timeout" "trustme>=1.2"
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

# conformance (CPython's test_asyncio), the side-by-side suite, then the end-to-end
# suite (aiohttp, uvicorn, websockets, asyncpg, redis, anyio, pytest-asyncio, gunicorn).
test: build $(VENV)/.e2e-stamp
	$(VPY) tests/conformance/run.py --min-ratio 0.95
	$(VPY) -m pytest tests --ignore=tests/e2e -p no:cacheprovider --timeout=300
	bash tests/e2e/setup_services.sh
	FERROLOOP_E2E_STRICT=1 $(VPY) -m pytest tests/e2e -p no:cacheprovider --timeout=300

e2e: build $(VENV)/.e2e-stamp
	bash tests/e2e/setup_services.sh
	FERROLOOP_E2E_STRICT=1 $(VPY) -m pytest tests/e2e -p no:cacheprovider --timeout=300

conformance: build
	$(VPY) tests/conformance/run.py --verbose

$(VENV)/.bench-stamp: $(VENV)/.stamp
	$(VPY) -m pip install -q uvloop rloop
	touch $@

bench: build $(VENV)/.bench-stamp
	$(VPY) benches/micro.py

lint: venv
	cargo fmt --check
	cargo clippy --release -- -D warnings

fmt:
	cargo fmt

clean:
	rm -rf $(VENV) target
