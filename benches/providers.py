"""ONNX Runtime's default CPU provider against the OpenVINO provider, side by side.

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


def run(binary, runtime, args):
    env = dict(os.environ, ORT_DYLIB_PATH=str(runtime))
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
    res = {"default": [], "openvino": []}
    single = {"default": [], "openvino": []}
    for r in range(ROUNDS):
        for name, rt in (("default", plain), ("openvino", ov)):
            out = work / f"out_{name}"
            _, stdout = run(binary, rt, ["segment", str(folder), "-o", str(out), "-q", "--device", "cpu", "--timings"])
            res[name].append(timings(next(l for l in stdout.splitlines() if l.startswith("timings: "))))
            wall, _ = run(binary, rt, ["segment", str(files[0]), "-o", str(work / f"one_{name}.tif"), "-q", "--device", "cpu"])
            single[name].append(wall)
    same = all((work / "out_default" / f.name).read_bytes() == (work / "out_openvino" / f.name).read_bytes() for f in files)
    print(f"{len(files)} volumes from {folder}, {ROUNDS} alternating rounds, 2 threads = {os.cpu_count()} cores")
    print(f"{'':26} {'default':>10} {'openvino':>10} {'ratio':>7}")
    for key in ("median_network_ms", "median_post_ms", "wall_per_volume_ms"):
        a = statistics.median(t[key] for t in res["default"])
        b = statistics.median(t[key] for t in res["openvino"])
        print(f"{key:26} {a:10.1f} {b:10.1f} {a / b:7.2f}")
    a, b = statistics.median(single["default"]), statistics.median(single["openvino"])
    print(f"{'one volume, whole command s':26} {a:10.3f} {b:10.3f} {a / b:7.2f}")
    print(f"labels identical on every volume: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
