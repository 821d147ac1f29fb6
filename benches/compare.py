"""Speed of what is ours, against the usual Python stack, on the same generated volumes.

  EDT + marker watershed: Rust (qcanet.edt + qcanet.watershed, via ctypes)
                          vs scipy.ndimage.distance_transform_edt + skimage.segmentation.watershed
  metrics:                Rust qcanet.evaluate vs a vectorised NumPy contingency table (qcanet.reference)

Volumes: BBBC050 size (51 x 120 x 120) and one 8x larger (102 x 240 x 240), made by
`qcanet synth`; the mask is the ground-truth foreground, the markers one voxel per
nucleus (its centroid). Prints medians of repeated runs, ratios, and checks that the
labels are identical voxel for voxel and the metrics equal.
Run with `make bench`.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage.segmentation import watershed as sk_watershed

import qcanet
from qcanet import reference

ROOT = Path(__file__).resolve().parents[1]
QCANET = ROOT / "target" / "release" / "qcanet"
VS = (1.75, 0.8, 0.8)


def median_time(f, repeat):
    f()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def volume(tmp, dims, n, seed):
    raw, lab = Path(tmp) / f"r{seed}.tif", Path(tmp) / f"l{seed}.tif"
    subprocess.run([str(QCANET), "synth", "-o", str(raw), "--labels", str(lab), "--nuclei", str(n), "--seed", str(seed),
                    "--dims", ",".join(map(str, dims))], check=True, capture_output=True)
    gt = tifffile.imread(lab).astype(np.uint32)
    mask = gt > 0
    markers = np.zeros(gt.shape, np.uint32)
    for i, c in enumerate(ndi.center_of_mass(mask, gt, range(1, gt.max() + 1)), 1):
        z, y, x = np.round(c).astype(int)
        if gt[z, y, x] == i:
            markers[z, y, x] = i
    return gt, mask, markers


def rust_times(tmp, gt, mask, markers, pred, repeat):
    """Runs examples/bench_postprocess on the same arrays: pure Rust, no binding overhead."""
    d = Path(tmp) / "rs"
    d.mkdir(exist_ok=True)
    mask.astype(np.uint8).tofile(d / "mask.u8")
    markers.astype(np.uint32).tofile(d / "markers.u32")
    gt.astype(np.uint32).tofile(d / "gt.u32")
    pred.astype(np.uint32).tofile(d / "pred.u32")
    exe = ROOT / "target" / "release" / "examples" / "bench_postprocess"
    out = subprocess.run([str(exe), str(d), *map(str, gt.shape), str(repeat)], check=True, capture_output=True,
                         text=True).stdout
    t = dict(line.split() for line in out.strip().splitlines())
    labels = np.fromfile(d / "labels.u32", np.uint32).reshape(gt.shape)
    return float(t["edt_watershed_s"]), float(t["metrics_s"]), labels


def main():
    repeat = int(os.environ.get("BENCH_REPEAT", "31"))
    print(f"{os.cpu_count()} cores; medians of {repeat} runs")
    print("'qcanet' = the Rust functions called from Rust; 'via Python' = the same through the ctypes binding\n")
    print(f"{'volume':<14}{'task':<18}{'python (s)':>11}{'qcanet (s)':>11}{'speed-up':>9}"
          f"{'via Python':>12}{'speed-up':>9}  same result")
    with tempfile.TemporaryDirectory() as tmp:
        for name, dims, n, seed in (("51x120x120", (51, 120, 120), 24, 1), ("102x240x240", (102, 240, 240), 60, 2)):
            gt, mask, markers = volume(tmp, dims, n, seed)
            pred = np.roll(gt, 2, axis=2)
            pred[pred == 3] = 4
            t_rs_ws, t_rs_m, rs_labels = rust_times(tmp, gt, mask, markers, pred, repeat)

            def py_ws():
                return sk_watershed(-ndi.distance_transform_edt(mask, sampling=VS), markers, mask=mask)

            def binding_ws():
                return qcanet.watershed(-qcanet.edt(mask, VS), markers, mask)

            ref = py_ws()
            differ = int((ref != rs_labels).sum()) + int((ref != binding_ws()).sum())
            tp, tb = median_time(py_ws, repeat), median_time(binding_ws, repeat)
            print(f"{name:<14}{'EDT + watershed':<18}{tp:>11.4f}{t_rs_ws:>11.4f}{tp / t_rs_ws:>8.1f}x"
                  f"{tb:>12.4f}{tp / tb:>8.1f}x  {differ == 0} ({differ} voxels differ)")

            def py_m():
                return reference.evaluate(pred, gt)

            def binding_m():
                return qcanet.evaluate(pred, gt)

            a, b = py_m(), binding_m()
            same = all(abs(getattr(a, k) - getattr(b, k)) < 1e-12 for k in ("iou", "seg", "mucov", "seg_ctc", "f1"))
            tp, tb = median_time(py_m, repeat), median_time(binding_m, repeat)
            print(f"{name:<14}{'metrics':<18}{tp:>11.4f}{t_rs_m:>11.4f}{tp / t_rs_m:>8.1f}x"
                  f"{tb:>12.4f}{tp / tb:>8.1f}x  {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
