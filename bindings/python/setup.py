"""Build of the qcanet Python package: compiles the native library and bundles ONNX Runtime.

The metadata lives in pyproject.toml; this file adds what a declarative config cannot say.

Why setuptools-rust and not maturin: the binding is ctypes over the C ABI (qcanet/_native.py),
not a CPython extension module, and the package is plain Python plus two shared libraries.
setuptools-rust's ``Binding.NoBinding`` builds the crate's cdylib with cargo and drops it into
the package (qcanet/lib/libqcanet.so) while setuptools keeps packaging the Python sources, the
optional extras and the ``qcanet-train`` script exactly as before. Bundling a second, prebuilt
library (libonnxruntime.so) and choosing the wheel tag are small command overrides here; maturin
would need the Python sources moved under its layout rules, a ``[tool.maturin]`` data folder
for ONNX Runtime and its own handling of a non-PyO3 cdylib, for no gain.

What ``pip wheel ./bindings/python`` / ``pip install ./bindings/python`` do (in-tree build):
  1. ``cargo rustc --lib --release --locked --crate-type cdylib,rlib`` on ../../Cargo.toml; cargo's
     default target dir (the repository's target/) or $CARGO_TARGET_DIR, so a build after
     ``make build`` reuses the compiled dependencies;
  2. copy the cdylib to qcanet/lib/libqcanet.so;
  3. copy ONNX Runtime 1.31.1's CPU library to qcanet/lib/libonnxruntime.so, where the Rust
     runtime search finds it beside libqcanet.so; taken from, in order: $QCANET_ORT_LIBRARY,
     the ``onnxruntime==1.31.1`` wheel installed in the build environment (build-system.requires),
     the repository's .cache/onnxruntime/ (``make runtime``);
  4. copy ONNX Runtime's OpenVINO build (runtime 1.24.1, its OpenVINO provider and OpenVINO's
     CPU plugin, ~130 MB) to qcanet/lib/onnxruntime-openvino/, where the runtime search looks
     first on the CPU (int8 and fp32 through OpenVINO, README "OpenVINO on the CPU"); taken
     from $QCANET_ORT_OPENVINO_DIR, else the repository's .cache/onnxruntime-openvino/
     (``make runtime-openvino``, part of ``make build``). Not from a build requirement: the
     onnxruntime-openvino wheel installs into the same ``onnxruntime`` package as step 3's.
     Without it the wheel is built all the same and runs ONNX Runtime's own CPU kernels (a
     note says so);
  5. tag the wheel ``py3-none-<platform>``: it holds native code for one platform but no
     CPython extension, so any Python 3 on that platform can use it.
"""
from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel  # setuptools >= 70.1
from setuptools_rust import Binding, RustExtension
from setuptools_rust.build import build_rust

ORT_VERSION = "1.31.1"  # keep in step with the Makefile's ORT_VERSION and build-system.requires
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MANIFEST = ROOT / "Cargo.toml"


def _onnxruntime_library() -> Path:
    """ONNX Runtime's CPU shared library to bundle (see the module docstring for the order)."""
    tried = []
    env = os.environ.get("QCANET_ORT_LIBRARY")
    if env:
        p = Path(env)
        if not p.is_file():
            raise RuntimeError(f"QCANET_ORT_LIBRARY={env}: no such file")
        return p
    try:
        dist = metadata.distribution("onnxruntime")
        if dist.version != ORT_VERSION:
            tried.append(f"onnxruntime {dist.version} in the build environment (need {ORT_VERSION})")
        else:
            p = Path(dist.locate_file(f"onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}"))
            if p.is_file():
                return p
            tried.append(str(p))
    except metadata.PackageNotFoundError:
        tried.append(f"onnxruntime=={ORT_VERSION} in the build environment (not installed)")
    p = ROOT / ".cache" / "onnxruntime" / f"libonnxruntime.so.{ORT_VERSION}"
    if p.is_file():
        return p
    tried.append(str(p))
    raise RuntimeError(
        f"ONNX Runtime {ORT_VERSION}'s libonnxruntime.so not found; tried: " + "; ".join(tried)
        + f". Its wheels need Python >= 3.11 for the build; otherwise run `make runtime` in the"
        f" repository or set QCANET_ORT_LIBRARY to a libonnxruntime.so.{ORT_VERSION}.")


# the OpenVINO build's files as the package holds them: (name in the package, name in the
# runtime folder), from the repository's one list; wheels hold no symbolic links, so each name
# the loader asks for is a file
OPENVINO_FILES = [(w[0], w[-1]) for w in (line.split() for line in (ROOT / "tools" / "openvino_files.txt")
                                          .read_text().splitlines()) if w and not w[0].startswith("#")]


def _openvino_folder():
    """The OpenVINO build's folder to bundle, or None (see the module docstring)."""
    env = os.environ.get("QCANET_ORT_OPENVINO_DIR")
    d = Path(env) if env else ROOT / ".cache" / "onnxruntime-openvino"
    missing = [src for _, src in OPENVINO_FILES if not (d / src).is_file()]
    if not missing:
        return d
    if env:
        raise RuntimeError(f"QCANET_ORT_OPENVINO_DIR={env}: missing {', '.join(missing)}")
    print(f"qcanet: no OpenVINO build in {d} (make runtime-openvino): this wheel runs ONNX Runtime's "
          "own CPU kernels, without OpenVINO and its int8 model")
    return None


def _copy(src: Path, dest: Path):
    tmp = dest.with_name(dest.name + "~")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


class BuildRust(build_rust):
    """build_rust that names the library libqcanet.so (not a CPython extension file name) and
    bundles ONNX Runtime beside it."""

    def get_dylib_ext_path(self, ext, target_fname):
        return os.path.join(os.path.dirname(super().get_dylib_ext_path(ext, target_fname)),
                            "libqcanet.so")

    def run(self):
        self._ort = _onnxruntime_library()   # before cargo: a missing runtime fails fast
        self._openvino = _openvino_folder()
        super().run()

    def install_extension(self, ext, dylib_paths, build_artifact_dir):
        super().install_extension(ext, dylib_paths, build_artifact_dir)
        lib = Path(self.get_dylib_ext_path(ext, ext.name)).parent
        print(f"qcanet: bundling {self._ort} as {lib / 'libonnxruntime.so'}")
        _copy(self._ort, lib / "libonnxruntime.so")
        ov = lib / "onnxruntime-openvino"
        if ov.exists():
            shutil.rmtree(ov)   # never a stale copy from an earlier build
        if self._openvino is not None:
            print(f"qcanet: bundling the OpenVINO build {self._openvino} as {ov}")
            ov.mkdir()
            for name, src in OPENVINO_FILES:
                _copy(self._openvino / src, ov / name)


class PlatformWheel(bdist_wheel):
    """py3-none-<platform>: native libraries for one platform, no CPython extension."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


# QCANET_SKIP_NATIVE_BUILD=1: the Python sources alone, a pure package that finds the library
# through QCANET_LIBRARY or a source checkout's target/release/ (qcanet/_native.py); for the
# editable install of a development venv (`make venv-train`), which should use what `make build`
# made, not a copy frozen at install time.
NATIVE = os.environ.get("QCANET_SKIP_NATIVE_BUILD") != "1"

if NATIVE and not MANIFEST.is_file():
    raise RuntimeError(
        f"{MANIFEST} not found: the qcanet package builds its native library from the repository,"
        " so install it from a checkout (pip install ./bindings/python), not from an sdist.")

setup(
    rust_extensions=[
        RustExtension(
            "qcanet.lib.libqcanet",           # placed at qcanet/lib/libqcanet.so (BuildRust)
            path=str(MANIFEST),
            binding=Binding.NoBinding,        # ctypes over the C ABI, no PyO3
            debug=False,                      # release profile, editable installs included
            cargo_manifest_args=["--locked"],
            # The crate types of Cargo.toml's [lib], in its order: setuptools-rust would
            # otherwise pass `--crate-type cdylib`, a different configuration of the same unit,
            # and every `cargo build` after a pip build (and the reverse) would recompile qcanet.
            args=["--crate-type", "cdylib,rlib"],
        )
    ] if NATIVE else [],
    cmdclass={"build_rust": BuildRust, "bdist_wheel": PlatformWheel} if NATIVE else {},
    zip_safe=False,
)
