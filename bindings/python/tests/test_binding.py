"""The Python binding end to end: embedded model, errors, TIFF round trip, measurements."""
import numpy as np
import pytest

import qcanet


def test_version_and_describe():
    assert qcanet.version().count(".") == 2
    with qcanet.Model() as m:
        d = m.describe()
    assert "embedded default" in d and "voxel_size=1.75,0.8,0.8" in d


def test_segment_generated_embryo(synth_embryo):
    raw, gt, _, _ = synth_embryo
    seen = []
    with qcanet.Model(threads=2) as m:
        lab = m.segment(raw, voxel_size=(1.75, 0.8, 0.8), progress=lambda f: seen.append(f) or True)
    assert lab.shape == raw.shape and lab.dtype == np.uint32
    met = qcanet.evaluate(lab, gt)
    assert met.n_gt == 14
    assert met.f1 >= 0.7 and met.seg >= 0.5, met
    assert seen and seen[-1] == pytest.approx(1.0)


def test_stage_timings_and_load_time(synth_embryo):
    raw, _, _, _ = synth_embryo
    with qcanet.Model(threads=2) as m:
        plain = m.segment(raw, voxel_size=(1.75, 0.8, 0.8))
        lab, t = m.segment(raw, voxel_size=(1.75, 0.8, 0.8), return_timings=True)
    np.testing.assert_array_equal(lab, plain)
    assert set(t) == {"prepare_s", "normalise_s", "resample_s", "network_s", "post_s", "mask_s", "markers_s",
                      "landscape_s", "watershed_s", "resample_back_s"}
    assert t["network_s"] > 0 and t["post_s"] > 0 and t["watershed_s"] > 0
    # each stage is timed around its steps
    assert t["normalise_s"] + t["resample_s"] <= t["prepare_s"] + 1e-6
    assert t["mask_s"] + t["markers_s"] + t["landscape_s"] + t["watershed_s"] + t["resample_back_s"] <= t["post_s"] + 1e-3


def test_ctypes_structs_have_the_librarys_sizes():
    lib = qcanet._lib()
    import ctypes as C
    from qcanet import _native as N
    for name in ("QcaModelOptions", "QcaSegmentParams", "QcaTimings", "QcaImageInfo", "QcaBlockOptions", "QcaFileReport"):
        assert C.sizeof(getattr(N, name)) == lib.qca_struct_size(name.encode()), name


def test_cancel_from_progress(synth_embryo):
    raw, _, _, _ = synth_embryo
    with qcanet.Model() as m:
        with pytest.raises(qcanet.QcanetError) as e:
            m.segment(raw, voxel_size=(1.75, 0.8, 0.8), progress=lambda f: False)
    assert e.value.status_name == "QCA_ERR_CANCELLED"


def test_errors_carry_the_library_message(tmp_path):
    with pytest.raises(qcanet.QcanetError) as e:
        qcanet.Model(nsn=tmp_path / "missing.onnx")
    assert e.value.status_name == "QCA_ERR_IO" and "missing.onnx" in str(e.value)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(qcanet.QcanetError) as e:
        qcanet.Model(nsn=bad)
    assert e.value.status_name == "QCA_ERR_MODEL"
    with qcanet.Model() as m:
        v = np.zeros((8, 16, 16), np.float32)
        v[2, 3, 4] = np.nan
        with pytest.raises(qcanet.QcanetError) as e:
            m.segment(v)
        assert e.value.status_name == "QCA_ERR_NON_FINITE"
        # 0 would mean "the model's" in the C struct: Python (None = the model's) refuses it
        with pytest.raises(ValueError, match="positive"):
            m.segment(np.zeros((8, 16, 16), np.uint16), voxel_size=(0, 0.8, 0.8))
        with pytest.raises(qcanet.QcanetError) as e:
            m.segment(np.zeros((8, 16, 16), np.uint16), voxel_size=(1000, 0.8, 0.8))
        assert e.value.status_name == "QCA_ERR_INVALID_ARGUMENT"


def test_tiff_round_trip_and_measure(tmp_path, synth_embryo):
    raw, gt, raw_path, _ = synth_embryo
    v, vs = qcanet.read_tiff(raw_path)
    assert np.array_equal(v, raw.astype(np.float32))
    assert vs == pytest.approx((1.75, 0.8, 0.8))
    out = tmp_path / "lab.tif"
    qcanet.write_tiff(out, gt, voxel_size=(1.75, 0.8, 0.8))
    back, vs2 = qcanet.read_tiff(out)
    assert np.array_equal(back.astype(np.uint32), gt) and vs2 == pytest.approx((1.75, 0.8, 0.8))
    nuc = qcanet.measure(gt, raw, voxel_size=(1.75, 0.8, 0.8))
    assert [n["label"] for n in nuc] == list(range(1, 15))
    n1 = nuc[0]
    assert n1["voxels"] == int((gt == 1).sum())
    assert n1["volume_um3"] == pytest.approx(n1["voxels"] * 1.75 * 0.8 * 0.8)
    assert n1["mean_intensity"] == pytest.approx(raw[gt == 1].mean(), rel=1e-9)
    with pytest.raises(qcanet.QcanetError) as e:
        qcanet.read_tiff(tmp_path / "nope.tif")
    assert e.value.status_name == "QCA_ERR_IO"


def test_devices_on_a_machine_without_a_gpu():
    import os
    if os.path.exists("/proc/driver/nvidia"):
        pytest.skip("this machine has an NVIDIA driver: auto would pick CUDA")
    with qcanet.Model(device="auto") as m:
        assert m.device == "cpu"
    # the runtime this process runs has no CUDA, or the GPU build finds no driver: a clear error
    with pytest.raises(qcanet.QcanetError, match="CUDA") as e:
        qcanet.Model(device="cuda")
    assert e.value.status_name == "QCA_ERR_RUNTIME"
    with pytest.raises(ValueError, match="precision"):
        qcanet.Model(precision="fp16")
    with qcanet.Model(device="cpu", precision="tf32") as m:   # tf32 concerns GPUs only
        assert m.device == "cpu"


def test_meaningless_arrays_and_parameters_are_refused():
    with qcanet.Model(device="cpu") as m:
        for bad in (np.zeros((4, 8, 8), bool), np.zeros((4, 8, 8), np.complex64)):
            with pytest.raises(TypeError, match="intensities"):
                m.segment(bad)
        v = np.zeros((8, 32, 32), np.uint16)
        with pytest.raises(ValueError, match="tile"):
            m.segment(v, tile=(-1, 64, 64))
        with pytest.raises(ValueError, match="overlap"):
            m.segment(v, overlap=(0, -4, 0))
        with pytest.raises(qcanet.QcanetError, match="slices"):
            m.segment(np.zeros((1, 32, 32), np.uint16))


def test_the_plan_is_resolved_once_and_visible():
    with qcanet.Model(device="cpu") as m:
        plan = m.plan((51, 120, 120), voxel_size=(2.0, 0.8, 0.8), min_volume_um3=100)
        assert plan["input_dims"] == [51, 120, 120] and plan["voxel_size_source"] == "caller"
        assert plan["resampled"] and plan["model_voxel_size"] == [1.75, 0.8, 0.8]
        assert plan["model_dims"] == [58, 120, 120]
        # every default filled in: the embedded model's metadata, then the caller's value
        post = plan["post"]
        assert post["markers"] == "local-max" and post["landscape"] == "distance"
        assert post["fg_threshold"] == pytest.approx(0.6) and post["min_volume_um3"] == 100
        assert plan["tiles"]["tile"][0] % 4 == 0 and plan["tiles"]["count"] == [1, 1, 1]
        # no voxel size: the model's grid is assumed, and the plan says so
        assert m.plan((51, 120, 120))["voxel_size_source"] == "model"
        # doubles end to end: 0.8 stays 0.8 (ABI 1 passed it through a C float)
        assert m.plan((51, 120, 120), voxel_size=(1.75, 0.8, 0.8))["input_voxel_size"] == [1.75, 0.8, 0.8]
        # the plan refuses what segment would refuse, with the same status
        with pytest.raises(qcanet.QcanetError) as e:
            m.plan((51, 120, 120), fg_threshold=1.5)
        assert e.value.status_name == "QCA_ERR_INVALID_ARGUMENT" and "fg_threshold" in str(e.value)


def test_one_vocabulary_for_named_choices():
    with qcanet.Model(device="cpu") as m:
        for spelling, name in (("components", "components"), ("local-max", "local-max"), ("local_max", "local-max"),
                               ("CC", "components")):
            assert m.plan((8, 32, 32), markers=spelling)["post"]["markers"] == name
        assert m.plan((8, 32, 32), landscape="edt")["post"]["landscape"] == "distance"
        assert m.plan((8, 32, 32), connectivity=26)["post"]["connectivity"] == "26"
        with pytest.raises(ValueError, match="components, local-max"):
            m.plan((8, 32, 32), markers="watershed")
        with pytest.raises(ValueError, match="must be >= 0"):
            m.plan((8, 32, 32), min_volume_um3=-5)
