#!/usr/bin/env python3
"""How much SEG a one-voxel disagreement with the annotators costs.

Scores the ground truth against itself after small, deliberate perturbations
(shifted by one voxel, eroded or dilated by one voxel in xy, tiny objects
dropped).  These figures put a segmentation's SEG in context: a model cannot be
expected to agree with the annotation much better than the annotation agrees with
a copy of itself moved by one voxel.

    .venv/bin/python tools/seg_sensitivity.py ../shared/data/bbbc050/train --embryos Emb10 Emb11

Needs the built library (``make build``) and the training environment (SciPy,
tifffile): ``make venv-train``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bindings" / "python"))
import qcanet  # noqa: E402
from qcanet.train.data import embryo_of, read_volume  # noqa: E402

CROSS_XY = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool)


def erode_xy(g):
    e = ndi.grey_erosion(g, footprint=CROSS_XY)
    e[e != g] = 0                       # a voxel stays only if its 4 xy neighbours share its label
    return e


def dilate_xy(g):
    d = ndi.grey_dilation(g, footprint=CROSS_XY)
    d[g > 0] = g[g > 0]                 # grow into background only, never over a neighbour
    return d


def drop_small(g, voxel_size, um3):
    counts = np.bincount(g.ravel()) * float(np.prod(voxel_size))
    small = counts < um3
    small[0] = False
    out = g.copy()
    out[small[g]] = 0
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="dataset folder with instances/")
    ap.add_argument("--embryos", nargs="*")
    ap.add_argument("--voxel-size", default="1.75,0.8,0.8", help="Z,Y,X um")
    a = ap.parse_args(argv)
    vs = tuple(float(v) for v in a.voxel_size.split(","))
    names = sorted(p.name for p in (Path(a.data) / "instances").glob("*.tif"))
    if a.embryos:
        names = [n for n in names if embryo_of(n) in set(a.embryos)]
    if not names:
        raise SystemExit("no instance volumes selected")
    cases = {
        "shifted 1 voxel in x": lambda g: np.roll(g, 1, axis=2),
        "shifted 1 voxel in z": lambda g: np.roll(g, 1, axis=0),
        "eroded 1 voxel in xy": erode_xy,
        "dilated 1 voxel in xy": dilate_xy,
        "objects < 300 um^3 dropped": lambda g: drop_small(g, vs, 300.0),
    }
    scores = {k: [] for k in cases}
    for n in names:
        g = np.ascontiguousarray(read_volume(Path(a.data) / "instances" / n), dtype=np.uint32)
        for k, f in cases.items():
            m = qcanet.evaluate(np.ascontiguousarray(f(g), dtype=np.uint32), g)
            scores[k].append((m.seg, m.mucov))
    print(f"ground truth against a perturbed copy of itself ({len(names)} volumes, mean of per-volume scores):")
    for k, v in scores.items():
        s = np.mean(v, axis=0)
        print(f"  {k:<28} SEG {s[0]:.3f}  MUCov {s[1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
