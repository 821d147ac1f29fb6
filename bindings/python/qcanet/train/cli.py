"""``qcanet-train``: train, export and check the networks that qcanet runs.

  qcanet-train pack DATA -o data.npz            # TIFF folders -> one compact file
  qcanet-train fit DATA -o runs/x [--arch lean8] [--val-embryos Emb10 Emb11]
  qcanet-train export runs/x/best.pt -o models/qcanet-default.onnx
  qcanet-train evaluate --model M.onnx DATA     # through the Rust `qcanet` command
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _vs(s):
    v = [float(x) for x in s.split(",")]
    if len(v) != 3 or min(v) <= 0:
        raise argparse.ArgumentTypeError("voxel size is Z,Y,X in micrometres, all > 0")
    return v


def _shape(s):
    v = [int(x) for x in s.split(",")]
    if len(v) != 3 or min(v) <= 0:
        raise argparse.ArgumentTypeError("patch is D,H,W voxels")
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(prog="qcanet-train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("pack", help="pack a dataset folder into one compressed .npz")
    p.add_argument("data"); p.add_argument("-o", "--out", required=True)
    p.add_argument("--voxel-size", type=_vs, default=None,
                   help="Z,Y,X um (default: each file's calibration, else BBBC050's 1.75,0.8,0.8)")

    p = sub.add_parser("fit", help="train the joint NSN+NDN network")
    p.add_argument("data", help="dataset folder (images/ nsn/ ndn/ [instances/]) or packed .npz")
    p.add_argument("-o", "--out", required=True, help="run folder (checkpoints, log.csv, curves.png)")
    p.add_argument("--arch", default="lean8", help="lean8 | lean12 | lean16 | paper-nsn | paper-ndn")
    p.add_argument("--voxel-size", type=_vs, default=None,
                   help="Z,Y,X um (default: each file's calibration, else BBBC050's 1.75,0.8,0.8)")
    p.add_argument("--val-embryos", nargs="*", default=["Emb10", "Emb11"],
                   help="embryos held out for validation (split by embryo, never by time point)")
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--time-limit", type=float, default=0, help="seconds; 0 = no limit")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--patch", type=_shape, default=[32, 96, 96])
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--contact-weight", type=float, default=4.0,
                   help="extra loss weight where two nuclei touch (against merges)")
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--seg-every", type=int, default=5, help="full SEG/MUCov every N validations")
    p.add_argument("--epoch-patches", type=int, default=400, help="patches that make one 'epoch' in the log")
    p.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)))
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sweep", dest="sweep", action="store_false",
                   help="skip the post-processing parameter sweep at the end")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", help="start from this checkpoint's weights (fine-tuning, new schedule)")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("export", help="checkpoint -> ONNX (with metadata) + parity check")
    p.add_argument("checkpoint"); p.add_argument("-o", "--out", required=True)
    p.add_argument("--split", action="store_true", help="write separate NSN and NDN files")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--fg-threshold", type=float, help="override the post-processing default stored in the model")
    p.add_argument("--centre-threshold", type=float)
    p.add_argument("--marker-sigma", type=float, help="um")
    p.add_argument("--min-volume", type=float, help="um^3")
    p.add_argument("--landscape", choices=["distance", "centre"])

    p = sub.add_parser("evaluate", help="segment a dataset with the Rust `qcanet` and score it")
    p.add_argument("data"); p.add_argument("--model", help="joint .onnx (default: embedded)")
    p.add_argument("--nsn"); p.add_argument("--ndn")
    p.add_argument("--voxel-size", default="1.75,0.8,0.8")
    p.add_argument("--embryos", nargs="*", help="only these embryos (e.g. the validation ones)")
    p.add_argument("--qcanet", default=shutil.which("qcanet") or "qcanet", help="path of the qcanet command")
    p.add_argument("--json")
    p.add_argument("--by-size", action="store_true",
                   help="also break SEG down by ground-truth nucleus volume (where SEG is lost)")

    a = ap.parse_args(argv)
    if a.cmd == "pack":
        from .data import load_folder, save_packed
        ds = load_folder(a.data, a.voxel_size)
        save_packed(ds, a.out)
        print(f"packed {len(ds.volumes)} volumes into {a.out} ({Path(a.out).stat().st_size / 1e6:.1f} MB)")
    elif a.cmd == "fit":
        from .loop import train
        train(a)
    elif a.cmd == "export":
        from .export import export
        post = {k: v for k, v in (("fg_threshold", a.fg_threshold), ("centre_threshold", a.centre_threshold),
                                  ("sigma_um", a.marker_sigma), ("min_volume_um3", a.min_volume),
                                  ("landscape", a.landscape)) if v is not None}
        export(a.checkpoint, a.out, split=a.split, opset=a.opset, post=post)
    elif a.cmd == "evaluate":
        return _evaluate(a)
    return 0


def _evaluate(a):
    from .data import embryo_of
    data = Path(a.data)
    img = data / "images"
    gt = data / "instances"
    names = sorted(p.name for p in img.glob("*.tif"))
    if a.embryos:
        names = [n for n in names if embryo_of(n) in set(a.embryos)]
    if not names:
        raise SystemExit("no images selected")
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        (td / "in").mkdir(); (td / "gt").mkdir()
        for n in names:
            os.symlink((img / n).resolve(), td / "in" / n)
            os.symlink((gt / n).resolve(), td / "gt" / n)
        cmd = [a.qcanet, "segment", str(td / "in"), "-o", str(td / "out"), "--voxel-size", a.voxel_size]
        if a.model:
            cmd += ["--nsn", a.model]
        if a.nsn:
            cmd += ["--nsn", a.nsn]
        if a.ndn:
            cmd += ["--ndn", a.ndn]
        subprocess.run(cmd, check=True)
        cmd = [a.qcanet, "evaluate", str(td / "out"), str(td / "gt")]
        if a.json:
            cmd += ["--json", a.json]
        rc = subprocess.run(cmd).returncode
        if rc == 0 and a.by_size:
            _print_by_size(td / "out", gt, names, _vs(a.voxel_size))
        return rc


def _print_by_size(pred_dir, gt_dir, names, voxel_size):
    from .. import reference
    from .data import read_volume
    pairs = [(read_volume(pred_dir / n).astype(np.uint32), read_volume(gt_dir / n).astype(np.uint32)) for n in names]
    rows = reference.seg_by_size(pairs, voxel_size)
    total = sum(r["n"] for r in rows)
    print(f"SEG by ground-truth nucleus volume ({total} nuclei in {len(names)} volumes):")
    for r in rows:
        hi = "" if r["hi"] == float("inf") else f"{r['hi']:.0f}"
        print(f"  {r['lo']:>6.0f}-{hi:<6} um^3: {r['n']:4d} nuclei, {r['covered']:4d} covered, {r['matched']:4d} with IoU > 0.5, mean SEG term {r['seg']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
