"""Checks of the Python package as users get it (`make test-python-install`).

    python tools/check_python_install.py wheel WHEEL
        the wheel is tagged for a platform (not *-none-any) and carries qcanet/lib/libqcanet.so,
        qcanet/lib/libonnxruntime.so and the OpenVINO build in qcanet/lib/onnxruntime-openvino/

    VENV/bin/python -I tools/check_python_install.py installed VENV
        run from outside the source tree with QCANET_LIBRARY and ORT_DYLIB_PATH unset: qcanet
        imports from VENV, segments a small generated volume, and libqcanet.so, ONNX Runtime,
        its OpenVINO provider and OpenVINO's CPU plugin were loaded from the installed package
"""
import os
import sys
import zipfile
from pathlib import Path

LIBS = ("libqcanet.so", "libonnxruntime.so")
# the OpenVINO build, which the runtime search prefers on the CPU (bundled from the
# repository's .cache/onnxruntime-openvino or QCANET_ORT_OPENVINO_DIR)
OPENVINO = tuple(f"onnxruntime-openvino/{line.split()[0]}" for line in
                 (Path(__file__).with_name("openvino_files.txt")).read_text().splitlines()
                 if line.strip() and not line.startswith("#"))


def check_wheel(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        tags = [l.split(":", 1)[1].strip() for l in z.read(meta).decode().splitlines()
                if l.startswith("Tag:")]
        sizes = {i.filename: i.file_size for i in z.infolist()}
    assert tags, f"{wheel.name}: no Tag in {meta}"
    for t in tags + [wheel.stem.split("-", 2)[2]]:
        assert not t.endswith("-any"), f"{wheel.name}: tag {t} claims any platform"
    for lib in LIBS + OPENVINO:
        assert f"qcanet/lib/{lib}" in names, f"{wheel.name}: no qcanet/lib/{lib} in {names}"
    print(f"wheel {wheel.name}: tag {', '.join(tags)}, {wheel.stat().st_size / 1e6:.1f} MB; "
          + ", ".join(f"{lib} {sizes['qcanet/lib/' + lib] / 1e6:.1f} MB" for lib in LIBS))


def check_installed(venv: Path):
    for var in ("QCANET_LIBRARY", "ORT_DYLIB_PATH", "PYTHONPATH"):
        assert var not in os.environ, f"{var} is set"
    import numpy as np
    import qcanet

    pkg = Path(qcanet.__file__).resolve().parent
    assert venv.resolve() in pkg.parents, f"qcanet imported from {pkg}, not from {venv}"
    model = qcanet.Model()
    v = np.zeros((8, 32, 32), np.uint16)
    v[2:6, 8:24, 8:24] = 1000
    labels = model.segment(v, voxel_size=(1.75, 0.8, 0.8))
    assert labels.shape == v.shape and labels.dtype == np.uint32, (labels.shape, labels.dtype)
    assert labels.max() >= 1, "no nucleus found in the bright block"
    # which files the process mapped: both libraries must be the package's own
    mapped = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].strip().startswith("/"):
                mapped.add(Path(parts[5].strip()))
    # on the CPU the OpenVINO build is searched first: its runtime, its provider and OpenVINO
    want = {"libqcanet.so": pkg / "lib" / "libqcanet.so",
            "libonnxruntime.so": pkg / "lib" / "onnxruntime-openvino" / "libonnxruntime.so",
            "libonnxruntime_providers_openvino.so": pkg / "lib" / "onnxruntime-openvino" / "libonnxruntime_providers_openvino.so",
            "libopenvino_intel_cpu_plugin.so": pkg / "lib" / "onnxruntime-openvino" / "libopenvino_intel_cpu_plugin.so"}
    for lib, path in want.items():
        found = sorted(str(p) for p in mapped if p.name == lib or p.name.startswith(lib + "."))
        assert found == [str(path)], f"{lib}: loaded {found}, expected {path}"
    print(f"installed package {pkg} (version {qcanet.version()}) segmented from {os.getcwd()}: "
          f"{int(labels.max())} label(s); libqcanet.so from {pkg / 'lib'}, ONNX Runtime with OpenVINO "
          f"from {pkg / 'lib' / 'onnxruntime-openvino'}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("wheel", "installed"):
        sys.exit(__doc__)
    (check_wheel if sys.argv[1] == "wheel" else check_installed)(Path(sys.argv[2]))
