"""``Model.segment_file``: a stack on disk into labels on disk, block by block, through the
same library code as ``qcanet segment`` (``qca_segment_file``). BigTIFF and OME-Zarr in,
TIFF and OME-Zarr out; never over an input; nothing left behind when refused or cancelled."""
import json
import os
import subprocess

import numpy as np
import pytest
import tifffile

import qcanet
from conftest import QCANET

VOXEL = (1.75, 0.8, 0.8)
BLOCK = (24, 64, 64)


@pytest.fixture(scope="module")
def model():
    with qcanet.Model(device="cpu") as m:
        yield m


@pytest.fixture(scope="module")
def bigtiff(synth_embryo, tmp_path_factory):
    """The generated embryo written as a BigTIFF (tifffile), without calibration."""
    raw = synth_embryo[0]
    path = tmp_path_factory.mktemp("bigtiff") / "embryo_big.tif"
    tifffile.imwrite(path, raw, bigtiff=True)
    with tifffile.TiffFile(path) as f:
        assert f.is_bigtiff
    return raw, path


def cli(*args):
    r = subprocess.run([str(QCANET), "-q", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_bigtiff_in_blocks_equals_the_cli_and_agrees_with_the_whole_volume(model, bigtiff, tmp_path):
    raw, src = bigtiff
    out = tmp_path / "blocks.tif"
    r = model.segment_file(src, out, blocks=BLOCK, voxel_size=VOXEL)
    labels = tifffile.imread(out)
    assert labels.shape == raw.shape
    assert r["frames"] == 1 and r["nuclei"] == [len(np.unique(labels)) - 1] and r["nuclei"][0] > 5
    assert r["blocks"] > 1 and r["voxels"] == raw.size and r["output"] == str(out)
    assert r["seconds"] > 0 and r["network_s"] > 0 and r["mvoxel_per_s"] > 0
    # the same code as the command line: the same labels, voxel for voxel
    ref = tmp_path / "cli.tif"
    cli("segment", src, "-o", ref, "--blocks", ",".join(map(str, BLOCK)), "--voxel-size", ",".join(map(str, VOXEL)))
    np.testing.assert_array_equal(labels, tifffile.imread(ref))
    # one block is the in-memory segmentation exactly
    whole = tmp_path / "whole.tif"
    w = model.segment_file(src, whole, blocks="whole", voxel_size=VOXEL)
    assert w["blocks"] == 1
    np.testing.assert_array_equal(tifffile.imread(whole), model.segment(raw, voxel_size=VOXEL))
    # blocks against the whole volume: the rule (>= 99.5 % of the foreground, nuclei within 0.5 %)
    c = json.loads(cli("compare", whole, out, "--json"))
    assert c["agreement"] >= 0.995, c
    assert abs(w["nuclei"][0] - r["nuclei"][0]) <= 0.005 * w["nuclei"][0], (w["nuclei"], r["nuclei"])


def test_measurements_use_the_file_calibration(model, synth_embryo, tmp_path):
    """The generated TIFF says 1.75 x 0.8 x 0.8 um: each nucleus's volume in the CSV is its
    voxels times that, its row the labels' own count; a voxel size given wins."""
    import csv
    _, _, raw_tif, _ = synth_embryo
    assert qcanet.file_info(raw_tif)["voxel_size"] == pytest.approx(VOXEL)
    out = tmp_path / "labels.tif"
    r = model.segment_file(raw_tif, out, blocks=BLOCK, measure=True)
    labels = tifffile.imread(out)
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert len(rows) == r["nuclei"][0] == labels.max() > 5
    counts = np.bincount(labels.ravel())
    for row in rows:
        assert row["frame"] == "0"
        n = counts[int(row["label"])]
        assert int(row["voxels"]) == n
        assert float(row["volume_um3"]) == pytest.approx(n * 1.75 * 0.8 * 0.8)
    # a voxel size given wins over the file's
    other = tmp_path / "other.tif"
    model.segment_file(raw_tif, other, blocks=BLOCK, measure=True, voxel_size=(3.5, 0.8, 0.8))
    rows2 = list(csv.DictReader((tmp_path / "other.csv").open()))
    assert float(rows2[0]["volume_um3"]) == pytest.approx(int(rows2[0]["voxels"]) * 3.5 * 0.64)


def test_refused_or_cancelled_calls_leave_the_input_and_the_folder_as_they_were(model, bigtiff, tmp_path):
    raw, src = bigtiff
    folder = src.parent
    before = sorted(os.listdir(folder))
    data = src.read_bytes()
    cases = [
        (dict(dst=src), "never writes over its inputs"),
        (dict(dst=folder / "x.ome.zarr"), "write the labels of a TIFF as .tif"),
        (dict(dst=None, labels_into_input="qcanet"), "OME-Zarr images only"),
        (dict(dst=folder / "x.tif", channel=3), "channel 3"),
        (dict(dst=folder / "x.tif", progress=lambda f: False), "cancel"),
        (dict(dst=folder / "x.csv", measure=True), "no name of their own"),
    ]
    for kwargs, message in cases:
        with pytest.raises(qcanet.QcanetError, match=message):
            model.segment_file(src, voxel_size=VOXEL, blocks=BLOCK, **kwargs)
    with pytest.raises(ValueError, match="blocks"):
        model.segment_file(src, folder / "x.tif", blocks="some")
    with pytest.raises(ValueError, match="either dst"):
        model.segment_file(src)
    assert sorted(os.listdir(folder)) == before
    assert src.read_bytes() == data


def test_ome_zarr_in_and_out_and_into_the_input(model, synth_embryo, tmp_path, monkeypatch):
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image
    raw = synth_embryo[0]
    img = tmp_path / "in.ome.zarr"
    write_image(raw, str(img), scale_factors=[2], fmt=FormatV05(), axes="zyx",
                scale=dict(zip("zyx", VOXEL)), axes_units={k: "micrometer" for k in "zyx"},
                storage_options={"chunks": (16, 64, 64)})
    ref = tmp_path / "ref.tif"
    cli("segment", img, "-o", ref, "--blocks", "32,64,64")
    out = tmp_path / "out.ome.zarr"
    r = model.segment_file(img, out, blocks=(32, 64, 64))
    import zarr

    def level0(path):
        g = zarr.open_group(str(path), mode="r")
        ome = g.attrs.asdict()["ome"]
        assert "image-label" in ome
        return np.asarray(g[ome["multiscales"][0]["datasets"][0]["path"]])
    np.testing.assert_array_equal(level0(out), tifffile.imread(ref))
    r2 = model.segment_file(img, labels_into_input="qcanet", blocks=(32, 64, 64))
    assert r2["output"] == str(img / "labels" / "qcanet") and r2["nuclei"] == r["nuclei"]
    np.testing.assert_array_equal(level0(r2["output"]), tifffile.imread(ref))
    with pytest.raises(qcanet.QcanetError, match="exists"):
        model.segment_file(img, labels_into_input="qcanet")
    # measurements of labels into the input: beside the input, named after it
    r3 = model.segment_file(img, labels_into_input="measured", blocks=(32, 64, 64), measure=True)
    assert len((tmp_path / "in.csv").read_text().splitlines()) == 1 + r3["nuclei"][0]
    # the image named "." gives its CSV no name: refused before any work, nothing written into it
    monkeypatch.chdir(img)
    with pytest.raises(qcanet.QcanetError, match="no name of their own"):
        model.segment_file(".", labels_into_input="dot", measure=True)
    assert not (img / "labels" / "dot").exists()


def test_an_ome_tiff_is_read_in_its_own_dimension_order_and_units(model, synth_embryo, tmp_path):
    """A 2-channel OME-TIFF (tifffile, CZYX: DimensionOrder XYZCT, every slice of channel 0
    before channel 1) with physical sizes in nm and um: the nuclei's channel is read whole
    and block by block as the volume itself."""
    raw = synth_embryo[0]
    nz = raw.shape[0]
    two = np.stack([np.full_like(raw, 7), raw])
    tif = tmp_path / "two.ome.tif"
    tifffile.imwrite(tif, two, ome=True, metadata={
        "axes": "CZYX", "PhysicalSizeZ": 1750.0, "PhysicalSizeZUnit": "nm",
        "PhysicalSizeY": 0.8, "PhysicalSizeYUnit": "µm", "PhysicalSizeX": 0.8, "PhysicalSizeXUnit": "µm"})
    with tifffile.TiffFile(tif) as f:
        assert 'DimensionOrder="XYZCT"' in f.ome_metadata
    info = qcanet.file_info(tif)
    assert info == {"dims": raw.shape, "channels": 2, "frames": 1, "voxel_size": VOXEL,
                    "page_strides": (2 * nz, 1, nz)}, info
    vol, vs = qcanet.read_tiff(tif, channel=1)
    np.testing.assert_array_equal(vol, raw)
    assert vs == VOXEL
    assert (qcanet.read_tiff(tif, channel=0)[0] == 7).all()
    out = tmp_path / "labels.tif"
    r = model.segment_file(tif, out, channel=1, blocks="whole")
    labels = tifffile.imread(out)
    np.testing.assert_array_equal(labels, model.segment(raw, voxel_size=VOXEL))
    assert r["nuclei"] == [labels.max()]
    np.testing.assert_array_equal(qcanet.read_tiff(out)[0], labels)
    assert qcanet.read_tiff(out)[1] == pytest.approx(VOXEL)
    # block by block: the pages of channel 1 in the file's order
    blocks = tmp_path / "blocks.tif"
    model.segment_file(tif, blocks, channel=1, blocks=BLOCK)
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, raw, bigtiff=True)
    ref = tmp_path / "ref.tif"
    model.segment_file(single, ref, blocks=BLOCK, voxel_size=VOXEL)
    np.testing.assert_array_equal(tifffile.imread(blocks), tifffile.imread(ref))
