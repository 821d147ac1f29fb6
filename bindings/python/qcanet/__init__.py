"""qcanet: 3D nuclear segmentation of fluorescence microscopy, from Python.

>>> import qcanet                                   # doctest: +SKIP
>>> model = qcanet.Model()                          # the embedded default networks
>>> labels = model.segment(volume, voxel_size=(1.75, 0.8, 0.8))
>>> qcanet.evaluate(labels, ground_truth).seg

Arrays are (z, y, x) numpy arrays; labels are uint32 (0 = background).
The native library is ``libqcanet.so`` (found inside the package, or through
``QCANET_LIBRARY``); training lives in :mod:`qcanet.train` (``qcanet-train``).
"""
from __future__ import annotations

import ctypes as C
import os
import time
from pathlib import Path

import numpy as np

from . import _native as N
from .reference import Matching, Metrics

__all__ = ["Model", "QcanetError", "Job", "evaluate", "measure", "track", "Tracking", "postprocess", "watershed", "edt",
           "read_tiff", "write_tiff", "Metrics", "version"]

_LIB = None


def _lib():
    global _LIB
    if _LIB is None:
        _LIB, _ = N.load()
    return _LIB


class QcanetError(RuntimeError):
    """A failed library call: ``status`` is the C status name, the message is the library's."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.status_name = (_lib().qca_status_str(status) or b"?").decode()
        super().__init__(f"{message} [{self.status_name}]")


def _check(status: int):
    if status != 0:
        raise QcanetError(status, (_lib().qca_last_error() or b"").decode(errors="replace"))


def version() -> str:
    return _lib().qca_version().decode()


def _dims(a: np.ndarray):
    if a.ndim != 3:
        raise ValueError(f"expected a 3-D (z, y, x) array, got shape {a.shape}")
    return (C.c_size_t * 3)(*a.shape)


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(C.c_void_p)


def _option(option: str, name) -> int:
    """The C value of a named choice, parsed by the library (one vocabulary for the CLI,
    model metadata, Python and Fiji; older spellings such as "local_max" accepted)."""
    v = C.c_int32()
    status = _lib().qca_option_value(option.encode(), str(name).encode(), C.byref(v))
    if status != 0:
        raise ValueError((_lib().qca_last_error() or b"").decode(errors="replace"))
    return v.value


def _real(name, v):
    """A real parameter for the C struct, where a negative value means "the model's":
    a caller's negative number must not silently become that."""
    v = float(v)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def _params(voxel_size=None, fg_threshold=None, centre_threshold=None, markers=None, marker_sigma_um=None,
            landscape=None, fill_holes=None, min_volume_um3=None, connectivity=None, tile=None, overlap=None):
    p = N.QcaSegmentParams()
    _check(_lib().qca_segment_params_default(C.byref(p), C.sizeof(p)))
    if voxel_size is not None:
        if len(voxel_size) != 3:
            raise ValueError("voxel_size is (z, y, x)")
        vs = [float(v) for v in voxel_size]
        if not all(v > 0 for v in vs):     # 0 would mean "the model's" in the C struct
            raise ValueError(f"voxel_size must be three positive lengths, got {voxel_size} (None = the model's)")
        p.voxel_size[:] = vs
    if fg_threshold is not None:
        p.fg_threshold = _real("fg_threshold", fg_threshold)
    if centre_threshold is not None:
        p.centre_threshold = _real("centre_threshold", centre_threshold)
    if markers is not None:
        p.markers = _option("markers", markers)
    if marker_sigma_um is not None:
        p.marker_sigma_um = _real("marker_sigma_um", marker_sigma_um)
    if landscape is not None:
        p.landscape = _option("landscape", landscape)
    if fill_holes is not None:
        p.fill_holes = int(bool(fill_holes))
    if min_volume_um3 is not None:
        p.min_volume_um3 = _real("min_volume_um3", min_volume_um3)
    if connectivity is not None:
        p.connectivity = _option("connectivity", connectivity)
    if tile is not None:
        t = [int(v) for v in tile]
        if len(t) != 3 or any(v <= 0 for v in t):
            raise ValueError(f"tile is three positive sizes (z, y, x), got {tile}")
        p.tile[:] = t
    if overlap is not None:
        o = [int(v) for v in overlap]
        if len(o) != 3 or any(v < 0 for v in o):
            raise ValueError(f"overlap is three sizes >= 0 (z, y, x), got {overlap}")
        p.overlap[:] = o
    return p


def _nvidia_wheel_dirs():
    """``site-packages/nvidia/*/lib`` folders of this interpreter (NVIDIA's CUDA wheels), when
    they are the CUDA 13 ones the GPU build needs (``nvidia/cu13``): a CUDA 12 environment's
    cuDNN has the same file name and must not be preferred over a system CUDA 13."""
    import glob
    import sys

    dirs = []
    for sp in sys.path:
        if not os.path.isdir(os.path.join(sp, "nvidia", "cu13")):
            continue
        for d in sorted(glob.glob(os.path.join(sp, "nvidia", "*", "lib"))):
            if os.path.isdir(d) and d not in dirs:
                dirs.append(d)
    return dirs


class _Handle:
    """A handle of the library, freed once: by ``close()``, at the end of a ``with`` block,
    or when collected. ``_free`` names the C function that frees it."""
    _free = ""
    _h = None

    def close(self):
        if getattr(self, "_h", None):
            getattr(_lib(), self._free)(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Model(_Handle):
    """NSN + NDN networks (or one joint network). ``Model()`` loads the embedded default.

    device: "auto" (CUDA when the GPU build of ONNX Runtime, a driver and a GPU are
    there, else the CPU) | "cpu" | "cuda"; threads: 0 = all cores; precision: "auto" (int8
    under OpenVINO on x86-64 CPUs with AVX2 for the embedded model, else fp32) | "fp32" | "tf32" (GPU
    convolutions in TensorFloat-32) | "int8". ``model.device`` says which ran.
    CUDA's libraries are searched as the library does (README: GPU) and also in this
    interpreter's NVIDIA wheels (``pip install nvidia-cudnn-cu13 ...``).
    """

    _free = "qca_model_free"

    def __init__(self, nsn=None, ndn=None, device="auto", threads=0, device_id=0, precision="auto"):
        lib = _lib()
        o = N.QcaModelOptions()
        _check(lib.qca_model_options_default(C.byref(o), C.sizeof(o)))
        dev, prec = _option("device", device), _option("precision", precision)
        if dev != _option("device", "cpu") and not os.environ.get("QCANET_CUDA_LIBS"):
            wheels = _nvidia_wheel_dirs()
            if wheels:
                os.environ["QCANET_CUDA_LIBS"] = os.pathsep.join(wheels)
        o.device, o.num_threads, o.device_id, o.precision = dev, int(threads), int(device_id), prec
        h = C.c_void_p()
        t0 = time.perf_counter()
        if nsn is None:
            if ndn is not None:
                raise ValueError("give nsn with ndn")
            _check(lib.qca_model_load_default(C.byref(o), C.byref(h)))
        else:
            _check(lib.qca_model_load(str(nsn).encode(), None if ndn is None else str(ndn).encode(),
                                      C.byref(o), C.byref(h)))
        self._h = h
        #: Seconds the load took (runtime start on the first model, model compilation).
        self.load_seconds = time.perf_counter() - t0

    def describe(self) -> str:
        n = C.c_size_t()
        _check(_lib().qca_model_describe(self._h, None, 0, C.byref(n)))
        buf = C.create_string_buffer(n.value)
        _check(_lib().qca_model_describe(self._h, buf, n.value, None))
        return buf.value.decode()

    @property
    def device(self) -> str:
        """Where the networks run: "cuda" or "cpu"."""
        return "cuda" if " on cuda;" in self.describe() else "cpu"

    def plan(self, shape, voxel_size=None, **post) -> dict:
        """What ``segment`` would do with a volume of ``shape`` (z, y, x): input and model
        grids and where the voxel size comes from, resampling, normalisation, tiles after
        every clamp, post-processing with every default filled in. Invalid parameters
        raise here exactly as in ``segment``."""
        import json

        if not self._h:
            raise ValueError("model is closed")
        if len(shape) != 3:
            raise ValueError(f"shape is (z, y, x), got {shape}")
        dims = (C.c_size_t * 3)(*[int(d) for d in shape])
        p = _params(voxel_size=voxel_size, **post)
        need = C.c_size_t()
        _check(_lib().qca_plan_json(self._h, dims, C.byref(p), None, 0, C.byref(need)))
        buf = C.create_string_buffer(need.value)
        _check(_lib().qca_plan_json(self._h, dims, C.byref(p), buf, need.value, None))
        return json.loads(buf.value.decode())

    def segment(self, volume: np.ndarray, voxel_size=None, progress=None, return_timings=False, **post):
        """Labels (uint32, same shape) for a (z, y, x) uint8/uint16/float volume.

        ``progress(fraction) -> bool`` may return False to cancel.  Keyword
        arguments override post-processing (fg_threshold, centre_threshold,
        markers, marker_sigma_um, landscape, fill_holes, min_volume_um3,
        connectivity, tile, overlap).  With ``return_timings=True`` the result is
        ``(labels, timings)``, timings a dict of seconds per stage as ``qcanet segment
        --timings`` prints them (prepare_s, normalise_s, resample_s, network_s, post_s,
        mask_s, markers_s, landscape_s, watershed_s, resample_back_s).
        """
        if not self._h:
            raise ValueError("model is closed")
        v = np.asarray(volume)
        if v.dtype.kind not in "uif":
            raise TypeError(f"volume must hold intensities (unsigned/signed integers or floats), not {v.dtype}")
        if v.dtype == np.uint8:
            fn, v = _lib().qca_segment_u8, np.ascontiguousarray(v)
        elif v.dtype == np.uint16:
            fn, v = _lib().qca_segment_u16, np.ascontiguousarray(v)
        else:
            fn, v = _lib().qca_segment_f32, np.ascontiguousarray(v, dtype=np.float32)
        p = _params(voxel_size=voxel_size, **post)
        if progress is not None:
            cb = N.PROGRESS_FN(lambda f, _u: 0 if progress(float(f)) is not False else 1)
            p.progress = cb
        t = N.QcaTimings(struct_size=C.sizeof(N.QcaTimings))
        if return_timings:
            p.timings = C.pointer(t)
        out = np.empty(v.shape, np.uint32)
        n = C.c_uint32()
        _check(fn(self._h, _ptr(v), _dims(v), C.byref(p), _ptr(out), C.byref(n)))
        if return_timings:
            return out, {name: getattr(t, name) for name, _ in N.QcaTimings._fields_[1:]}
        return out

    def segment_file(self, src, dst=None, *, labels_into_input=None, channel=0, blocks="auto", halo=None,
                     block_voxels=None, max_nucleus_um=None, measure=False, voxel_size=None, progress=None,
                     **post) -> dict:
        """Segments the stack in file ``src`` into labels on disk, block by block, in memory
        bounded by the block: the same code as ``qcanet segment`` (README "Large volumes").

        src: a TIFF, BigTIFF or OME-TIFF, or an OME-Zarr image (NGFF 0.4/0.5; every frame of
        a time series). dst: a new TIFF (BigTIFF when large), or for an OME-Zarr ``src`` a
        new OME-Zarr (``.zarr``); or ``labels_into_input="name"`` to write them into
        ``src/labels/name``. Never over an input; a new label image never replaces one.
        blocks: "auto" (volumes over 32 M voxels, or too large to read whole, and OME-Zarr
        images go block by block), "whole" (one block: the whole volume's labels, memory
        grows with it) or a core size (z, y, x). halo, block_voxels, max_nucleus_um: as
        ``qcanet segment --halo/--block-voxels/--max-nucleus``. measure: also write the
        nuclei's measurements to NAME.csv beside the labels (beside the input for labels into
        it). voxel_size: (z, y, x) um, wins
        over the file's. ``progress(fraction) -> bool`` may return False to cancel (nothing
        is written). Other keyword arguments are post-processing parameters (as ``segment``).

        Returns ``{"output", "frames", "nuclei" (per frame), "voxels", "blocks", "core",
        "halo", "read_s", "network_s", "post_s", "stitch_s", "write_s", "seconds",
        "mvoxel_per_s"}``.
        """
        if not self._h:
            raise ValueError("model is closed")
        if (dst is None) == (labels_into_input is None):
            raise ValueError("give either dst (a new file) or labels_into_input (a label name inside the OME-Zarr src)")
        flags = N.FILE_MEASURE if measure else 0
        if isinstance(blocks, str):
            if blocks not in ("auto", "whole"):
                raise ValueError(f"blocks must be 'auto', 'whole' or a core size (z, y, x), got {blocks!r}")
            core = None
            flags |= N.FILE_WHOLE if blocks == "whole" else 0
        else:
            core = blocks
        p = _params(voxel_size=voxel_size, **post)
        if progress is not None:
            cb = N.PROGRESS_FN(lambda f, _u: 0 if progress(float(f)) is not False else 1)
            p.progress = cb
        o = _block_options(core, halo, block_voxels, max_nucleus_um)
        capacity = max(1, file_info(src)["frames"])
        nuclei = (C.c_uint32 * capacity)()
        r = N.QcaFileReport(struct_size=C.sizeof(N.QcaFileReport))
        _check(_lib().qca_segment_file(self._h, str(src).encode(), None if dst is None else str(dst).encode(),
                                       None if labels_into_input is None else str(labels_into_input).encode(),
                                       int(channel), flags, C.byref(p), C.byref(o), nuclei, capacity, C.byref(r)))
        if dst is not None:
            output = str(dst)
        else:
            output = str(Path(src) / "labels" / str(labels_into_input))
        return {"output": output, "frames": r.frames, "nuclei": list(nuclei[:r.frames]),
                "voxels": r.voxels, "blocks": r.blocks, "core": tuple(r.core), "halo": tuple(r.halo),
                "read_s": r.read_s, "network_s": r.network_s, "post_s": r.post_s, "stitch_s": r.stitch_s,
                "write_s": r.write_s, "seconds": r.wall_s, "mvoxel_per_s": r.voxels / max(r.wall_s, 1e-9) / 1e6}


def evaluate(pred: np.ndarray, gt: np.ndarray) -> Metrics:
    """One record of predicted vs ground-truth labels: IoU, SEG and MUCov (as the QCANet
    authors' code computes them), CTC SEG, and detection (``matching``: TP/FP/FN,
    precision, recall, F1, AP, ... at IoU 0.5, 0.6, 0.7, 0.8, 0.9)."""
    p = np.ascontiguousarray(pred, dtype=np.uint32)
    g = np.ascontiguousarray(gt, dtype=np.uint32)
    if p.shape != g.shape:
        raise ValueError(f"shapes differ: {p.shape} vs {g.shape}")
    m = N.QcaMetrics()
    _check(_lib().qca_evaluate(_ptr(p), _ptr(g), _dims(p), C.byref(m)))
    matching = [Matching(m.match_threshold[i], m.match_tp[i], m.match_fp[i], m.match_fn[i], m.match_precision[i],
                         m.match_recall[i], m.match_f1[i], m.ap[i], m.mean_matched_iou[i], m.panoptic_quality[i],
                         m.mean_matched_iou[i] * m.match_tp[i])
                for i in range(len(m.match_threshold))]
    return Metrics(m.iou, m.seg, m.mucov, m.seg_ctc, m.f1, m.precision, m.recall, m.n_gt, m.n_pred, m.n_matched,
                   matching)


def measure(labels: np.ndarray, image: np.ndarray | None = None, voxel_size=(1.0, 1.0, 1.0)):
    """Per-nucleus measurements: a list of dicts (label, voxels, volume_um3, centroid,
    centroid_um, bbox_min, bbox_max, mean_intensity, total_intensity)."""
    lab = np.ascontiguousarray(labels, dtype=np.uint32)
    img = None if image is None else np.ascontiguousarray(image, dtype=np.float32)
    if img is not None and img.shape != lab.shape:
        raise ValueError("image and labels differ in shape")
    vs = (C.c_double * 3)(*voxel_size)
    h = C.c_void_p()
    _check(_lib().qca_measure(_ptr(lab), None if img is None else _ptr(img), _dims(lab), vs, C.byref(h)))
    try:
        out = []
        nuc = N.QcaNucleus()
        for i in range(_lib().qca_measurements_count(h)):
            _check(_lib().qca_measurements_get(h, i, C.byref(nuc)))
            out.append(dict(label=nuc.label, voxels=nuc.voxels, volume_um3=nuc.volume_um3,
                            centroid=tuple(nuc.centroid), centroid_um=tuple(nuc.centroid_um),
                            bbox_min=tuple(nuc.bbox_min), bbox_max=tuple(nuc.bbox_max),
                            mean_intensity=nuc.mean_intensity, total_intensity=nuc.total_intensity))
        return out
    finally:
        _lib().qca_measurements_free(h)


def _record(row) -> dict:
    """A C row as a dict of Python values (arrays as tuples)."""
    out = {}
    for name, _ in row._fields_:
        v = getattr(row, name)
        out[name] = tuple(v) if isinstance(v, C.Array) else v
    return out


class Tracking(_Handle):
    """Tracks, divisions and criteria of a time lapse (from :func:`track`). Every table is a
    list of dicts, ready for ``pandas.DataFrame``: ``tracks`` (id, parent, start, end: the
    CTC ``L B E P``), ``divisions`` (frame, parent, daughters), ``points`` (one row per
    nucleus per frame: track, label, frame, parent, centroid_um, volume_um3, surface_um2,
    mean_intensity), ``criteria`` (one row per frame: nuclei, volume and surface sum/mean/SD,
    sphericity_mean, mean_intensity, nearest_neighbour_um_mean, divisions, time) and
    ``rounds`` (one row per round of divisions: first/last frame, spread, mean, SD)."""

    _free = "qca_tracking_free"

    def __init__(self, handle):
        self._h = handle
        lib = _lib()
        for name, (table, row_type) in N.TRACKING_TABLES.items():
            rows = []
            row = row_type()
            for i in range(lib.qca_tracking_count(handle, table)):
                _check(lib.qca_tracking_get(handle, table, i, C.byref(row), C.sizeof(row)))
                rows.append(_record(row))
            setattr(self, name, rows)

    def relabel(self, labels: np.ndarray, frame: int) -> np.ndarray:
        """Frame ``frame``'s segmentation labels as track ids (a new array): its CTC label volume."""
        out = np.array(labels, dtype=np.uint32, order="C", copy=True)
        _check(_lib().qca_tracking_relabel(self._h, frame, _ptr(out), _dims(out)))
        return out

    def res_track_txt(self) -> str:
        """The CTC ``res_track.txt``: ``L B E P`` per track."""
        return "".join(f"{t['id']} {t['start']} {t['end']} {t['parent']}\n" for t in self.tracks)



def track(frames, voxel_size, images=None, interval=None, **params) -> Tracking:
    """Follows nuclei through a segmented time lapse.

    ``frames``: the label volumes (z, y, x), in time order: a (t, z, y, x) array or any
    iterable (a generator reading frames from disk keeps one frame in memory).
    ``voxel_size``: (z, y, x) micrometres (required: distances are in micrometres).
    ``images``: the raw frames, same shapes, for mean intensities (optional).
    ``interval``: time between frames, for the criteria's ``time`` (optional).
    ``params``: max_displacement_um, max_gap, division_max_distance_um,
    division_volume_min, division_volume_max, overlap_weight (defaults: the library's,
    README "Time lapses"). Returns a :class:`Tracking`."""
    lib = _lib()
    p = N.QcaTrackParams()
    _check(lib.qca_track_params_default(C.byref(p), C.sizeof(p)))
    for k, v in params.items():
        if k not in dict(p._fields_) or k == "struct_size":
            raise TypeError(f"track() got an unexpected parameter {k!r}")
        if k == "max_gap":
            if int(v) != v or not 0 <= v < 2 ** 32:  # a C uint32; the library bounds it further
                raise ValueError(f"max_gap must be a whole number >= 0, got {v}")
            v = int(v)
        setattr(p, k, v)
    if interval is not None and not float(interval) > 0:
        raise ValueError(f"interval must be positive, got {interval}")
    vs = (C.c_double * 3)(*map(float, voxel_size))
    h = C.c_void_p()
    _check(lib.qca_track_new(vs, C.byref(h)))
    try:
        imgs = iter(images) if images is not None else None
        for lab in frames:
            lab = np.ascontiguousarray(lab, dtype=np.uint32)
            img = None
            if imgs is not None:
                img = next(imgs, None)
                if img is None:
                    raise ValueError("fewer images than label frames")
                img = np.ascontiguousarray(img, dtype=np.float32)
                if img.shape != lab.shape:
                    raise ValueError(f"image {img.shape} and labels {lab.shape} differ in shape")
            _check(lib.qca_track_add_frame(h, _ptr(lab), None if img is None else _ptr(img), _dims(lab)))
        out = C.c_void_p()
        _check(lib.qca_track_link(h, C.byref(p), float(interval or 0.0), C.byref(out)))
        return Tracking(out)
    finally:
        lib.qca_track_free(h)


def _zyx_sizes(name, v):
    """Three positive sizes (z, y, x) for the C struct, or zeros for "chosen by qcanet"."""
    if v is None:
        return [0, 0, 0]
    t = [int(a) for a in v]
    if len(t) != 3 or any(a <= 0 for a in t):
        raise ValueError(f"{name} is three positive sizes (z, y, x), got {v}")
    return t


def _block_options(core, halo, block_voxels, max_nucleus_um):
    """A QcaBlockOptions from the Python arguments (None: qcanet's choice), checked."""
    o = N.QcaBlockOptions()
    _check(_lib().qca_block_options_default(C.byref(o), C.sizeof(o)))
    o.core[:] = _zyx_sizes("block", core)
    o.halo[:] = _zyx_sizes("halo", halo)
    if block_voxels is not None:
        if int(block_voxels) <= 0:
            raise ValueError(f"block_voxels must be > 0, got {block_voxels}")
        o.block_voxels = int(block_voxels)
    if max_nucleus_um is not None:
        o.max_nucleus_um = _real("max_nucleus_um", max_nucleus_um)
    return o


class Job(_Handle):
    """A block job on disk: one OME-Zarr image segmented block by block by any number of
    processes (what ``qcanet.distributed.segment`` runs on Dask workers). Every step is a
    method; each may run again after a failure, in any process that opened the job
    (``Job.open(job.dir)``). Order: for every frame ``scale(model, t)``, then
    ``segment_block(model, t, index)`` for every ``index`` in ``blocks()``, then
    ``stitch(t)``; then ``prepare_output()``, ``write_block(t, index)`` for every frame
    and block, and ``finish()``. README: "Past one machine"."""

    _free = "qca_job_free"

    def __init__(self, handle):
        self._h = handle

    @classmethod
    def create(cls, model, source, target=None, labels_name=None, channel=0, voxel_size=None, block=None,
               halo=None, block_voxels=None, max_nucleus_um=None, **post) -> "Job":
        """Starts (or resumes: the same settings find the same folder) the job that segments
        the OME-Zarr ``source`` into a new OME-Zarr ``target``, or into
        ``source/labels/<labels_name>``. ``block``: core size (z, y, x voxels; rounded down to
        whole chunks of the image, at least one), ``halo``: voxels on each side (default: the radius of
        the largest nucleus, ``max_nucleus_um``, plus the markers' reach; on a grid the model
        resamples, also the networks' measured context)."""
        lib = _lib()
        if (target is None) == (labels_name is None):
            raise ValueError("give either target (a new OME-Zarr) or labels_name (labels into the input)")
        p = _params(voxel_size=voxel_size, **post)
        o = _block_options(block, halo, block_voxels, max_nucleus_um)
        h = C.c_void_p()
        _check(lib.qca_job_create(model._h, str(source).encode(), None if target is None else str(target).encode(),
                                  None if labels_name is None else str(labels_name).encode(), int(channel),
                                  C.byref(p), C.byref(o), C.byref(h)))
        return cls(h)

    @classmethod
    def open(cls, directory) -> "Job":
        h = C.c_void_p()
        _check(_lib().qca_job_open(str(directory).encode(), C.byref(h)))
        return cls(h)

    def _path(self, which):
        n = C.c_size_t()
        _check(_lib().qca_job_path(self._h, which, None, 0, C.byref(n)))
        buf = C.create_string_buffer(n.value)
        _check(_lib().qca_job_path(self._h, which, buf, n.value, None))
        return buf.value.decode()

    @property
    def dir(self) -> str:
        """The job's folder (beside the target)."""
        return self._path(0)

    @property
    def target(self) -> str:
        """Where the labels will be once finished."""
        return self._path(1)

    @property
    def grid(self) -> dict:
        """frames, and the block grid: dims, core, halo and count (z, y, x)."""
        frames = C.c_size_t()
        arrays = [(C.c_size_t * 3)() for _ in range(4)]
        _check(_lib().qca_job_grid(self._h, C.byref(frames), *arrays))
        return {"frames": frames.value, **{k: tuple(a) for k, a in zip(("dims", "core", "halo", "count"), arrays)}}

    def blocks(self):
        """Block indices (z, y, x) in raster order."""
        cz, cy, cx = self.grid["count"]
        return [(z, y, x) for z in range(cz) for y in range(cy) for x in range(cx)]

    def scale(self, model, t):
        _check(_lib().qca_job_scale(self._h, model._h, int(t)))

    def segment_block(self, model, t, index) -> bool:
        """Segments one block; True when it was done already (nothing computed)."""
        skipped = C.c_int32()
        _check(_lib().qca_job_segment_block(self._h, model._h, int(t), (C.c_size_t * 3)(*index), C.byref(skipped)))
        return bool(skipped.value)

    def stitch(self, t) -> int:
        """Joins frame t's pieces across block faces; its number of nuclei."""
        n = C.c_uint32()
        _check(_lib().qca_job_stitch(self._h, int(t), C.byref(n)))
        return n.value

    def prepare_output(self):
        _check(_lib().qca_job_prepare_output(self._h))

    def write_block(self, t, index):
        _check(_lib().qca_job_write_block(self._h, int(t), (C.c_size_t * 3)(*index)))

    def finish(self):
        """Writes the other levels, moves the labels to the target, removes the job folder."""
        _check(_lib().qca_job_finish(self._h))

    def run(self, model) -> list:
        """Every step in this process, in order; nuclei per frame."""
        frames = self.grid["frames"]
        for t in range(frames):
            self.scale(model, t)
            for i in self.blocks():
                self.segment_block(model, t, i)
        nuclei = [self.stitch(t) for t in range(frames)]
        self.prepare_output()
        for t in range(frames):
            for i in self.blocks():
                self.write_block(t, i)
        self.finish()
        return nuclei


def postprocess(nsn_prob, ndn_prob, voxel_size=(1.0, 1.0, 1.0), **post) -> np.ndarray:
    """Post-processing alone: NSN/NDN probabilities -> labels."""
    a = np.ascontiguousarray(nsn_prob, dtype=np.float32)
    b = np.ascontiguousarray(ndn_prob, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError("probability volumes differ in shape")
    p = _params(voxel_size=voxel_size, **post)
    out = np.empty(a.shape, np.uint32)
    _check(_lib().qca_postprocess_f32(_ptr(a), _ptr(b), _dims(a), C.byref(p), _ptr(out), None))
    return out


def watershed(landscape, markers, mask, connectivity=6) -> np.ndarray:
    """Marker watershed, identical to skimage.segmentation.watershed(landscape, markers, mask=mask)."""
    land = np.ascontiguousarray(landscape, dtype=np.float64)
    mk = np.ascontiguousarray(markers, dtype=np.uint32)
    ms = np.ascontiguousarray(mask, dtype=np.uint8)
    if not (land.shape == mk.shape == ms.shape):
        raise ValueError("landscape, markers and mask differ in shape")
    out = np.empty(land.shape, np.uint32)
    _check(_lib().qca_watershed_f64(_ptr(land), _ptr(mk), _ptr(ms), _dims(land), connectivity, _ptr(out)))
    return out


def edt(mask, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Euclidean distance transform of a (z, y, x) mask with anisotropic spacing, equal to
    ``scipy.ndimage.distance_transform_edt(mask, sampling=spacing)`` bit for bit."""
    ms = np.ascontiguousarray(mask, dtype=np.uint8)
    out = np.empty(ms.shape, np.float64)
    _check(_lib().qca_edt_f64(_ptr(ms), _dims(ms), (C.c_double * 3)(*spacing), _ptr(out)))
    return out


def file_info(path) -> dict:
    """What a stack file holds, from its header alone (its voxels are not read): a TIFF,
    BigTIFF or OME-TIFF, or an OME-Zarr image. ``{"dims": (z, y, x) of one volume,
    "channels", "frames", "voxel_size": (z, y, x) um or None, "page_strides": pages between
    consecutive frames, slices and channels of a TIFF (ImageJ's order or the OME-TIFF's;
    (0, 0, 0) for OME-Zarr)}`` as ``segment_file`` sees it."""
    info = N.QcaImageInfo(struct_size=C.sizeof(N.QcaImageInfo))
    _check(_lib().qca_file_info(str(path).encode(), C.byref(info)))
    return {"dims": tuple(info.dims), "channels": info.channels, "frames": info.frames,
            "voxel_size": tuple(info.voxel_size_um) if info.has_voxel_size else None,
            "page_strides": tuple(info.page_strides)}


def read_tiff(path, frame=0, channel=0):
    """(volume float32 (z, y, x), voxel_size (z, y, x) um or None) of one frame/channel."""
    h = C.c_void_p()
    _check(_lib().qca_image_read(str(path).encode(), C.byref(h)))
    try:
        info = N.QcaImageInfo()
        info.struct_size = C.sizeof(N.QcaImageInfo)
        _check(_lib().qca_image_info(h, C.byref(info)))
        out = np.empty(tuple(info.dims), np.float32)
        _check(_lib().qca_image_volume_f32(h, frame, channel, _ptr(out)))
        vs = tuple(info.voxel_size_um) if info.has_voxel_size else None
        return out, vs
    finally:
        _lib().qca_image_free(h)


def write_tiff(path, labels, voxel_size=None):
    """Writes labels (z, y, x) or (t, z, y, x) as a 16-bit (or 32-bit) ImageJ TIFF, atomically."""
    lab = np.ascontiguousarray(labels, dtype=np.uint32)
    frames = 1
    if lab.ndim == 4:
        frames = lab.shape[0]
    elif lab.ndim != 3:
        raise ValueError("labels are (z, y, x) or (t, z, y, x)")
    dims = (C.c_size_t * 3)(*lab.shape[-3:])
    vs = None if voxel_size is None else (C.c_double * 3)(*voxel_size)
    _check(_lib().qca_labels_write(str(path).encode(), _ptr(lab), dims, frames, vs))
