#!/usr/bin/env python3
"""A large test stack made by mirroring a real volume (numpy "symmetric" tiling).

    mirror_volume.py in.tif out.tif --dims 153,1024,1024

Each axis is extended by reflecting the volume about its faces, so every nucleus in the
result is a real (mirrored) nucleus and there are no seams of a different texture. The
output is an uncompressed uint16 (Big)TIFF.
"""
import argparse
import sys

import numpy as np


def mirrored(vol, dims):
    """`vol` tiled by reflection to exactly `dims` (z, y, x).

    >>> mirrored(np.arange(3)[None, None, :], (1, 1, 8)).ravel().tolist()
    [0, 1, 2, 2, 1, 0, 0, 1]
    """
    pads = [(0, max(0, d - s)) for d, s in zip(dims, vol.shape)]
    out = np.pad(vol, pads, mode="symmetric")
    return out[: dims[0], : dims[1], : dims[2]]


def main(argv=None):
    import tifffile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--dims", default="153,1024,1024", help="Z,Y,X of the result")
    a = ap.parse_args(argv)
    dims = tuple(int(v) for v in a.dims.split(","))
    if len(dims) != 3 or min(dims) < 1 or np.prod(dims, dtype=np.float64) > 2**33:
        print(f"--dims {a.dims}: three positive sizes, at most 2^33 voxels (16 GiB of uint16) in all", file=sys.stderr)
        return 2
    vol = tifffile.imread(a.input)
    if vol.ndim != 3:
        print(f"{a.input}: a 3-D stack is needed, got shape {vol.shape}", file=sys.stderr)
        return 2
    out = mirrored(vol, dims).astype(np.uint16, copy=False)
    tifffile.imwrite(a.output, out, bigtiff=out.nbytes > 2**31, photometric="minisblack")
    print(f"{a.output}: {out.shape} uint16 from {a.input} {vol.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
