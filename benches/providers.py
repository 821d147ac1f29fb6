"""ONNX Runtime's default CPU provider against the OpenVINO provider, side by side: the plain
runtime (1.31.1), the OpenVINO build (1.24.1) on its own CPU kernels (QCANET_OPENVINO=0), and
the OpenVINO build with its OpenVINO provider, so that the provider and the runtime version can
be told apart; then the embedded model's int8 version under OpenVINO (the CPU default where
OpenVINO runs on AVX2), with its agreement with the fp32 labels.

    python benches/providers.py QCANET_BINARY PLAIN_LIBONNXRUNTIME|- OPENVINO_LIBONNXRUNTIME [FOLDER]

`-` for the plain runtime leaves its column out (a machine it was not carried to).
QCANET_BENCH_ROUNDS sets the rounds (default 5). Under `taskset` the cores counted are the
process's own (sched_getaffinity), as qcanet counts them.

Runs `qcanet segment FOLDER --device cpu --timings` with each runtime in turn, ROUNDS times
(alternating, so machine noise hits both alike), then one volume alone (a process start,
model load and OpenVINO's compilation included). Prints the medians and the ratios, and
checks the two runtimes' labels are identical. FOLDER defaults to the BBBC050 validation
embryos (../shared/data) or, without them, generated embryos.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = int(os.environ.get("QCANET_BENCH_ROUNDS", "5"))


def timings(line):
    return {k: float(v) for k, v in (f.split("=") for f in line.split()[1:]) if k not in ("device", "provider", "precision")}


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
                               env=dict(os.environ, ORT_DYLIB_PATH=ov), check=True, capture_output=True)
    files = sorted(folder.glob("*.tif"))
    configs = (("default", plain, {}, "fp32"), ("ov-build-default", ov, {"QCANET_OPENVINO": "0"}, "fp32"),
               ("openvino", ov, {}, "fp32"), ("openvino-int8", ov, {}, "int8"))
    configs = tuple(c for c in configs if c[1] != "-")
    res = {c[0]: [] for c in configs}
    single = {c[0]: [] for c in configs}
    for r in range(ROUNDS):
        for name, rt, extra, precision in configs:
            out = work / f"out_{name}"
            cpu = ["-q", "--device", "cpu", "--precision", precision]
            _, stdout = run(binary, rt, ["segment", str(folder), "-o", str(out), *cpu, "--timings"], extra)
            res[name].append(timings(next(l for l in stdout.splitlines() if l.startswith("timings: "))))
            wall, _ = run(binary, rt, ["segment", str(files[0]), "-o", str(work / f"one_{name}.tif"), *cpu], extra)
            single[name].append(wall)
    fp32 = [c[0] for c in configs if c[3] == "fp32"]
    same = all(len({(work / f"out_{name}" / f.name).read_bytes() for name in fp32}) == 1 for f in files)
    fg = differ = 0
    for f in files:
        _, out = run(binary, ov, ["compare", str(work / "out_openvino" / f.name), str(work / "out_openvino-int8" / f.name), "--json"])
        a = json.loads(out)
        fg, differ = fg + a["fg_voxels"], differ + a["differing_voxels"]
    cores = len(os.sched_getaffinity(0))
    print(f"{len(files)} volumes from {folder}, {ROUNDS} alternating rounds, {cores} cores")
    titles = {"default": "1.31.1 default", "ov-build-default": "1.24.1 default", "openvino": "1.24.1 OpenVINO",
              "openvino-int8": "OpenVINO int8"}
    base = configs[0][0]
    # ratios against the first column (the plain runtime where it ran, else the OpenVINO build's default provider)
    ratios = (("openvino", f"OV fp32 / {titles[base][:6]}"), ("openvino-int8", f"int8 / {titles[base][:6]}"))
    print(f"{'':28}" + "".join(f" {titles[c[0]]:>16}" for c in configs) + "".join(f" {r[1]:>16}" for r in ratios))
    rows = [(key, [statistics.median(t[key] for t in res[c[0]]) for c in configs]) for key in
            ("median_network_ms", "median_post_ms", "wall_per_volume_ms")]
    rows.append(("one volume, whole command s", [statistics.median(single[c[0]]) for c in configs]))
    names = [c[0] for c in configs]
    for key, values in rows:
        by = dict(zip(names, values))
        print(f"{key:28}" + "".join(f" {v:16.3f}" for v in values) + "".join(f" {by[base] / by[r[0]]:16.2f}" for r in ratios))
    print(f"fp32 labels identical on every volume, all {len(fp32)} fp32 runtimes: {same}")
    print(f"int8 against OpenVINO fp32: {100 * (1 - differ / max(fg, 1)):.2f} % of {fg} foreground voxels in the same nucleus")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
