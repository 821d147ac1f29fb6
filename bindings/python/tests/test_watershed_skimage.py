"""The Rust flood against scikit-image's watershed, voxel for voxel, on the same inputs."""
import time

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed as sk_watershed

import qcanet

SPACING = (1.75, 0.8, 0.8)


def _blobs(seed, shape=(30, 60, 60), n=9):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    mask = np.zeros(shape, bool)
    centres = []
    for _ in range(n):
        c = rng.uniform([4, 8, 8], [shape[0] - 4, shape[1] - 8, shape[2] - 8])
        r = rng.uniform(5, 10)
        mask |= ((zz - c[0]) * SPACING[0]) ** 2 + ((yy - c[1]) * SPACING[1]) ** 2 + ((xx - c[2]) * SPACING[2]) ** 2 < r * r
        centres.append(c)
    markers = np.zeros(shape, np.uint32)
    for i, c in enumerate(centres, 1):
        z, y, x = np.round(c).astype(int)
        markers[z, y, x] = i
    return mask, markers


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("conn", [1, 3])
def test_edt_landscape_matches_skimage(seed, conn):
    mask, markers = _blobs(seed)
    land = -ndi.distance_transform_edt(mask, sampling=SPACING)
    ref = sk_watershed(land, markers, mask=mask, connectivity=conn)
    got = qcanet.watershed(land, markers, mask, connectivity={1: 6, 3: 26}[conn])
    assert (ref > 0).sum() > 1000
    assert np.array_equal(got, ref), f"{(got != ref).sum()} voxels differ"


@pytest.mark.parametrize("seed", range(4))
def test_plateaus_and_ties_match_skimage(seed):
    # integer landscapes: many equal values, so the order of ties decides
    rng = np.random.default_rng(100 + seed)
    shape = (12, 20, 24)
    land = rng.integers(0, 3, shape).astype(np.float64)
    mask = rng.random(shape) < 0.9
    markers = np.zeros(shape, np.uint32)
    idx = rng.choice(land.size, 12, replace=False)
    markers.ravel()[idx] = rng.integers(1, 6, 12)
    ref = sk_watershed(land, markers, mask=mask)
    got = qcanet.watershed(land, markers, mask)
    assert np.array_equal(got, ref), f"{(got != ref).sum()} voxels differ"


def test_edt_equals_scipy_bit_for_bit():
    # bit for bit, not within a tolerance: the flood breaks ties of -edt by age, so one
    # rounding step apart reorders them (it moved 5 voxels on a validation volume)
    for seed in range(3):
        mask, _ = _blobs(seed)
        ref = ndi.distance_transform_edt(mask, sampling=SPACING)
        assert np.array_equal(qcanet.edt(mask, SPACING), ref)
    # dense random masks with random spacings: many equally near background voxels
    rng = np.random.default_rng(5)
    for _ in range(20):
        shape = tuple(int(v) for v in rng.integers(2, 30, 3))
        mask = rng.random(shape) < rng.uniform(0.5, 0.97)
        mask.flat[0] = False
        spacing = tuple(float(v) for v in rng.choice([0.3, 0.8, 1.0, 1.75, 2.2], 3))
        ref = ndi.distance_transform_edt(mask, sampling=spacing)
        got = qcanet.edt(mask, spacing)
        assert np.array_equal(got, ref), f"{shape} {spacing}: {(got != ref).sum()} voxels differ"


def test_watershed_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        qcanet.watershed(np.zeros((2, 2, 2)), np.zeros((2, 2, 3), np.uint32), np.ones((2, 2, 2)))
    with pytest.raises(qcanet.QcanetError) as e:
        qcanet.watershed(np.full((2, 2, 2), np.nan), np.ones((2, 2, 2), np.uint32), np.ones((2, 2, 2)))
    assert e.value.status_name == "QCA_ERR_INVALID_ARGUMENT"
