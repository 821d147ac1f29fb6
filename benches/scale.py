"""Memory and throughput of `qcanet segment` as volumes grow: generated embryos of 1x, 8x and
64x the BBBC050 volume (51 x 120 x 120), each segmented the way `--blocks auto` chooses
(whole up to 32 M voxels, block by block above), and the largest also whole for comparison.
With --stack FILE (e.g. a 153 x 1024 x 1024 stack from tools/mirror_volume.py) that stack
too, block by block and, with --whole, whole; the block result is compared with the whole
one by `qcanet compare` (the share of foreground voxels in matched nuclei).

    python benches/scale.py QCANET_BINARY [--stack FILE --voxel-size Z,Y,X] [--whole]

Prints one line per run: voxels, mode, peak resident memory (the kernel's maxrss of the
process), wall seconds and Mvoxel/s end to end (reading and writing included).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"1x": (51, 120, 120), "8x": (102, 240, 240), "64x": (204, 480, 480)}


def run(binary, args):
    """Runs qcanet in a child that reports its own peak memory (wait4's rusage)."""
    t = time.perf_counter()
    p = subprocess.Popen([binary, "-q", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    out, err = p.stdout.read(), p.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"qcanet {' '.join(args)} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024, out


def report(name, dims, mode, wall, rss):
    vox = dims[0] * dims[1] * dims[2]
    print(f"{name:>6} {str(list(dims)):>18} {vox / 1e6:8.1f} Mvox  {mode:>6}  peak {rss:7.0f} MB  {wall:7.1f} s  {vox / wall / 1e6:6.3f} Mvoxel/s", flush=True)


def agreement(binary, a, b):
    """`qcanet compare`: the share of foreground voxels in matched nuclei, and the counts."""
    import json
    o = subprocess.run([binary, "compare", a, b, "--json"], check=True, capture_output=True, text=True)
    return json.loads(o.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--stack", type=Path)
    ap.add_argument("--voxel-size", default="1.75,0.8,0.8")
    ap.add_argument("--whole", action="store_true", help="also segment --stack whole")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qcanet-scale-"))
    print(f"{'size':>6} {'dims (z, y, x)':>18} {'voxels':>13}  {'mode':>6}  {'memory':>15}  {'wall':>9}  throughput")
    for name, dims in SIZES.items():
        raw = work / f"{name}.tif"
        n = max(12, int(12 * dims[1] * dims[2] / (120 * 120)))
        subprocess.run([a.binary, "synth", "-o", raw, "--labels", work / f"{name}_gt.tif", "--dims", ",".join(map(str, dims)), "--nuclei", str(n)],
                       check=True, capture_output=True)
        blockwise = dims[0] * dims[1] * dims[2] > 32 << 20
        wall, rss, _ = run(a.binary, ["segment", raw, "-o", work / f"{name}_labels.tif"])
        report(name, dims, "blocks" if blockwise else "whole", wall, rss)
        if name == "64x":
            wall, rss, _ = run(a.binary, ["segment", raw, "-o", work / f"{name}_whole.tif", "--blocks", "whole"])
            report(name, dims, "whole", wall, rss)
            r = agreement(a.binary, work / f"{name}_labels.tif", work / f"{name}_whole.tif")
            print(f"{'':>6} blocks against whole: {r['agreement'] * 100:.2f} % of {r['fg_voxels']} foreground voxels agree; nuclei {r['nuclei_a']} (blocks) / {r['nuclei_b']} (whole)")
    if a.stack:
        import tifffile
        with tifffile.TiffFile(a.stack) as t:
            dims = t.series[0].shape[-3:]
        out = work / "stack_blocks.tif"
        wall, rss, line = run(a.binary, ["segment", a.stack, "-o", out, "--voxel-size", a.voxel_size, "--blocks", "auto", "--timings"])
        report(a.stack.name, dims, "blocks", wall, rss)
        print("       " + line.strip())
        if a.whole:
            ref = work / "stack_whole.tif"
            wall, rss, _ = run(a.binary, ["segment", a.stack, "-o", ref, "--voxel-size", a.voxel_size, "--blocks", "whole"])
            report(a.stack.name, dims, "whole", wall, rss)
            r = agreement(a.binary, out, ref)
            print(f"{'':>6} blocks against whole: {r['agreement'] * 100:.2f} % of {r['fg_voxels']} foreground voxels agree; nuclei {r['nuclei_a']} (blocks) / {r['nuclei_b']} (whole)")
    print(f"files in {work}")


if __name__ == "__main__":
    main()
