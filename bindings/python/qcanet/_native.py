"""ctypes declarations of the qcanet C API (include/qcanet.h, ABI version 2)."""
from __future__ import annotations

import ctypes as C
import os
from pathlib import Path

ABI_VERSION = 2


class QcaModelOptions(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("device", C.c_int32), ("device_id", C.c_int32),
                ("num_threads", C.c_int32), ("precision", C.c_int32)]


PROGRESS_FN = C.CFUNCTYPE(C.c_int32, C.c_float, C.c_void_p)


class QcaTimings(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("prepare_s", C.c_double), ("normalise_s", C.c_double),
                ("resample_s", C.c_double), ("network_s", C.c_double), ("post_s", C.c_double), ("mask_s", C.c_double),
                ("markers_s", C.c_double), ("landscape_s", C.c_double), ("watershed_s", C.c_double),
                ("resample_back_s", C.c_double)]


class QcaSegmentParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("voxel_size", C.c_double * 3), ("fg_threshold", C.c_double),
                ("centre_threshold", C.c_double), ("markers", C.c_int32), ("marker_sigma_um", C.c_double),
                ("landscape", C.c_int32), ("fill_holes", C.c_int32), ("min_volume_um3", C.c_double),
                ("connectivity", C.c_int32), ("tile", C.c_uint32 * 3), ("overlap", C.c_int32 * 3),
                ("progress", PROGRESS_FN), ("user_data", C.c_void_p), ("voxel_size_source", C.c_int32),
                ("timings", C.POINTER(QcaTimings))]


class QcaMetrics(C.Structure):
    _fields_ = [("iou", C.c_double), ("seg", C.c_double), ("mucov", C.c_double), ("seg_ctc", C.c_double),
                ("f1", C.c_double), ("n_gt", C.c_uint32), ("n_pred", C.c_uint32), ("n_matched", C.c_uint32),
                ("precision", C.c_double), ("recall", C.c_double), ("match_threshold", C.c_double * 5),
                ("match_tp", C.c_uint32 * 5), ("match_fp", C.c_uint32 * 5), ("match_fn", C.c_uint32 * 5),
                ("match_precision", C.c_double * 5), ("match_recall", C.c_double * 5), ("match_f1", C.c_double * 5),
                ("ap", C.c_double * 5), ("mean_matched_iou", C.c_double * 5), ("panoptic_quality", C.c_double * 5)]


class QcaNucleus(C.Structure):
    _fields_ = [("label", C.c_uint32), ("bbox_min", C.c_uint32 * 3), ("bbox_max", C.c_uint32 * 3),
                ("voxels", C.c_uint64), ("volume_um3", C.c_double), ("centroid", C.c_double * 3),
                ("centroid_um", C.c_double * 3), ("mean_intensity", C.c_double),
                ("total_intensity", C.c_double)]


class QcaImageInfo(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("sample_type", C.c_int32), ("dims", C.c_size_t * 3),
                ("channels", C.c_uint32), ("frames", C.c_uint32), ("has_voxel_size", C.c_int32),
                ("voxel_size_um", C.c_double * 3), ("page_strides", C.c_size_t * 3)]


class QcaTrackParams(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("max_gap", C.c_uint32), ("max_displacement_um", C.c_double),
                ("division_max_distance_um", C.c_double), ("division_volume_min", C.c_double),
                ("division_volume_max", C.c_double), ("overlap_weight", C.c_double)]


class QcaTrack(C.Structure):
    _fields_ = [("id", C.c_uint32), ("parent", C.c_uint32), ("start", C.c_uint64), ("end", C.c_uint64)]


class QcaDivision(C.Structure):
    _fields_ = [("frame", C.c_uint64), ("parent", C.c_uint32), ("daughters", C.c_uint32 * 2)]


class QcaTrackPoint(C.Structure):
    _fields_ = [("track", C.c_uint32), ("label", C.c_uint32), ("frame", C.c_uint64), ("parent", C.c_uint32),
                ("centroid_um", C.c_double * 3), ("volume_um3", C.c_double), ("surface_um2", C.c_double),
                ("mean_intensity", C.c_double)]


class QcaFrameCriteria(C.Structure):
    _fields_ = [("frame", C.c_uint64), ("nuclei", C.c_uint64), ("divisions", C.c_uint64), ("time", C.c_double),
                ("volume_um3_sum", C.c_double), ("volume_um3_mean", C.c_double), ("volume_um3_sd", C.c_double),
                ("surface_um2_sum", C.c_double), ("surface_um2_mean", C.c_double), ("surface_um2_sd", C.c_double),
                ("sphericity_mean", C.c_double), ("mean_intensity", C.c_double),
                ("nearest_neighbour_um_mean", C.c_double)]


class QcaDivisionRound(C.Structure):
    _fields_ = [("round", C.c_uint64), ("divisions", C.c_uint64), ("first_frame", C.c_uint64),
                ("last_frame", C.c_uint64), ("spread_frames", C.c_uint64), ("mean_frame", C.c_double),
                ("sd_frames", C.c_double)]


class QcaBlockOptions(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("core", C.c_size_t * 3), ("halo", C.c_size_t * 3),
                ("block_voxels", C.c_size_t), ("max_nucleus_um", C.c_double)]


class QcaFileReport(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("frames", C.c_size_t), ("nuclei_total", C.c_uint64),
                ("voxels", C.c_uint64), ("blocks", C.c_size_t), ("core", C.c_size_t * 3), ("halo", C.c_size_t * 3),
                ("read_s", C.c_double), ("network_s", C.c_double), ("post_s", C.c_double), ("stitch_s", C.c_double),
                ("write_s", C.c_double), ("wall_s", C.c_double)]


# qca_segment_file's flags
FILE_WHOLE = 1
FILE_MEASURE = 2

# qca_tracking_get's tables (QCA_TABLE_*) and the row type of each
TRACKING_TABLES = {"tracks": (1, QcaTrack), "divisions": (2, QcaDivision), "points": (3, QcaTrackPoint),
                   "criteria": (4, QcaFrameCriteria), "rounds": (5, QcaDivisionRound)}


def _candidates():
    env = os.environ.get("QCANET_LIBRARY")
    if env:
        yield Path(env)
        return
    here = Path(__file__).resolve().parent
    yield here / "lib" / "libqcanet.so"          # installed wheel
    for up in here.parents:                      # source checkout
        yield up / "target" / "release" / "libqcanet.so"


def load():
    tried = []
    for p in _candidates():
        if p.exists():
            lib = C.CDLL(str(p))
            _declare(lib)
            abi = lib.qca_abi_version()
            if abi != ABI_VERSION:
                raise OSError(f"{p}: C ABI {abi}, this binding needs {ABI_VERSION}")
            return lib, p
        tried.append(str(p))
    raise OSError("libqcanet.so not found (set QCANET_LIBRARY); tried: " + ", ".join(tried))


def _declare(lib):
    P = C.POINTER
    st = C.c_int32
    sz3 = P(C.c_size_t)
    sig = {
        "qca_abi_version": (C.c_uint32, []),
        "qca_version": (C.c_char_p, []),
        "qca_last_error": (C.c_char_p, []),
        "qca_status_str": (C.c_char_p, [C.c_int32]),
        "qca_runtime_init": (st, [C.c_char_p]),
        "qca_runtime_info": (C.c_char_p, []),
        "qca_model_options_default": (st, [P(QcaModelOptions), C.c_size_t]),
        "qca_model_load": (st, [C.c_char_p, C.c_char_p, P(QcaModelOptions), P(C.c_void_p)]),
        "qca_model_load_default": (st, [P(QcaModelOptions), P(C.c_void_p)]),
        "qca_model_free": (None, [C.c_void_p]),
        "qca_model_describe": (st, [C.c_void_p, C.c_char_p, C.c_size_t, P(C.c_size_t)]),
        "qca_plan_json": (st, [C.c_void_p, sz3, P(QcaSegmentParams), C.c_char_p, C.c_size_t, P(C.c_size_t)]),
        "qca_option_value": (st, [C.c_char_p, C.c_char_p, P(C.c_int32)]),
        "qca_struct_size": (C.c_size_t, [C.c_char_p]),
        "qca_segment_params_default": (st, [P(QcaSegmentParams), C.c_size_t]),
        "qca_segment_u8": (st, [C.c_void_p, C.c_void_p, sz3, P(QcaSegmentParams), C.c_void_p, P(C.c_uint32)]),
        "qca_segment_u16": (st, [C.c_void_p, C.c_void_p, sz3, P(QcaSegmentParams), C.c_void_p, P(C.c_uint32)]),
        "qca_segment_f32": (st, [C.c_void_p, C.c_void_p, sz3, P(QcaSegmentParams), C.c_void_p, P(C.c_uint32)]),
        "qca_postprocess_f32": (st, [C.c_void_p, C.c_void_p, sz3, P(QcaSegmentParams), C.c_void_p, P(C.c_uint32)]),
        "qca_watershed_f64": (st, [C.c_void_p, C.c_void_p, C.c_void_p, sz3, C.c_int32, C.c_void_p]),
        "qca_edt_f64": (st, [C.c_void_p, sz3, P(C.c_double), C.c_void_p]),
        "qca_evaluate": (st, [C.c_void_p, C.c_void_p, sz3, P(QcaMetrics)]),
        "qca_measure": (st, [C.c_void_p, C.c_void_p, sz3, P(C.c_double), P(C.c_void_p)]),
        "qca_measurements_count": (C.c_size_t, [C.c_void_p]),
        "qca_measurements_get": (st, [C.c_void_p, C.c_size_t, P(QcaNucleus)]),
        "qca_measurements_free": (None, [C.c_void_p]),
        "qca_image_read": (st, [C.c_char_p, P(C.c_void_p)]),
        "qca_image_info": (st, [C.c_void_p, P(QcaImageInfo)]),
        "qca_image_volume_f32": (st, [C.c_void_p, C.c_uint32, C.c_uint32, C.c_void_p]),
        "qca_image_free": (None, [C.c_void_p]),
        "qca_file_info": (st, [C.c_char_p, P(QcaImageInfo)]),
        "qca_labels_write": (st, [C.c_char_p, C.c_void_p, sz3, C.c_uint32, P(C.c_double)]),
        "qca_track_params_default": (st, [P(QcaTrackParams), C.c_size_t]),
        "qca_track_new": (st, [P(C.c_double), P(C.c_void_p)]),
        "qca_track_add_frame": (st, [C.c_void_p, C.c_void_p, C.c_void_p, sz3]),
        "qca_track_frame_count": (C.c_size_t, [C.c_void_p]),
        "qca_track_link": (st, [C.c_void_p, P(QcaTrackParams), C.c_double, P(C.c_void_p)]),
        "qca_track_free": (None, [C.c_void_p]),
        "qca_tracking_count": (C.c_size_t, [C.c_void_p, C.c_int32]),
        "qca_tracking_get": (st, [C.c_void_p, C.c_int32, C.c_size_t, C.c_void_p, C.c_size_t]),
        "qca_tracking_relabel": (st, [C.c_void_p, C.c_size_t, C.c_void_p, sz3]),
        "qca_tracking_free": (None, [C.c_void_p]),
        "qca_block_options_default": (st, [P(QcaBlockOptions), C.c_size_t]),
        "qca_job_create": (st, [C.c_void_p, C.c_char_p, C.c_char_p, C.c_char_p, C.c_uint32, P(QcaSegmentParams),
                                P(QcaBlockOptions), P(C.c_void_p)]),
        "qca_job_open": (st, [C.c_char_p, P(C.c_void_p)]),
        "qca_job_grid": (st, [C.c_void_p, P(C.c_size_t), sz3, sz3, sz3, sz3]),
        "qca_job_path": (st, [C.c_void_p, C.c_int32, C.c_char_p, C.c_size_t, P(C.c_size_t)]),
        "qca_job_scale": (st, [C.c_void_p, C.c_void_p, C.c_size_t]),
        "qca_job_segment_block": (st, [C.c_void_p, C.c_void_p, C.c_size_t, sz3, P(C.c_int32)]),
        "qca_job_stitch": (st, [C.c_void_p, C.c_size_t, P(C.c_uint32)]),
        "qca_job_prepare_output": (st, [C.c_void_p]),
        "qca_job_write_block": (st, [C.c_void_p, C.c_size_t, sz3]),
        "qca_job_finish": (st, [C.c_void_p]),
        "qca_job_free": (None, [C.c_void_p]),
        "qca_segment_file": (st, [C.c_void_p, C.c_char_p, C.c_char_p, C.c_char_p, C.c_uint32, C.c_uint32,
                                  P(QcaSegmentParams), P(QcaBlockOptions), P(C.c_uint32), C.c_size_t,
                                  P(QcaFileReport)]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
