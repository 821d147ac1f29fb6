"""Speed of what is ours, against the usual Python stack, on the same generated volumes.

  EDT + marker watershed: Rust (qcanet.edt + qcanet.watershed, via ctypes)
                          vs scipy.ndimage.distance_transform_edt + skimage.segmentation.watershed
  metrics:                Rust qcanet.evaluate vs a vectorised NumPy contingency table (qcanet.reference)
  post-processing:        the whole of it through the C API (qcanet.postprocess: threshold, fill
                          holes, connected-component markers, distance transform, 6-connected
                          flood, unmarked components, renumbering) vs the same with scipy +
                          scikit-image (qcanet.reference.postprocess), thresholds 0.5

Volumes: BBBC050 size (51 x 120 x 120) and one 8x larger (102 x 240 x 240), made by
`qcanet synth`; the mask is the ground-truth foreground, the markers one voxel per
nucleus (its centroid). Prints medians of repeated runs, ratios, and checks that the
labels are identical voxel for voxel and the metrics equal.
The post-processing also runs on the 22 validation volumes of BBBC050 (Emb10, Emb11: their
NSN / NDN ground-truth masks as probabilities) when ../shared/data is there, as the speed issue
measured it; a visible SKIPPED line otherwise.
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
DATA = ROOT.parent / "shared" / "data" / "bbbc050" / "train"
POST = dict(fg_threshold=0.5, centre_threshold=0.5, markers="components", landscape="distance")


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
            # a centre map: a 3x3x3 blob around each nucleus's centroid voxel
            fg, centre = mask.astype(np.float32), ndi.maximum_filter(markers > 0, size=3).astype(np.float32)
            print(post_row(name, fg, centre, repeat))
    real = sorted((DATA / "nsn").glob("Emb1[01]_*.tif")) if DATA.is_dir() else []
    if not real:
        print(f"\nSKIPPED: {DATA} is not here; post-processing on the validation volumes did not run")
        return 0
    rounds = max(3, repeat // 6)
    print(f"\npost-processing on the {len(real)} BBBC050 validation volumes (NSN / NDN masks), medians of {rounds} runs each:")
    ratios, same, tp_all, tq_all = [], 0, [], []
    for f in real:
        fg = (tifffile.imread(f) > 0).astype(np.float32)
        centre = (tifffile.imread(DATA / "ndn" / f.name) > 0).astype(np.float32)
        a = reference.postprocess(fg, centre, VS, **POST)
        b = qcanet.postprocess(fg, centre, VS, connectivity=6, **POST)
        same += int(np.array_equal(a, b))
        tp = median_time(lambda: reference.postprocess(fg, centre, VS, **POST), rounds)
        tq = median_time(lambda: qcanet.postprocess(fg, centre, VS, connectivity=6, **POST), rounds)
        ratios.append(tp / tq)
        tp_all.append(tp)
        tq_all.append(tq)
    print(f"  median per volume: scipy + scikit-image {statistics.median(tp_all):.4f} s, qcanet {statistics.median(tq_all):.4f} s; "
          f"speed-up median {statistics.median(ratios):.1f}x (range {min(ratios):.1f}-{max(ratios):.1f}x); "
          f"identical labels on {same} of {len(real)}")
    return 0


def post_row(name, fg, centre, repeat):
    """The whole post-processing through the C API against scipy + scikit-image."""
    a = reference.postprocess(fg, centre, VS, **POST)
    b = qcanet.postprocess(fg, centre, VS, connectivity=6, **POST)
    tp = median_time(lambda: reference.postprocess(fg, centre, VS, **POST), repeat)
    tq = median_time(lambda: qcanet.postprocess(fg, centre, VS, connectivity=6, **POST), repeat)
    differ = int((a != b).sum())
    return (f"{name:<14}{'post-processing':<18}{tp:>11.4f}{'':>11}{'':>9}"
            f"{tq:>12.4f}{tp / tq:>8.1f}x  {differ == 0} ({differ} voxels differ)")


if __name__ == "__main__":
    sys.exit(main())
