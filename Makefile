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

# The OpenVINO build (onnxruntime-openvino wheel: ONNX Runtime with Intel's OpenVINO provider and
# its CPU plugin), used by default on the CPU where it loads: the network runs 1.5-2x faster
# than on ONNX Runtime's own CPU kernels with the same labels (README, "Speed on the CPU").
ORT_OV_VERSION := 1.24.1
ORT_OV_DIR  := $(CACHE)/onnxruntime-openvino
ORT_OV_LIB  := $(ORT_OV_DIR)/libonnxruntime.so.$(ORT_OV_VERSION)
# the files taken from the wheel (tools/openvino_files.txt: the one list, also for the Python
# wheel and the Fiji plugin)
ORT_OV_FILES := $(shell awk '!/^\#/ && NF { print (NF > 1 ? $$2 : $$1) }' tools/openvino_files.txt)
ORT_GPU_DIR := $(CACHE)/onnxruntime-gpu
ORT_GPU_LIB := $(ORT_GPU_DIR)/libonnxruntime.so.$(ORT_VERSION)
GPU_PACK    := gpu/pack

.PHONY: runtime-openvino runtime-gpu runtime-gpu-pack test-gpu-check test-fuzz fuzz
.PHONY: all build demo test test-rust test-c test-python test-fiji fiji-plugin test-install test-python-install install header bench bench-scale runtime venv venv-train clean help

all: build

help:
	@echo "make demo    - fetch ONNX Runtime, build, segment a generated embryo with the embedded model"
	@echo "make test    - every test: Rust, C/C++ example, header drift, scikit-image cross-check, training"
	@echo "make bench   - EDT + watershed and metrics against scipy / scikit-image / numpy"
	@echo "make bench-scale - memory and Mvoxel/s of segment at 1x, 8x, 64x the BBBC050 volume (SCALE_STACK=big.tif adds a stack)"
	@echo "make header  - regenerate include/qcanet.h after changing src/capi.rs"

# ONNX Runtime's shared library, from the official PyPI wheel (unpacked once).
runtime: $(ORT_LIB) $(ORT_OV_LIB)
$(ORT_LIB):
	mkdir -p $(CACHE)/wheels $(ORT_DIR)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_27_x86_64 \
	    --platform manylinux_2_28_x86_64 --python-version 3.11 -d $(CACHE)/wheels onnxruntime==$(ORT_VERSION)
	$(PYTHON) -c "import zipfile,glob,sys; w=glob.glob('$(CACHE)/wheels/onnxruntime-$(ORT_VERSION)-*.whl')[0]; \
	    z=zipfile.ZipFile(w); open('$(ORT_LIB).part','wb').write(z.read('onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION)'))"
	mv $(ORT_LIB).part $(ORT_LIB)
	ln -sf libonnxruntime.so.$(ORT_VERSION) $(ORT_DIR)/libonnxruntime.so

runtime-openvino: $(ORT_OV_LIB)
$(ORT_OV_LIB):
	mkdir -p $(CACHE)/wheels $(ORT_OV_DIR)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
	    --python-version 3.11 -d $(CACHE)/wheels onnxruntime-openvino==$(ORT_OV_VERSION)
	$(PYTHON) -c "import zipfile,glob,os; w=glob.glob('$(CACHE)/wheels/onnxruntime_openvino-$(ORT_OV_VERSION)-*.whl')[0]; z=zipfile.ZipFile(w); \
	    names='$(ORT_OV_FILES)'.split(); \
	    [open('$(ORT_OV_DIR)/'+n+'.part','wb').write(z.read('onnxruntime/capi/'+n)) for n in names]; \
	    [os.replace('$(ORT_OV_DIR)/'+n+'.part','$(ORT_OV_DIR)/'+n) for n in names]"
	ln -sf libonnxruntime.so.$(ORT_OV_VERSION) $(ORT_OV_DIR)/libonnxruntime.so
	ln -sf libtbbmalloc.so $(ORT_OV_DIR)/libtbbmalloc.so.2    # the name libtbb.so.12 asks for
	rm -f $(CACHE)/wheels/onnxruntime_openvino-$(ORT_OV_VERSION)-*.whl

# The GPU build of ONNX Runtime (onnxruntime-gpu wheel, CUDA 13): the runtime, its
# provider bridge and the CUDA provider (284 MB), in a folder of their own. `make build`
# links it beside the program as onnxruntime-gpu/, where --device cuda/auto find it.
# The NVIDIA libraries it needs (cuBLAS, cuDNN, ...) come from the user's CUDA or from
# NVIDIA's PyPI wheels in a Python environment (README: GPU).
runtime-gpu: $(ORT_GPU_LIB)
$(ORT_GPU_LIB):
	mkdir -p $(CACHE)/wheels $(ORT_GPU_DIR)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_27_x86_64 \
	    --platform manylinux_2_28_x86_64 --python-version 3.11 -d $(CACHE)/wheels onnxruntime-gpu==$(ORT_VERSION)
	$(PYTHON) -c "import zipfile,glob,os; w=glob.glob('$(CACHE)/wheels/onnxruntime_gpu-$(ORT_VERSION)-*.whl')[0]; z=zipfile.ZipFile(w); \
	    names=['libonnxruntime_providers_shared.so','libonnxruntime_providers_cuda.so','libonnxruntime.so.$(ORT_VERSION)']; \
	    [open('$(ORT_GPU_DIR)/'+n+'.part','wb').write(z.read('onnxruntime/capi/'+n)) for n in names]; \
	    [os.replace('$(ORT_GPU_DIR)/'+n+'.part','$(ORT_GPU_DIR)/'+n) for n in names]"
	ln -sf libonnxruntime.so.$(ORT_VERSION) $(ORT_GPU_DIR)/libonnxruntime.so
	rm -f $(CACHE)/wheels/onnxruntime_gpu-$(ORT_VERSION)-*.whl

# The GPU runtime in pieces of 56 MiB with their sha256 (a machine without network
# receives at most 64 MiB per transfer, the source tree included); tools/gpu_check.sh
# verifies and reassembles them. 284 MB unpacked, about 186 MiB packed.
runtime-gpu-pack: $(ORT_GPU_LIB)
	rm -rf $(GPU_PACK) && mkdir -p $(GPU_PACK)
	tar -C $(CACHE) -cf - onnxruntime-gpu | zstd -q -19 -T0 --long=27 -o $(GPU_PACK)/onnxruntime-gpu.tar.zst
	(cd $(GPU_PACK) && split -b 56M -d -a 2 onnxruntime-gpu.tar.zst onnxruntime-gpu.tar.zst.part- && rm onnxruntime-gpu.tar.zst)
	(cd $(GPU_PACK) && sha256sum onnxruntime-gpu.tar.zst.part-* > SHA256SUMS)
	ls -l $(GPU_PACK)

# Release build; the runtime library is placed beside the program and libqcanet.so,
# where both find it with no environment variable.
build: runtime
	cargo build --release --locked
	cp -f $(ORT_LIB) $(REL)/libonnxruntime.so
	if [ -f $(ORT_GPU_LIB) ]; then ln -sfn $(CURDIR)/$(ORT_GPU_DIR) $(REL)/onnxruntime-gpu; fi
	ln -sfn $(CURDIR)/$(ORT_OV_DIR) $(REL)/onnxruntime-openvino

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
	$(VPY) -m pip install --quiet "numpy>=1.26" "scipy>=1.11" "scikit-image==0.26.0" "tifffile>=2024.1" "pytest>=8" "onnx>=1.16" "ome-zarr>=0.11" "py-ctcmetrics==1.3.3" "dask[distributed]>=2024.8" "dask-jobqueue>=0.9" "onnxruntime==$(ORT_VERSION)"
	touch $@

venv-train: $(VENV)/.stamp-train
$(VENV)/.stamp-train: $(VENV)/.stamp-base
	$(VPY) -m pip install --quiet "torch>=2.4" "matplotlib>=3.8" "tqdm>=4.66"
	QCANET_SKIP_NATIVE_BUILD=1 $(VPY) -m pip install --quiet --no-deps -e bindings/python
	touch $@

test: build venv venv-train test-rust test-fuzz test-c test-python test-install test-python-install test-fiji test-gpu-check
	@echo "all test suites passed"

# The TIFF reader under examples/fuzz_tiff.rs (mutations of generated stacks, and of real
# ones when ../shared/data is there): a bounded run in `make test`, a long one in `make fuzz`.
FUZZ_CORPUS := $(if $(wildcard ../shared/data/bbbc050/train/images),--corpus ../shared/data/bbbc050/train/images)
FUZZ_SECONDS ?= 600
test-fuzz: build
	cargo build --release --locked --example fuzz_tiff
	mkdir -p $(CACHE)/fuzz && cd $(CACHE)/fuzz && $(CURDIR)/$(REL)/examples/fuzz_tiff --iterations 10000 --seed 1 $(patsubst ../%,$(CURDIR)/../%,$(FUZZ_CORPUS))

fuzz: build
	cargo build --release --locked --example fuzz_tiff
	mkdir -p $(CACHE)/fuzz && cd $(CACHE)/fuzz && $(CURDIR)/$(REL)/examples/fuzz_tiff --seconds $(FUZZ_SECONDS) --seed $$(date +%s) $(patsubst ../%,$(CURDIR)/../%,$(FUZZ_CORPUS))

# tools/gpu_check.sh end to end with every "GPU" step on the CPU, on generated volumes,
# so that the script a GPU machine runs once is known to work before it gets there.
test-gpu-check: build runtime-gpu venv
	$(VPY) -m doctest tools/compare_labels.py tools/mirror_volume.py
	rm -rf $(CACHE)/gpu-check && mkdir -p $(CACHE)/gpu-check/data/images $(CACHE)/gpu-check/data/instances
	for s in 1 2; do $(REL)/qcanet synth -o $(CACHE)/gpu-check/data/images/e$$s.tif \
	    --labels $(CACHE)/gpu-check/data/instances/e$$s.tif --nuclei 5 --seed $$s --dims 24,64,64 > /dev/null; done
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH QCANET_ORT_GPU=$(CURDIR)/$(ORT_GPU_DIR) GPU_DEV=cpu BIG_DIMS=24,96,96 \
	    DATA=$(CURDIR)/$(CACHE)/gpu-check/data OUT=$(CURDIR)/$(CACHE)/gpu-check/out WORK=$(CURDIR)/$(CACHE)/gpu-check/work \
	    bash tools/gpu_check.sh > $(CACHE)/gpu-check/stdout.txt
	# the plumbing, not the GPU: here the "GPU" labels come from the CPU, so they must agree exactly
	grep -q "Labels vs CPU (min agreement over files): gpu 1.000000" $(CACHE)/gpu-check/out/report.md
	grep -q "python: device=cpu" $(CACHE)/gpu-check/out/report.md
	test -s $(CACHE)/gpu-check/out/report.json
	@echo "gpu_check.sh dry run on the CPU: report written"

# Tests that need what a machine may lack are #[ignore]d (counted as ignored in the
# summary) and run here, by name, when it is there.
test-rust: build runtime-gpu
	cargo test --release --locked
	if [ -d ../shared/data/bbbc050/train ]; then cargo test --release --locked --test real_data -- --ignored; \
	else echo "SKIPPED: ../shared/data is not here; tests/real_data.rs did not run"; fi
	if [ ! -e /proc/driver/nvidia ]; then cargo test --release --locked --test gpu_runtime -- --ignored; \
	else echo "SKIPPED: an NVIDIA driver is here; the no-GPU cases of tests/gpu_runtime.rs did not run"; fi

test-c: build
	$(MAKE) -C bindings/c test QCANET_ROOT=$(CURDIR)

test-python: build venv venv-train
	QCANET_LIBRARY=$(CURDIR)/$(REL)/libqcanet.so PYTHONPATH=$(CURDIR)/bindings/python \
	    $(VPY) -m pytest -q bindings/python/tests

bench: build venv
	cargo build --release --locked --example bench_postprocess
	QCANET_LIBRARY=$(CURDIR)/$(REL)/libqcanet.so PYTHONPATH=$(CURDIR)/bindings/python \
	    $(VPY) benches/compare.py
	$(PYTHON) benches/providers.py $(REL)/qcanet $(CURDIR)/$(ORT_LIB) $(CURDIR)/$(ORT_OV_DIR)/libonnxruntime.so

# Peak memory and throughput as volumes grow (whole volume, then block by block). The runtime
# the program finds beside itself (the OpenVINO build when fetched), not the tests' pinned one.
bench-scale: build venv
	env -u ORT_DYLIB_PATH $(VPY) benches/scale.py $(REL)/qcanet $(if $(SCALE_STACK),--stack $(SCALE_STACK) --whole)
	env -u ORT_DYLIB_PATH QCANET_LIBRARY=$(CURDIR)/$(REL)/libqcanet.so PYTHONPATH=$(CURDIR)/bindings/python \
	    $(VPY) benches/dask_workers.py $(REL)/qcanet --dims 102,480,480 --block 51,240,240 --frames 2

# The ImageJ/Fiji plugin: target/fiji/Fiji.app (copy its contents into a Fiji installation).
fiji-plugin: build
	$(MAKE) --no-print-directory -C fiji-plugin plugin QCANET_ROOT=$(CURDIR)

test-fiji: build
	$(MAKE) --no-print-directory -C fiji-plugin test QCANET_ROOT=$(CURDIR)

# Installs the library, the runtime beside it, the header, pkg-config and CMake files,
# and the command-line tool:  make install PREFIX=/opt/qcanet
PREFIX ?= /usr/local
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
install: build
	install -d $(PREFIX)/lib/pkgconfig $(PREFIX)/lib/cmake/qcanet $(PREFIX)/include $(PREFIX)/bin
	install -m 755 $(REL)/libqcanet.so $(PREFIX)/lib/libqcanet.so
	install -m 755 $(ORT_LIB) $(PREFIX)/lib/libonnxruntime.so
	install -d $(PREFIX)/lib/onnxruntime-openvino
	install -m 755 $(addprefix $(ORT_OV_DIR)/,$(ORT_OV_FILES)) $(PREFIX)/lib/onnxruntime-openvino/
	ln -sf libonnxruntime.so.$(ORT_OV_VERSION) $(PREFIX)/lib/onnxruntime-openvino/libonnxruntime.so
	ln -sf libtbbmalloc.so $(PREFIX)/lib/onnxruntime-openvino/libtbbmalloc.so.2
	install -m 755 $(REL)/qcanet $(PREFIX)/bin/qcanet
	install -m 644 include/qcanet.h $(PREFIX)/include/qcanet.h
	sed -e 's|@PREFIX@|$(abspath $(PREFIX))|' -e 's|@VERSION@|$(VERSION)|' packaging/qcanet.pc.in > $(PREFIX)/lib/pkgconfig/qcanet.pc
	install -m 644 packaging/qcanetConfig.cmake $(PREFIX)/lib/cmake/qcanet/qcanetConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|' packaging/qcanetConfigVersion.cmake.in > $(PREFIX)/lib/cmake/qcanet/qcanetConfigVersion.cmake
	@echo "installed qcanet $(VERSION) into $(PREFIX)"

# Builds the C example against an installed prefix with pkg-config and with CMake (from PyPI),
# and runs both with no environment set up.
test-install: build venv
	test -x $(VENV)/bin/cmake || $(VPY) -m pip install --quiet "cmake>=3.20"
	rm -rf $(CACHE)/install-test && mkdir -p $(CACHE)/install-test
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(CACHE)/install-test/prefix
	cd $(CACHE)/install-test && \
	  gcc -std=c99 -Wall -Werror ../../bindings/c/example.c -o example_pc \
	      $$(PKG_CONFIG_PATH=prefix/lib/pkgconfig pkg-config --cflags --libs qcanet) -lm && \
	  ../../$(VENV)/bin/cmake -S ../../bindings/c -B cmake-build -DCMAKE_PREFIX_PATH=$$PWD/prefix > /dev/null && \
	  ../../$(VENV)/bin/cmake --build cmake-build > /dev/null && \
	  prefix/bin/qcanet synth -o embryo.tif --labels truth.tif --nuclei 6 --seed 9 > /dev/null && \
	  env -u ORT_DYLIB_PATH ./example_pc embryo.tif labels_pc.tif | grep "^nuclei: " && \
	  env -u ORT_DYLIB_PATH ./cmake-build/qcanet_example embryo.tif labels_cmake.tif | grep "^nuclei: " && \
	  env -u ORT_DYLIB_PATH prefix/bin/qcanet segment embryo.tif -o labels_cli.tif -q && \
	  env -u ORT_DYLIB_PATH prefix/bin/qcanet info --device cpu | grep "on cpu (openvino provider)" && \
	  cmp labels_pc.tif labels_cmake.tif
	@echo "install test: pkg-config and CMake builds ran against the installed prefix"

# The Python package as users get it: bindings/python/setup.py builds libqcanet.so with cargo
# (setuptools-rust) and bundles ONNX Runtime's libonnxruntime.so beside it in qcanet/lib/.
# (1) `pip wheel`: a platform tag, both libraries inside; (2) that wheel in a fresh venv, used
# from /tmp with no variable set; (3) `pip install` straight from a clean clone of
# PYINSTALL_REPO (committed files only) into another fresh venv, same check.
# (1) builds in target/ (fresh after `make build`: same crate types, nothing recompiles). (3)
# builds the clone in a copy of target/release without qcanet's own files, so that only qcanet
# recompiles, and not in target/ itself: cargo names a path crate's units by its path relative
# to the workspace, so the clone's qcanet units are this tree's, and building them there would
# replace this tree's libqcanet.so, fingerprints and build-script output (whose include_bytes!
# would then name the clone's model file) with ones that cargo takes as up to date.
PYI := $(CACHE)/pyinstall
PYINSTALL_REPO ?= $(CURDIR)
CHECK_PY := $(CURDIR)/tools/check_python_install.py
test-python-install: build
	rm -rf $(PYI) bindings/python/build && mkdir -p $(PYI)/wheel
	$(PYTHON) -m venv $(PYI)/venv-wheel
	$(PYI)/venv-wheel/bin/python -m pip install --quiet --upgrade pip
	SECONDS=0
	$(PYI)/venv-wheel/bin/python -m pip wheel --quiet --no-deps ./bindings/python -w $(PYI)/wheel
	echo "(1) pip wheel ./bindings/python: $${SECONDS}s"
	wheels=($(PYI)/wheel/qcanet-*.whl)
	test $${#wheels[@]} -eq 1 && test -f "$${wheels[0]}"
	$(PYTHON) $(CHECK_PY) wheel "$${wheels[0]}"
	$(PYI)/venv-wheel/bin/python -m pip install --quiet "$${wheels[0]}"
	(cd /tmp && env -u QCANET_LIBRARY -u ORT_DYLIB_PATH -u PYTHONPATH \
	    $(CURDIR)/$(PYI)/venv-wheel/bin/python -I $(CHECK_PY) installed $(CURDIR)/$(PYI)/venv-wheel)
	git clone -q $(PYINSTALL_REPO) $(PYI)/src
	mkdir -p $(PYI)/target/release
	flock $(REL)/.cargo-lock cp -a --reflink=auto $(REL)/deps $(REL)/build $(REL)/.fingerprint $(PYI)/target/release/
	rm -rf $(PYI)/target/release/.fingerprint/qcanet-* $(PYI)/target/release/build/qcanet-* $(PYI)/target/release/deps/*qcanet*
	$(PYTHON) -m venv $(PYI)/venv-src
	$(PYI)/venv-src/bin/python -m pip install --quiet --upgrade pip
	SECONDS=0
	CARGO_TARGET_DIR=$(CURDIR)/$(PYI)/target QCANET_ORT_OPENVINO_DIR=$(CURDIR)/$(ORT_OV_DIR) \
	    $(PYI)/venv-src/bin/python -m pip install --quiet $(PYI)/src/bindings/python
	echo "(3) pip install <clean clone>/bindings/python: $${SECONDS}s"
	(cd /tmp && env -u QCANET_LIBRARY -u ORT_DYLIB_PATH -u PYTHONPATH \
	    $(CURDIR)/$(PYI)/venv-src/bin/python -I $(CHECK_PY) installed $(CURDIR)/$(PYI)/venv-src)
	rm -rf $(PYI)/target
	@echo "python install test: the wheel and a clean-clone pip install both work with no variable set"

clean:
	cargo clean
	rm -rf $(VENV) $(CACHE)
