#!/usr/bin/env python3
"""Voxel agreement of two folders of label stacks (e.g. GPU against CPU labels).

For each file name present in both folders, the labels of A are matched to those of B by
largest overlap (label numbers need not agree), and the agreement is the share of the
foreground voxels (of A or B) that carry matched labels in both. One JSON document out:
per file (agreement, foreground voxels, differing voxels, nuclei in A and B) and the
minimum over files.

    compare_labels.py gpu_labels/ cpu_labels/ [--json out.json]

>>> import numpy as np
>>> a = np.array([[0, 1, 1, 2, 2]]); b = np.array([[0, 5, 5, 5, 7]])
>>> r = agreement(a, b)
>>> r["fg_voxels"], r["differing_voxels"], round(r["agreement"], 3)
(4, 1, 0.75)
>>> agreement(a, a)["agreement"]
1.0
>>> agreement(np.array([[0, 5, 5, 0]]), np.array([[0, 0, 0, 0]]))["differing_voxels"]   # foreground vs background, both ways
2
>>> agreement(np.array([[0, 0, 0, 0]]), np.array([[0, 5, 5, 0]]))["differing_voxels"]
2
"""
import argparse
import json
import pathlib
import sys

import numpy as np


def agreement(a, b):
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    fg = (a > 0) | (b > 0)
    n_fg = int(fg.sum())
    # each label of A goes to the label of B it overlaps most (0 when it overlaps only background)
    pairs = np.stack([a[fg], b[fg]], axis=1)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    best = {}
    for (la, lb), c in zip(uniq.tolist(), counts.tolist()):
        if la > 0 and (la not in best or c > best[la][1]):
            best[la] = (lb, c)
    # a lookup over the labels present (a dense table would be as large as the largest label)
    keys = np.array(sorted(best), dtype=np.int64)
    vals = np.array([best[k][0] for k in keys.tolist()], dtype=np.int64)
    af, bf = a[fg], b[fg]
    if len(keys):
        at = np.clip(np.searchsorted(keys, af), 0, len(keys) - 1)
        mapped = np.where(keys[at] == af, vals[at], 0)
    else:
        mapped = np.zeros_like(af)
    # a foreground voxel agrees when it is foreground in both and in matched nuclei
    same = (af > 0) & (bf > 0) & (mapped == bf)
    diff = int(n_fg - same.sum())
    return {
        "fg_voxels": n_fg,
        "differing_voxels": diff,
        "agreement": 1.0 if n_fg == 0 else 1.0 - diff / n_fg,
        "nuclei_a": int(len(np.unique(a[a > 0]))),
        "nuclei_b": int(len(np.unique(b[b > 0]))),
    }


def main(argv=None):
    import tifffile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=pathlib.Path)
    ap.add_argument("b", type=pathlib.Path)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    names = sorted(p.name for p in args.a.glob("*.tif") if (args.b / p.name).is_file())
    if not names:
        print(f"no file names in common between {args.a} and {args.b}", file=sys.stderr)
        return 2
    files = {n: agreement(tifffile.imread(args.a / n), tifffile.imread(args.b / n)) for n in names}
    worst = min(files.items(), key=lambda kv: kv[1]["agreement"])
    doc = {"files": files, "n_files": len(files), "min_agreement": worst[1]["agreement"], "min_file": worst[0],
           "nuclei_count_equal": sum(f["nuclei_a"] == f["nuclei_b"] for f in files.values())}
    text = json.dumps(doc, indent=1)
    if args.json:
        args.json.write_text(text)
    print(f"{len(files)} files; min agreement {doc['min_agreement']:.6f} ({worst[0]}); "
          f"equal nucleus counts in {doc['nuclei_count_equal']}/{len(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
