"""ONNX Runtime's default CPU provider against the OpenVINO provider, side by side: the plain
runtime (1.31.1), the OpenVINO build (1.24.1) on its own CPU kernels (QCANET_OPENVINO=0), and
the OpenVINO build with its OpenVINO provider, so that the provider and the runtime version can
be told apart.

    python benches/providers.py QCANET_BINARY PLAIN_LIBONNXRUNTIME OPENVINO_LIBONNXRUNTIME [FOLDER]

Runs `qcanet segment FOLDER --device cpu --timings` with each runtime in turn, ROUNDS times
(alternating, so machine noise hits both alike), then one volume alone (a process start,
model load and OpenVINO's compilation included). Prints the medians and the ratios, and
checks the two runtimes' labels are identical. FOLDER defaults to the BBBC050 validation
embryos (../shared/data) or, without them, generated embryos.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 5


def timings(line):
    return {k: float(v) for k, v in (f.split("=") for f in line.split()[1:]) if k not in ("device", "provider")}


def run(binary, runtime, args, extra_env=None):
    env = dict(os.environ, ORT_DYLIB_PATH=str(runtime), **(extra_env or {}))
    t = time.perf_counter()
    o = subprocess.run([binary, *args], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, o.stdout


def main():
    binary, plain, ov = sys.argv[1:4]
    work = Path(tempfile.mkdtemp(prefix="qcanet-providers-"))
    folder = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    if folder is None:
        shared = Path(__file__).resolve().parents[1].parent / "shared/data/bbbc050/train/images"
        if shared.is_dir():
            folder = work / "in"
            folder.mkdir()
            for f in sorted(shared.glob("Emb1[01]_*.tif")):
                (folder / f.name).symlink_to(f)
        else:
            folder = work / "in"
            folder.mkdir()
            for i in range(6):
                subprocess.run([binary, "synth", "-o", str(folder / f"e{i}.tif"), "--labels", str(work / f"gt{i}.tif"),
                                "--nuclei", str(8 + 6 * i), "--seed", str(i), "--time", str(0.1 * i)],
                               env=dict(os.environ, ORT_DYLIB_PATH=plain), check=True, capture_output=True)
    files = sorted(folder.glob("*.tif"))
    configs = (("default", plain, {}), ("ov-build-default", ov, {"QCANET_OPENVINO": "0"}), ("openvino", ov, {}))
    res = {name: [] for name, _, _ in configs}
    single = {name: [] for name, _, _ in configs}
    for r in range(ROUNDS):
        for name, rt, extra in configs:
            out = work / f"out_{name}"
            _, stdout = run(binary, rt, ["segment", str(folder), "-o", str(out), "-q", "--device", "cpu", "--timings"], extra)
            res[name].append(timings(next(l for l in stdout.splitlines() if l.startswith("timings: "))))
            wall, _ = run(binary, rt, ["segment", str(files[0]), "-o", str(work / f"one_{name}.tif"), "-q", "--device", "cpu"], extra)
            single[name].append(wall)
    same = all(len({(work / f"out_{name}" / f.name).read_bytes() for name, _, _ in configs}) == 1 for f in files)
    print(f"{len(files)} volumes from {folder}, {ROUNDS} alternating rounds, {os.cpu_count()} cores")
    print(f"{'':28} {'1.31.1 default':>15} {'1.24.1 default':>15} {'1.24.1 OpenVINO':>16} {'ratio to 1.31.1':>16}")
    rows = [(key, [statistics.median(t[key] for t in res[n]) for n, _, _ in configs]) for key in
            ("median_network_ms", "median_post_ms", "wall_per_volume_ms")]
    rows.append(("one volume, whole command s", [statistics.median(single[n]) for n, _, _ in configs]))
    for key, (a, b, c) in rows:
        print(f"{key:28} {a:15.3f} {b:15.3f} {c:16.3f} {a / c:16.2f}")
    print(f"labels identical on every volume, all three: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
