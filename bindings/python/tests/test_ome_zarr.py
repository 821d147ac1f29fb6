"""OME-Zarr in and out of `qcanet segment`, checked with the reference implementation of the
format (ome-zarr-py writes the images and reads the labels back): NGFF 0.4 (Zarr v2) and 0.5
(Zarr v3), the labels equal to the TIFF path's, the label image's metadata as NGFF asks."""
import json
import subprocess

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.writer import write_image

from conftest import QCANET

VOXEL = {"z": 1.75, "y": 0.8, "x": 0.8}


def ome_image(path, image, fmt, chunks=(16, 64, 64)):
    """`image` (z, y, x) written as an OME-Zarr with two levels by ome-zarr-py."""
    write_image(image, str(path), scale_factors=[2], fmt=fmt, axes="zyx", scale=VOXEL,
                axes_units={k: "micrometer" for k in "zyx"}, storage_options={"chunks": chunks})
    return path


def tzyx_series(raw, tmp_path):
    """Two frames (the volume, then its mirror in x) as a TZYX OME-Zarr (NGFF 0.5, 60 s a frame,
    chunks of one frame x 16 x 64 x 64): (the series, its path)."""
    series = np.stack([raw, raw[:, :, ::-1]])
    path = tmp_path / "tzyx.ome.zarr"
    write_image(series, str(path), scale_factors=[], fmt=FormatV05(), axes="tzyx",
                scale={"t": 60.0, **VOXEL}, axes_units={"t": "second", **{k: "micrometer" for k in "zyx"}},
                storage_options={"chunks": (1, 16, 64, 64)})
    return series, path


def segment(*args):
    r = subprocess.run([str(QCANET), "-q", "segment", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def read_labels(path):
    """The label image at `path` as ome-zarr-py reads it: (node, level-0 array)."""
    nodes = list(Reader(parse_url(str(path)))())
    node = nodes[0]
    return node, np.asarray(node.data[0])


@pytest.mark.parametrize("fmt", [FormatV04(), FormatV05()], ids=["ngff-0.4", "ngff-0.5"])
def test_labels_equal_the_tiff_path_and_carry_ngff_metadata(synth_embryo, tmp_path, fmt):
    raw, _, raw_tif, _ = synth_embryo
    img = ome_image(tmp_path / "in.ome.zarr", raw, fmt)
    ref = tmp_path / "ref.tif"
    segment(raw_tif, "-o", ref, "--voxel-size", "1.75,0.8,0.8", "--blocks", "whole")
    out = tmp_path / "out.ome.zarr"
    segment(img, "-o", out, "--blocks", "whole")
    node, labels = read_labels(out)
    np.testing.assert_array_equal(labels, tifffile.imread(ref))
    # the label image: image-label, the input's axes and scales, every level of the input
    meta = node.metadata
    assert [a["name"] for a in meta["axes"]] == ["z", "y", "x"]
    assert all(a.get("unit") == "micrometer" for a in meta["axes"])
    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()
    ome = attrs.get("ome", attrs)
    assert "image-label" in ome
    ms_in = zarr.open_group(str(img), mode="r").attrs.asdict()
    ms_in = ms_in.get("ome", ms_in)["multiscales"][0]
    ms_out = ome["multiscales"][0]
    assert [d["coordinateTransformations"] for d in ms_out["datasets"]] == [d["coordinateTransformations"] for d in ms_in["datasets"]]
    levels_in = zarr.open_group(str(img), mode="r")
    assert [np.asarray(d).shape for d in node.data] == [levels_in[d["path"]].shape for d in ms_in["datasets"]]
    # the lower level samples level 0: no label that level 0 lacks
    assert set(np.unique(np.asarray(node.data[1]))) <= set(np.unique(labels))
    # the Zarr format of the input (v2 for NGFF 0.4, v3 for 0.5), with its chunks
    out_level0 = zarr.open_group(str(out), mode="r")[ms_out["datasets"][0]["path"]]
    assert out_level0.metadata.zarr_format == levels_in[ms_in["datasets"][0]["path"]].metadata.zarr_format
    assert out_level0.chunks == levels_in[ms_in["datasets"][0]["path"]].chunks


def test_labels_into_the_input_and_never_over_existing_ones(synth_embryo, tmp_path):
    raw, _, _, _ = synth_embryo
    img = ome_image(tmp_path / "in.ome.zarr", raw, FormatV05())
    segment(img, "--labels-into-input", "--blocks", "whole")
    labels = zarr.open_group(str(img / "labels"), mode="r").attrs.asdict()
    assert labels["ome"]["labels"] == ["qcanet"]
    # ome-zarr-py finds them from the image
    nodes = list(Reader(parse_url(str(img)))())
    assert any("image-label" in (n.zarr.root_attrs.get("ome", n.zarr.root_attrs)) for n in nodes[1:]) or len(nodes) > 1
    before = sorted(p.name for p in (img / "labels" / "qcanet").rglob("*"))
    r = subprocess.run([str(QCANET), "-q", "segment", str(img), "--labels-into-input"], capture_output=True, text=True)
    assert r.returncode == 1 and "exists" in r.stderr, r.stderr
    assert sorted(p.name for p in (img / "labels" / "qcanet").rglob("*")) == before
    # an existing output is never replaced, and nothing temporary is left behind
    out = tmp_path / "out.ome.zarr"
    segment(img, "-o", out, "--blocks", "whole")
    listing = sorted(p.name for p in out.rglob("*"))
    r = subprocess.run([str(QCANET), "-q", "segment", str(img), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 1 and "exists" in r.stderr, r.stderr
    assert sorted(p.name for p in out.rglob("*")) == listing
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".qcanet-")]


def test_a_time_series_is_segmented_frame_by_frame(synth_embryo, tmp_path):
    raw, _, _, _ = synth_embryo
    series, path = tzyx_series(raw, tmp_path)
    out = tmp_path / "out.ome.zarr"
    segment(path, "-o", out, "--blocks", "whole")
    _, labels = read_labels(out)
    assert labels.shape == series.shape
    # the second frame is the first mirrored, and so is its foreground (the networks are not
    # exactly mirror-symmetric: 99.8 % measured)
    a, b = labels[0] > 0, labels[1] > 0
    assert a.sum() > 1000 and (a == b[:, :, ::-1]).mean() > 0.99
    # the time step is kept
    ms = zarr.open_group(str(out), mode="r").attrs.asdict()["ome"]["multiscales"][0]
    assert ms["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][0] == 60.0


def test_measure_block_by_block_names_the_csv_after_the_image_and_counts_every_voxel(synth_embryo, tmp_path):
    raw, _, _, _ = synth_embryo
    series, path = tzyx_series(raw, tmp_path)
    out = tmp_path / "out.ome.zarr"
    segment(path, "-o", out, "--blocks", "16,64,64", "--measure")
    assert not (tmp_path / "out.ome.csv").exists()
    rows = (tmp_path / "out.csv").read_text().splitlines()
    head = rows[0].split(",")
    table = [dict(zip(head, r.split(","))) for r in rows[1:]]
    _, labels = read_labels(out)
    # every nucleus of every frame, with its voxels, intensity sum and centroid from the
    # labels and the raw image as numpy computes them
    for t in range(2):
        got = {int(r["label"]): r for r in table if r["frame"] == str(t)}
        ids = [i for i in np.unique(labels[t]) if i]
        assert sorted(got) == ids and len(ids) > 3
        for i in ids:
            where = labels[t] == i
            assert int(got[i]["voxels"]) == where.sum()
            assert float(got[i]["total_intensity"]) == pytest.approx(series[t][where].astype(float).sum(), rel=1e-9)
            zyx = np.argwhere(where).mean(axis=0)
            assert [float(got[i][f"centroid_{a}"]) for a in "zyx"] == pytest.approx(zyx, abs=1e-3)
            assert float(got[i]["volume_um3"]) == pytest.approx(where.sum() * 1.75 * 0.8 * 0.8, rel=1e-4)


def test_measure_into_the_input_writes_beside_it_and_never_two_csvs_into_one(synth_embryo, tmp_path):
    raw, _, _, _ = synth_embryo
    a = ome_image(tmp_path / "emb.ome.zarr", raw, FormatV05())
    segment(a, "--labels-into-input", "--measure", "--blocks", "whole")
    rows = (tmp_path / "emb.csv").read_text().splitlines()
    assert rows[0].startswith("frame,label,voxels") and len(rows) > 3
    # emb.zarr would be measured into the same emb.csv: refused before any work
    b = ome_image(tmp_path / "emb.zarr", raw, FormatV05())
    r = subprocess.run([str(QCANET), "-q", "segment", str(a), str(b), "--labels-into-input", "--measure",
                        "--labels-name", "again"], capture_output=True, text=True)
    assert r.returncode != 0 and "would both be measured into" in r.stderr, r.stderr
    assert not (b / "labels").exists()
