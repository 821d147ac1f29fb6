"""Throughput of qcanet.distributed with 1 and 2 Dask worker processes, against the
single-process CLI on the same blocks: a generated volume stored as an OME-Zarr whose chunks
are the block cores, segmented by `qcanet segment --blocks` and by `qcanet.distributed.segment`
on a LocalCluster of 1 and 2 workers (1 inference thread each). Prints Mvoxel/s (the cluster
already started; each worker's model load counted) and the agreement with the CLI's labels.

usage: dask_workers.py QCANET_BINARY [--dims Z,Y,X] [--block Z,Y,X] [--frames N]
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import zarr
from distributed import Client, LocalCluster
from ome_zarr.format import FormatV05
from ome_zarr.writer import write_image

import qcanet
import qcanet.distributed as qd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from compare_labels import agreement  # noqa: E402  (the project's rule: `qcanet compare`)


def level0(path):
    g = zarr.open_group(str(path), mode="r")
    return np.asarray(g["s0"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("qcanet")
    ap.add_argument("--dims", default="102,240,240")
    ap.add_argument("--block", default="51,120,120")
    ap.add_argument("--frames", type=int, default=1)
    a = ap.parse_args()
    dims = [int(v) for v in a.dims.split(",")]
    block = tuple(int(v) for v in a.block.split(","))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        raw = d / "raw.tif"
        subprocess.run([a.qcanet, "-q", "synth", "-o", str(raw), "--labels", str(d / "gt.tif"), "--nuclei", "60",
                        "--seed", "7", "--dims", a.dims], check=True)
        v = tifffile.imread(raw)
        series = np.stack([v if t % 2 == 0 else v[:, ::-1, :].copy() for t in range(a.frames)])
        img = d / "in.ome.zarr"
        write_image(series, str(img), scale_factors=[], fmt=FormatV05(), axes="tzyx",
                    scale={"t": 60.0, "z": 1.75, "y": 0.8, "x": 0.8},
                    axes_units={"t": "second", **{k: "micrometer" for k in "zyx"}},
                    storage_options={"chunks": (1, *block)})
        voxels = float(np.prod(dims)) * a.frames
        with qcanet.Model(threads=1) as m:
            model = m.describe().split(";")[0]
            precision = [p for p in m.describe().split("; ") if p.startswith("precision")]
        print(f"{a.frames} frame(s) of {dims}, blocks {block}, {voxels / 1e6:.1f} M voxels; "
              f"model {model} {precision}")
        print("| run | wall s | Mvoxel/s | nuclei | agreement with the CLI |")
        print("|---|---|---|---|---|")
        ref = d / "ref.ome.zarr"
        t0 = time.perf_counter()
        r = subprocess.run([a.qcanet, "-q", "segment", str(img), "-o", str(ref), "--blocks", a.block, "--timings"],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(r.stderr)
        ref_labels = level0(ref)
        n_ref = [len(np.unique(f)) - 1 for f in ref_labels]
        print(f"| `qcanet segment --blocks` (1 process, 2 threads) | {wall:.1f} | {voxels / wall / 1e6:.3f} | {n_ref} | 1 |")
        for workers in (1, 2):
            out = d / f"dask{workers}.ome.zarr"
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                client.run(lambda: None)
                s = qd.segment(img, out, client=client, block=block, threads=1)
            labels = level0(out)
            agree = min(agreement(labels[t], ref_labels[t])["agreement"] for t in range(a.frames))
            print(f"| qcanet.distributed, {workers} worker(s) x 1 thread | {s['seconds']:.1f} | "
                  f"{voxels / s['seconds'] / 1e6:.3f} | {s['nuclei']} | {agree:.4f} |")


if __name__ == "__main__":
    main()
