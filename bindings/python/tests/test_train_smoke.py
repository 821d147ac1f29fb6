"""qcanet-train on a generated dataset: a few iterations, export, ONNX/PyTorch parity,
and the exported model loaded and run by the Rust library."""
import json
import subprocess
import sys

import numpy as np
import pytest

import torch  # noqa: F401  (make venv-train installs it; a missing PyTorch is a failure, not a skip)

import qcanet  # noqa: E402
from conftest import QCANET  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    import tifffile
    root = tmp_path_factory.mktemp("ds")
    for d in ("images", "nsn", "ndn", "instances"):
        (root / d).mkdir()
    for emb, seed in (("EmbA", 1), ("EmbB", 2)):
        for t, n in ((1, 4), (2, 8)):
            name = f"{emb}_t{t:03d}.tif"
            subprocess.run([str(QCANET), "synth", "-o", str(root / "images" / name), "--labels",
                            str(root / "instances" / name), "--nuclei", str(n), "--seed", str(seed * 10 + t),
                            "--dims", "24,64,64"], check=True, capture_output=True)
            lab = tifffile.imread(root / "instances" / name)
            tifffile.imwrite(root / "nsn" / name, ((lab > 0) * 255).astype(np.uint8))
            tifffile.imwrite(root / "ndn" / name, np.zeros_like(lab, np.uint8))
    return root


def test_fit_export_and_run_in_rust(dataset, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "qcanet.train", "fit", str(dataset), "-o", str(run), "--arch", "lean8",
           "--iters", "4", "--batch", "1", "--patch", "16,32,32", "--val-embryos", "EmbB",
           "--val-every", "2", "--seg-every", "1", "--workers", "1", "--no-sweep", "--quiet", "--device", "cpu"]
    subprocess.run(cmd, check=True)
    for f in ("best.pt", "last.pt", "log.csv", "config.json", "curves.png"):
        assert (run / f).exists(), f
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["arch"] == "lean8" and cfg["val_embryos"] == ["EmbB"] and "command" in cfg
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("iteration,epoch") and len(rows) >= 3

    # resume continues from the checkpoint instead of starting over
    subprocess.run(cmd[:cmd.index("--iters") + 1] + ["6"] + cmd[cmd.index("--iters") + 2:] + ["--resume"],
                   check=True)
    rows2 = (run / "log.csv").read_text().strip().splitlines()
    assert int(rows2[-1].split(",")[0]) == 6

    from qcanet.train.export import export
    onnx_path = tmp_path / "m.onnx"
    diffs = export(run / "best.pt", onnx_path)
    assert max(diffs.values()) < 1e-4
    split = export(run / "best.pt", tmp_path / "pair.onnx", split=True)
    assert len(split) == 2 and max(split.values()) < 1e-4

    import tifffile
    raw = tifffile.imread(dataset / "images" / "EmbA_t002.tif")
    with qcanet.Model(nsn=onnx_path) as m:
        assert "role=joint" in m.describe()
        lab = m.segment(raw, voxel_size=(1.75, 0.8, 0.8))
    assert lab.shape == raw.shape
    with qcanet.Model(nsn=tmp_path / "pair-nsn.onnx", ndn=tmp_path / "pair-ndn.onnx") as m:
        lab2 = m.segment(raw, voxel_size=(1.75, 0.8, 0.8))
    # the split pair is the same network: the same labels
    assert np.array_equal(lab, lab2)
    with pytest.raises(qcanet.QcanetError) as e:
        qcanet.Model(nsn=tmp_path / "pair-ndn.onnx", ndn=tmp_path / "pair-nsn.onnx")
    assert e.value.status_name == "QCA_ERR_MODEL"

    # `qcanet-train evaluate` runs the Rust command on the held-out embryo and reports scores
    scores = tmp_path / "scores.json"
    r = subprocess.run([sys.executable, "-m", "qcanet.train", "evaluate", str(dataset), "--model", str(onnx_path),
                        "--embryos", "EmbB", "--qcanet", str(QCANET), "--json", str(scores), "--by-size"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "mean of 2" in r.stdout
    doc = json.loads(scores.read_text())
    assert [f["file"] for f in doc["files"]] == ["EmbB_t001.tif", "EmbB_t002.tif"]
    # the size breakdown covers every ground-truth nucleus the Rust evaluation counted
    n_gt = sum(f["metrics"]["n_gt"] for f in doc["files"])
    assert f"SEG by ground-truth nucleus volume ({n_gt} nuclei in 2 volumes)" in r.stdout


def test_voxel_size_comes_from_the_calibration(dataset):
    from qcanet.train.data import load_folder, tiff_voxel_size
    v = tiff_voxel_size(dataset / "images" / "EmbA_t001.tif")
    assert v == pytest.approx((1.75, 0.8, 0.8))
    ds = load_folder(dataset, progress=False)
    assert all(x.voxel_size == pytest.approx((1.75, 0.8, 0.8)) for x in ds.volumes)
    assert {x.embryo for x in ds.volumes} == {"EmbA", "EmbB"}


def test_seg_sensitivity_tool(dataset):
    # tools/seg_sensitivity.py scores the ground truth against perturbed copies of itself
    from pathlib import Path
    tool = Path(__file__).resolve().parents[3] / "tools" / "seg_sensitivity.py"
    r = subprocess.run([sys.executable, str(tool), str(dataset), "--embryos", "EmbA"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "(2 volumes" in r.stdout
    rows = {line.split("SEG")[0].strip(): (float(line.split()[-3]), float(line.split()[-1]))
            for line in r.stdout.splitlines() if "SEG" in line and "MUCov" in line}
    assert set(rows) == {"shifted 1 voxel in x", "shifted 1 voxel in z", "eroded 1 voxel in xy",
                         "dilated 1 voxel in xy", "objects < 300 um^3 dropped"}
    # a one-voxel change costs something but keeps every nucleus matched on these large nuclei
    for k in ("shifted 1 voxel in x", "eroded 1 voxel in xy", "dilated 1 voxel in xy"):
        assert 0.5 < rows[k][0] < 1.0, (k, rows[k])
    # erosion removes more of a nucleus than a one-voxel shift in x does
    assert rows["eroded 1 voxel in xy"][0] < rows["shifted 1 voxel in x"][0]
    # dropping objects leaves every remaining one identical to its ground truth
    assert rows["objects < 300 um^3 dropped"][1] == 1.0
