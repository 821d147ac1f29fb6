"""Time lapses: `qcanet track` and `qcanet analyse` scored with an independent
implementation of the Cell Tracking Challenge measures (py-ctcmetrics), on generated
series whose true tracks are known (`qcanet synth --frames`)."""
import contextlib
import csv
import io
import subprocess

import numpy as np
import pytest
import tifffile

from conftest import QCANET


def ctc_scores(res, gt):
    from ctc_metrics import evaluate_sequence
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its whole result
        r = evaluate_sequence(res=str(res), gt=str(gt), metrics=["Valid", "DET", "TRA", "BC(0)"], threads=1)
    return r


def synth_series(d, seed, frames=12):
    raw, gt = d / f"raw{seed}.tif", d / f"gt{seed}"
    subprocess.run([str(QCANET), "synth", "--frames", str(frames), "--seed", str(seed), "-o", str(raw),
                    "--labels", str(gt)], check=True, capture_output=True)
    return raw, gt


def run(*args):
    p = subprocess.run([str(QCANET), "-q", *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tracking_ground_truth_labels_scores_perfectly(tmp_path, seed):
    raw, gt = synth_series(tmp_path, seed)
    out = tmp_path / "RES"
    run("track", gt / "TRA", "-o", out, "--image", raw, "--interval", "5", "--time-unit", "min")
    r = ctc_scores(out, gt)
    assert r["Valid"] == 1
    assert r["TRA"] >= 0.95 and r["DET"] >= 0.95, r
    assert r["BC(0)"] >= 0.9, r  # division F1, no frame of tolerance
    # the criteria agree with the ground truth, frame by frame
    truth = [len(np.unique(tifffile.imread(f))) - 1 for f in sorted((gt / "TRA").glob("*.tif"))]
    crit = rows(out / "criteria.csv")
    assert [int(c["nuclei"]) for c in crit] == truth
    assert [float(c["time"]) for c in crit] == [5.0 * t for t in range(len(truth))]
    man = np.loadtxt(gt / "TRA" / "man_track.txt", dtype=int, ndmin=2)
    true_divisions = sum(1 for p in np.unique(man[:, 3]) if p and (man[:, 3] == p).sum() == 2)
    assert sum(int(c["divisions"]) for c in crit) == true_divisions
    assert all(float(c["mean_intensity"]) > 0 for c in crit)
    rounds = rows(out / "division_rounds.csv")
    assert [int(r["round"]) for r in rounds] == [1, 2]  # 4 -> 8 -> 16 nuclei
    assert all(int(r["spread_frames"]) == 0 for r in rounds)  # the generator divides in synchrony
    assert (out / "criteria.svg").read_text().startswith("<svg")
    tracks = rows(out / "tracks.csv")
    assert len(tracks) == sum(truth)


def test_a_nucleus_missing_for_one_frame_is_bridged(tmp_path):
    raw, gt = synth_series(tmp_path, 1)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(sorted((gt / "TRA").glob("*.tif"))):
        lab = tifffile.imread(f)
        if i == 2:
            lab[lab == lab.max()] = 0  # the segmentation missed one nucleus in frame 2
        tifffile.imwrite(frames / f"t{i:02d}.tif", lab, imagej=True, resolution=(1 / 0.8, 1 / 0.8),
                         metadata={"spacing": 1.75, "unit": "micron", "axes": "ZYX"})
    out = tmp_path / "RES"
    run("track", frames, "-o", out)
    r = ctc_scores(out, gt)
    assert r["Valid"] == 1
    assert r["TRA"] >= 0.95 and r["DET"] >= 0.95, r
    lines = (out / "res_track.txt").read_text().split("\n")
    gap = [ln for ln in lines if ln and ln.split()[1] == "3" and ln.split()[3] != "0"]
    assert gap, "the nucleus found again in frame 3 continues the track that ended in frame 1"


def test_analyse_segments_and_tracks_a_generated_series(tmp_path):
    """The network's own segmentation of a generated series (measured: TRA 0.982, DET 0.982,
    division F1 1.0 for seed 1)."""
    raw, gt = synth_series(tmp_path, 1)
    out = tmp_path / "AN"
    run("analyse", raw, "-o", out)
    r = ctc_scores(out, gt)
    assert r["Valid"] == 1
    assert r["TRA"] >= 0.95 and r["DET"] >= 0.95, r
    assert r["BC(0)"] >= 0.9, r
    assert not [p for p in tmp_path.rglob(".qcanet-*")], "no scratch left behind"


def test_track_refuses_a_used_folder_and_uncalibrated_labels(tmp_path):
    raw, gt = synth_series(tmp_path, 2, frames=3)
    out = tmp_path / "RES"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    p = subprocess.run([str(QCANET), "-q", "track", str(gt / "TRA"), "-o", str(out)], capture_output=True, text=True)
    assert p.returncode != 0 and "not empty" in p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["keep.txt"]
    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, np.stack([tifffile.imread(f) for f in sorted((gt / "TRA").glob("*.tif"))]),
                     imagej=True, metadata={"axes": "TZYX"})
    p = subprocess.run([str(QCANET), "-q", "track", str(bare), "-o", str(tmp_path / "R2")], capture_output=True, text=True)
    assert p.returncode != 0 and "--voxel-size" in p.stderr
    assert not (tmp_path / "R2").exists()


def test_python_track_equals_the_cli(tmp_path):
    import qcanet
    raw, gt = synth_series(tmp_path, 3, frames=9)
    files = sorted((gt / "TRA").glob("*.tif"))
    images = tifffile.imread(raw)
    out = tmp_path / "RES"
    run("track", gt / "TRA", "-o", out, "--image", raw, "--interval", "2")
    # a generator: one frame read at a time
    t = qcanet.track((tifffile.imread(f) for f in files), voxel_size=(1.75, 0.8, 0.8), images=list(images),
                     interval=2.0)
    assert t.res_track_txt() == (out / "res_track.txt").read_text()
    cli = rows(out / "criteria.csv")
    assert len(t.criteria) == len(cli) == 9
    for mine, theirs in zip(t.criteria, cli):
        assert mine["nuclei"] == int(theirs["nuclei"]) and mine["divisions"] == int(theirs["divisions"])
        assert mine["time"] == float(theirs["time"])
        for k in ["volume_um3_sum", "surface_um2_mean", "sphericity_mean", "mean_intensity"]:
            assert abs(mine[k] - float(theirs[k])) <= 1e-3 * max(1.0, abs(mine[k])), k
    assert len(t.divisions) == sum(int(c["divisions"]) for c in cli)
    assert [r["round"] for r in t.rounds] == [1, 2]
    assert len(t.points) == len(rows(out / "tracks.csv"))
    mask = t.relabel(tifffile.imread(files[8]), 8)
    assert np.array_equal(mask, tifffile.imread(out / "mask008.tif"))
    # the library's checks reach Python as exceptions, with its message
    with pytest.raises(qcanet.QcanetError, match="max_displacement_um"):
        qcanet.track([tifffile.imread(files[0])], voxel_size=(1.75, 0.8, 0.8), max_displacement_um=-1)
    with pytest.raises(qcanet.QcanetError, match="dims"):
        qcanet.track([np.zeros((4, 8, 8), np.uint32), np.zeros((4, 8, 9), np.uint32)], voxel_size=(1, 1, 1))
    with pytest.raises(TypeError):
        qcanet.track([], voxel_size=(1, 1, 1), max_displacment_um=3)
    with pytest.raises(ValueError, match="fewer images"):
        qcanet.track([np.zeros((4, 8, 8), np.uint32)], voxel_size=(1, 1, 1), images=[])
