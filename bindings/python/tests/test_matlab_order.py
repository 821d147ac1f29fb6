"""The memory contract the MATLAB wrappers rely on: a column-major [X Y Z] array (MATLAB's)
passed as-is with dims reversed (qcanet_dims.m) is the C API's [z][y][x] volume."""
import ctypes as C

import numpy as np

import qcanet
from qcanet import _native as N


def test_column_major_xyz_is_c_order_zyx(synth_embryo):
    raw, _, _, _ = synth_embryo                      # (z, y, x), C order
    matlab = np.asfortranarray(raw.transpose(2, 1, 0))   # MATLAB's vol(x, y, z), column-major
    assert matlab.shape == (raw.shape[2], raw.shape[1], raw.shape[0])
    # what qcanet_dims.m computes: fliplr(size(vol))
    dims = (C.c_size_t * 3)(*reversed(matlab.shape))
    lib = qcanet._lib()
    p = qcanet._params(voxel_size=(1.75, 0.8, 0.8))
    out_f = np.zeros(matlab.shape, np.uint32, order="F")   # zeros(size(vol), 'uint32')
    h = C.c_void_p()
    qcanet._check(lib.qca_model_load_default(None, C.byref(h)))
    try:
        n = C.c_uint32()
        qcanet._check(lib.qca_segment_u16(h, matlab.ctypes.data_as(C.c_void_p), dims, C.byref(p),
                                          out_f.ctypes.data_as(C.c_void_p), C.byref(n)))
    finally:
        lib.qca_model_free(h)
    with qcanet.Model() as m:
        ref = m.segment(raw, voxel_size=(1.75, 0.8, 0.8))
    assert n.value == ref.max() > 0
    assert np.array_equal(out_f.transpose(2, 1, 0), ref)
