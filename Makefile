# dps-recon — quick start: `make demo`, then `make test`.
#
# libtorch comes from the PyTorch wheel (torch==2.13.0, what tch 0.26 needs) in a
# project-local .venv; torch-sys finds it through the `python3` first on PATH and
# LIBTORCH_USE_PYTORCH=1, and build.rs embeds an rpath, so the binaries run without
# LD_LIBRARY_PATH.

VENV      := .venv
PYTHON    := $(VENV)/bin/python
BIN       := target/release/dps-recon
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

.PHONY: all bootstrap system-deps build demo test bench fmt lint clean

all: build

# Idempotent: creates the venv and installs the wheels only when missing or when
# requirements-dev.txt changed.
bootstrap: $(VENV)/.bootstrapped

$(VENV)/.bootstrapped: requirements-dev.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

system-deps:
	@scripts/install-system-deps.sh

build: bootstrap system-deps
	cargo build --release

demo: build
	@scripts/demo.sh $(BIN)

test: bootstrap system-deps
	cargo test --workspace

bench: build
	@scripts/bench.sh

fmt:
	cargo fmt --all

lint: bootstrap system-deps
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
