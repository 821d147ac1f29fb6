# qcanet — build, test, demo.  `make demo` and `make test` work on a fresh machine
# with the Rust toolchain, gcc/g++, Python 3 + pip and access to crates.io / PyPI.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON      ?= python3
ORT_VERSION := 1.31.1
CACHE       := .cache
ORT_DIR     := $(CACHE)/onnxruntime
ORT_LIB     := $(ORT_DIR)/libonnxruntime.so.$(ORT_VERSION)
VENV        := .venv
VPY         := $(VENV)/bin/python
REL         := target/release
export ORT_DYLIB_PATH := $(CURDIR)/$(ORT_LIB)

.PHONY: all build demo test test-rust test-c test-python header bench runtime venv venv-train clean help

all: build

help:
	@echo "make demo    - fetch ONNX Runtime, build, segment a generated embryo with the embedded model"
	@echo "make test    - every test: Rust, C/C++ example, header drift, scikit-image cross-check, training"
	@echo "make bench   - EDT + watershed and metrics against scipy / scikit-image / numpy"
	@echo "make header  - regenerate include/qcanet.h after changing src/capi.rs"

# ONNX Runtime's shared library, from the official PyPI wheel (unpacked once).
runtime: $(ORT_LIB)
$(ORT_LIB):
	mkdir -p $(CACHE)/wheels $(ORT_DIR)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_27_x86_64 \
	    --platform manylinux_2_28_x86_64 --python-version 3.11 -d $(CACHE)/wheels onnxruntime==$(ORT_VERSION)
	$(PYTHON) -c "import zipfile,glob,sys; w=glob.glob('$(CACHE)/wheels/onnxruntime-$(ORT_VERSION)-*.whl')[0]; \
	    z=zipfile.ZipFile(w); open('$(ORT_LIB).part','wb').write(z.read('onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION)'))"
	mv $(ORT_LIB).part $(ORT_LIB)
	ln -sf libonnxruntime.so.$(ORT_VERSION) $(ORT_DIR)/libonnxruntime.so

# Release build; the runtime library is placed beside the program and libqcanet.so,
# where both find it with no environment variable.
build: runtime
	cargo build --release --locked
	cp -f $(ORT_LIB) $(REL)/libonnxruntime.so

header:
	QCANET_WRITE_HEADER=1 cargo build --release --locked
	@echo "include/qcanet.h regenerated"

demo: build
	$(REL)/qcanet demo

# Python environment for the cross-checks (and, with venv-train, for training).
venv: $(VENV)/.stamp-base
$(VENV)/.stamp-base: bindings/python/pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet "numpy>=1.26" "scipy>=1.11" "scikit-image==0.26.0" "tifffile>=2024.1" "pytest>=8" "onnx>=1.16" "onnxruntime==$(ORT_VERSION)"
	touch $@

venv-train: $(VENV)/.stamp-train
$(VENV)/.stamp-train: $(VENV)/.stamp-base
	$(VPY) -m pip install --quiet "torch>=2.4" "matplotlib>=3.8" "tqdm>=4.66"
	$(VPY) -m pip install --quiet --no-deps -e bindings/python
	touch $@

test: build venv venv-train test-rust test-c test-python
	@echo "all test suites passed"

test-rust: build
	cargo test --release --locked

test-c: build
	$(MAKE) -C bindings/c test QCANET_ROOT=$(CURDIR)

test-python: build venv venv-train
	QCANET_LIBRARY=$(CURDIR)/$(REL)/libqcanet.so PYTHONPATH=$(CURDIR)/bindings/python \
	    $(VPY) -m pytest -q bindings/python/tests

bench: build venv
	cargo build --release --locked --example bench_postprocess
	QCANET_LIBRARY=$(CURDIR)/$(REL)/libqcanet.so PYTHONPATH=$(CURDIR)/bindings/python \
	    $(VPY) benches/compare.py

clean:
	cargo clean
	rm -rf $(VENV) $(CACHE)
