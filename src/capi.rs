//! The C API (ABI version 2): every `extern "C"` function of the library, and nothing else.
//!
//! Conventions, for every function below:
//! - Fallible functions return a [`QcaStatus`]; `QCA_OK` (0) is success. On failure,
//!   [`qca_last_error`] gives a message for the calling thread, and every
//!   out-parameter is left untouched.
//! - Arrays are C order `[z][y][x]` (x fastest): the same memory as a MATLAB array
//!   of size `[X Y Z]`.
//! - No Rust panic crosses this boundary: it becomes `QCA_ERR_INTERNAL`.
//! - Handles (`QcaModel`, `QcaImage`, `QcaMeasurements`) are created by one function
//!   and freed by the `_free` function named in their documentation; `_free(NULL)` is fine.
//! - A `QcaModel` may be used from several threads at once.
//! - Lengths, volumes and thresholds are `double`, so a host's double (Fiji, MATLAB,
//!   Python) reaches the library unchanged (ABI 2; ABI 1 passed them as `float`).
//!
//! This module only translates: C values to the library's types and back. Every
//! parameter is defaulted and validated once, in [`crate::plan`].

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;

use crate::error::{voxel_count, Error, Result};
use crate::io::tiff::{self, Samples};
use crate::{
    Connectivity, Device, Landscape, LoadOptions, MarkerMode, Matching, Metrics, Model, Nucleus, PostParams, Precision, SegmentParams,
};

/// Library major version (semantic versioning of the crate).
pub const QCA_VERSION_MAJOR: u32 = 0;
/// Library minor version.
pub const QCA_VERSION_MINOR: u32 = 2;
/// Library patch version.
pub const QCA_VERSION_PATCH: u32 = 0;
/// Version of this C interface; changes only when old callers would break.
pub const QCA_ABI_VERSION: u32 = 2;

/// Inference device: CUDA when it starts, else the CPU.
pub const QCA_DEVICE_AUTO: i32 = 0;
/// Inference device: the CPU.
pub const QCA_DEVICE_CPU: i32 = 1;
/// Inference device: CUDA (an error if it cannot start).
pub const QCA_DEVICE_CUDA: i32 = 2;

/// Marker rule: as the model's metadata says.
pub const QCA_MARKERS_MODEL: i32 = 0;
/// Marker rule: 26-connected components of NDN > threshold (QCANet).
pub const QCA_MARKERS_COMPONENTS: i32 = 1;
/// Marker rule: local maxima of the smoothed NDN output above the threshold.
pub const QCA_MARKERS_LOCAL_MAXIMA: i32 = 2;

/// Watershed landscape: as the model's metadata says.
pub const QCA_LANDSCAPE_MODEL: i32 = 0;
/// Watershed landscape: negative distance transform of the NSN mask (QCANet).
pub const QCA_LANDSCAPE_DISTANCE: i32 = 1;
/// Watershed landscape: negative NDN probability.
pub const QCA_LANDSCAPE_CENTRE: i32 = 2;

/// Sample type of a `QcaImage`: 8-bit unsigned.
pub const QCA_SAMPLE_U8: i32 = 1;
/// Sample type: 16-bit unsigned.
pub const QCA_SAMPLE_U16: i32 = 2;
/// Sample type: 32-bit unsigned.
pub const QCA_SAMPLE_U32: i32 = 3;
/// Sample type: 32-bit float.
pub const QCA_SAMPLE_F32: i32 = 4;

/// Result of every fallible call. Values are fixed across ABI versions; new ones are
/// appended (and `QcaStatus::LAST` moved), so they stay contiguous from 0.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum QcaStatus {
    /// Success.
    QCA_OK = 0,
    /// A required pointer was NULL.
    QCA_ERR_NULL_POINTER = 1,
    /// An argument is out of range, or dimensions are zero, overflow or do not match.
    QCA_ERR_INVALID_ARGUMENT = 2,
    /// The input holds NaN or infinite values.
    QCA_ERR_NON_FINITE = 3,
    /// A file could not be read or written.
    QCA_ERR_IO = 4,
    /// A file is corrupt or in a format qcanet does not read.
    QCA_ERR_FORMAT = 5,
    /// ONNX Runtime could not be found or started.
    QCA_ERR_RUNTIME = 6,
    /// A model file is missing, not ONNX, or breaks the tensor contract.
    QCA_ERR_MODEL = 7,
    /// Inference failed.
    QCA_ERR_INFERENCE = 8,
    /// The progress callback asked to stop.
    QCA_ERR_CANCELLED = 9,
    /// A bug in qcanet (a caught panic); please report it.
    QCA_ERR_INTERNAL = 10,
}

impl QcaStatus {
    const LAST: QcaStatus = QcaStatus::QCA_ERR_INTERNAL;

    fn from_i32(v: i32) -> Option<QcaStatus> {
        // SAFETY: QcaStatus is repr(i32) with the contiguous values 0..=LAST.
        (0..=Self::LAST as i32).contains(&v).then(|| unsafe { std::mem::transmute::<i32, QcaStatus>(v) })
    }
}

use QcaStatus::*;

/// How to load a model. Fill with `qca_model_options_default(&o, sizeof o)` first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QcaModelOptions {
    /// `sizeof(QcaModelOptions)` as the caller knows it.
    pub struct_size: u32,
    /// `QCA_DEVICE_AUTO`, `QCA_DEVICE_CPU` or `QCA_DEVICE_CUDA`.
    pub device: i32,
    /// CUDA device index.
    pub device_id: i32,
    /// Inference threads; 0 = all cores.
    pub num_threads: i32,
    /// `QCA_PRECISION_AUTO` (the default: int8 where OpenVINO runs on an x86-64 CPU with
    /// AVX2 and the model has an int8 version, fp32 elsewhere), `QCA_PRECISION_FP32` (the same labels
    /// on CPU and GPU), `QCA_PRECISION_TF32` (TensorFloat-32 convolutions on NVIDIA GPUs) or
    /// `QCA_PRECISION_INT8` (the model's int8 version on the CPU). A caller's struct that
    /// ends before it means auto.
    pub precision: i32,
}

/// Arithmetic: IEEE fp32.
pub const QCA_PRECISION_FP32: i32 = 0;
/// Arithmetic: TensorFloat-32 convolutions on NVIDIA GPUs (the CPU computes in fp32).
pub const QCA_PRECISION_TF32: i32 = 1;
/// Arithmetic: the model's int8 version, on the CPU.
pub const QCA_PRECISION_INT8: i32 = 2;
/// Arithmetic: int8 where it pays (OpenVINO on an x86-64 CPU with AVX2, a model with an
/// int8 version), fp32 elsewhere.
pub const QCA_PRECISION_AUTO: i32 = 3;

/// Progress callback: `fraction` in [0, 1]; return 0 to go on, non-zero to cancel.
pub type QcaProgressFn = Option<unsafe extern "C" fn(fraction: f32, user_data: *mut c_void) -> i32>;

/// Per-call settings. Fill with `qca_segment_params_default(&p, sizeof p)` first: every field then
/// means "as the model says", and you change only what you want.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QcaSegmentParams {
    /// `sizeof(QcaSegmentParams)` as the caller knows it.
    pub struct_size: u32,
    /// Input voxel size z, y, x in micrometres; 0 = the model's (no resampling).
    pub voxel_size: [f64; 3],
    /// NSN probability threshold; -1 = the model's (any other negative is refused).
    pub fg_threshold: f64,
    /// NDN probability threshold; -1 = the model's.
    pub centre_threshold: f64,
    /// `QCA_MARKERS_*`.
    pub markers: i32,
    /// Smoothing of the NDN output before local maxima (micrometres); -1 = the model's.
    pub marker_sigma_um: f64,
    /// `QCA_LANDSCAPE_*`.
    pub landscape: i32,
    /// Fill holes in the mask: 1 yes, 0 no, -1 = the model's.
    pub fill_holes: i32,
    /// Nuclei smaller than this (cubic micrometres) are dropped; -1 = the model's.
    pub min_volume_um3: f64,
    /// Watershed connectivity: 6, 18 or 26; 0 = the model's.
    pub connectivity: i32,
    /// Tile size z, y, x in voxels of the model grid; 0 = the model's.
    pub tile: [u32; 3],
    /// Tile overlap z, y, x; -1, -1, -1 = the model's.
    pub overlap: [i32; 3],
    /// Optional progress/cancel callback (NULL for none), called from the calling thread.
    pub progress: QcaProgressFn,
    /// Passed to `progress` unchanged.
    pub user_data: *mut c_void,
    /// Where `voxel_size` came from: `QCA_VOXEL_SIZE_CALLER` (default) or
    /// `QCA_VOXEL_SIZE_FILE` (the image's own calibration, e.g. read with `qca_image_info`);
    /// the plan reports it.
    pub voxel_size_source: i32,
    /// Where the stage times of a `qca_segment_u8/u16/f32` call go (NULL: not reported; the
    /// other functions taking these parameters ignore it): set `timings->struct_size` to
    /// `sizeof(QcaTimings)` first. Filled only when the call succeeds. A library older than
    /// this field ignores it too: `qca_struct_size("QcaTimings")` is 0 there.
    pub timings: *mut QcaTimings,
}

/// Seconds spent in each stage of one `qca_segment_*` call (see `QcaSegmentParams.timings`):
/// the breakdown `qcanet segment --timings` prints. `prepare_s` is timed around
/// `normalise_s` and `resample_s`, `post_s` around the post-processing steps and
/// `resample_back_s`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaTimings {
    /// `sizeof(QcaTimings)` as the caller knows it.
    pub struct_size: u32,
    /// Normalisation and resampling to the model grid.
    pub prepare_s: f64,
    pub normalise_s: f64,
    pub resample_s: f64,
    /// The networks over all tiles (host/device copies included).
    pub network_s: f64,
    /// Everything after the networks.
    pub post_s: f64,
    /// Threshold and fill holes.
    pub mask_s: f64,
    /// Markers (components, or smoothing + local maxima).
    pub markers_s: f64,
    /// The landscape (distance transform).
    pub landscape_s: f64,
    /// The flood, the unmarked components and the relabelling.
    pub watershed_s: f64,
    /// Labels back to the input grid.
    pub resample_back_s: f64,
}

impl QcaTimings {
    fn of(t: &crate::StageTimes) -> QcaTimings {
        QcaTimings {
            struct_size: std::mem::size_of::<QcaTimings>() as u32,
            prepare_s: t.prepare_s,
            normalise_s: t.normalise_s,
            resample_s: t.resample_s,
            network_s: t.network_s,
            post_s: t.post_s,
            mask_s: t.post.mask_s,
            markers_s: t.post.markers_s,
            landscape_s: t.post.landscape_s,
            watershed_s: t.post.watershed_s,
            resample_back_s: t.resample_back_s,
        }
    }
}

/// `QcaSegmentParams.voxel_size_source`: the caller chose the voxel size.
pub const QCA_VOXEL_SIZE_CALLER: i32 = 0;
/// `QcaSegmentParams.voxel_size_source`: the voxel size is the image file's calibration.
pub const QCA_VOXEL_SIZE_FILE: i32 = 1;

/// Number of IoU thresholds of the detection arrays in `QcaMetrics` (0.5, 0.6, 0.7, 0.8, 0.9).
pub const QCA_MATCH_THRESHOLDS: usize = 5;

/// Accuracy of a segmentation against ground truth (see `qca_evaluate`). Detection at
/// several IoU thresholds is given as parallel arrays, element i for `match_threshold[i]`
/// (flat arrays rather than an array of structs, which MATLAB's `loadlibrary` cannot read).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaMetrics {
    /// Voxel IoU of the foregrounds.
    pub iou: f64,
    /// QCANet SEG, as the authors' evaluation code computes it.
    pub seg: f64,
    /// QCANet MUCov, as the authors' evaluation code computes it.
    pub mucov: f64,
    /// Cell Tracking Challenge SEG.
    pub seg_ctc: f64,
    /// Detection F1 at IoU >= 0.5 (`match_f1[0]`).
    pub f1: f64,
    /// Ground-truth nuclei.
    pub n_gt: u32,
    /// Predicted nuclei.
    pub n_pred: u32,
    /// Pairs matched at IoU >= 0.5 (`match_tp[0]`).
    pub n_matched: u32,
    /// Matched / predicted at IoU >= 0.5.
    pub precision: f64,
    /// Matched / ground truth at IoU >= 0.5.
    pub recall: f64,
    /// IoU thresholds: 0.5, 0.6, 0.7, 0.8, 0.9. A pair counts when its IoU is >= the threshold;
    /// pairs are matched one to one, optimally (StarDist's `matching.py` definitions).
    pub match_threshold: [f64; QCA_MATCH_THRESHOLDS],
    /// Matched pairs, unmatched predictions, unmatched ground-truth nuclei.
    pub match_tp: [u32; QCA_MATCH_THRESHOLDS],
    pub match_fp: [u32; QCA_MATCH_THRESHOLDS],
    pub match_fn: [u32; QCA_MATCH_THRESHOLDS],
    pub match_precision: [f64; QCA_MATCH_THRESHOLDS],
    pub match_recall: [f64; QCA_MATCH_THRESHOLDS],
    pub match_f1: [f64; QCA_MATCH_THRESHOLDS],
    /// TP / (TP + FP + FN) (StarDist's "accuracy", reported as AP).
    pub ap: [f64; QCA_MATCH_THRESHOLDS],
    /// Mean IoU of the matched pairs.
    pub mean_matched_iou: [f64; QCA_MATCH_THRESHOLDS],
    /// Sum of matched IoUs / (TP + FP/2 + FN/2).
    pub panoptic_quality: [f64; QCA_MATCH_THRESHOLDS],
}

impl From<&Metrics> for QcaMetrics {
    fn from(m: &Metrics) -> Self {
        let each = |f: fn(&Matching) -> f64| m.matching.each_ref().map(f);
        let count = |f: fn(&Matching) -> u32| m.matching.each_ref().map(f);
        QcaMetrics {
            iou: m.iou,
            seg: m.seg,
            mucov: m.mucov,
            seg_ctc: m.seg_ctc,
            f1: m.f1,
            n_gt: m.n_gt,
            n_pred: m.n_pred,
            n_matched: m.n_matched,
            precision: m.precision,
            recall: m.recall,
            match_threshold: each(|r| r.threshold),
            match_tp: count(|r| r.tp),
            match_fp: count(|r| r.fp),
            match_fn: count(|r| r.fn_),
            match_precision: each(|r| r.precision),
            match_recall: each(|r| r.recall),
            match_f1: each(|r| r.f1),
            ap: each(|r| r.ap),
            mean_matched_iou: each(|r| r.mean_matched_score),
            panoptic_quality: each(|r| r.panoptic_quality),
        }
    }
}

/// One nucleus (see `qca_measure`). Voxel coordinates are z, y, x indices.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaNucleus {
    pub label: u32,
    /// Bounding box, inclusive, in voxels.
    pub bbox_min: [u32; 3],
    pub bbox_max: [u32; 3],
    pub voxels: u64,
    pub volume_um3: f64,
    /// Centroid in voxels (z, y, x).
    pub centroid: [f64; 3],
    /// Centroid in micrometres (z, y, x).
    pub centroid_um: [f64; 3],
    pub mean_intensity: f64,
    pub total_intensity: f64,
}

/// What a TIFF stack holds (see `qca_image_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaImageInfo {
    /// `sizeof(QcaImageInfo)` as the caller knows it.
    pub struct_size: u32,
    /// `QCA_SAMPLE_*`.
    pub sample_type: i32,
    /// z, y, x of one volume.
    pub dims: [usize; 3],
    pub channels: u32,
    pub frames: u32,
    /// 1 when the file carries a calibration (then `voxel_size_um` holds it), else 0.
    pub has_voxel_size: i32,
    /// z, y, x in micrometres.
    pub voxel_size_um: [f64; 3],
    /// Pages between consecutive frames, slices and channels (t, z, c): in the file for
    /// `qca_file_info` (ImageJ's order, or an OME-TIFF's `DimensionOrder`; 0 for an
    /// OME-Zarr image, which has no pages); ImageJ's order for `qca_image_info`, which holds
    /// the planes so whatever the file's order was.
    pub page_strides: [usize; 3],
}

impl From<&Nucleus> for QcaNucleus {
    fn from(x: &Nucleus) -> Self {
        QcaNucleus {
            label: x.label,
            bbox_min: x.bbox_min,
            bbox_max: x.bbox_max,
            voxels: x.voxels,
            volume_um3: x.volume_um3,
            centroid: x.centroid,
            centroid_um: x.centroid_um,
            mean_intensity: x.mean_intensity,
            total_intensity: x.total_intensity,
        }
    }
}

/// A loaded model. Create with `qca_model_load` or `qca_model_load_default`; free with `qca_model_free`.
pub struct QcaModel {
    inner: Model,
}

/// A TIFF stack in memory. Create with `qca_image_read`; free with `qca_image_free`.
pub struct QcaImage {
    stack: tiff::Stack,
}

/// Per-nucleus measurements. Create with `qca_measure`; free with `qca_measurements_free`.
pub struct QcaMeasurements {
    nuclei: Vec<QcaNucleus>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn status_of(e: &Error) -> QcaStatus {
    match e {
        Error::InvalidArgument(_) => QCA_ERR_INVALID_ARGUMENT,
        Error::NonFinite(_) => QCA_ERR_NON_FINITE,
        Error::Io { .. } | Error::Write { .. } => QCA_ERR_IO,
        Error::Tiff { .. } | Error::Unsupported(_) => QCA_ERR_FORMAT,
        Error::Runtime(_) => QCA_ERR_RUNTIME,
        Error::Model(_) => QCA_ERR_MODEL,
        Error::Inference(_) => QCA_ERR_INFERENCE,
        Error::Cancelled => QCA_ERR_CANCELLED,
        Error::Internal(_) => QCA_ERR_INTERNAL,
    }
}

/// Runs `f`, turning errors and panics into a status and a thread-local message.
/// A panic prints nothing on the host's stderr (`quiet_panic`).
fn guard<F: FnOnce() -> std::result::Result<(), (QcaStatus, String)>>(f: F) -> QcaStatus {
    match crate::quiet_panic::catch(f) {
        Ok(Ok(())) => QCA_OK,
        Ok(Err((s, m))) => {
            set_error(&m);
            s
        }
        Err(what) => {
            set_error(&format!("internal error (please report): {what}"));
            QCA_ERR_INTERNAL
        }
    }
}

trait IntoCErr<T> {
    fn c(self) -> std::result::Result<T, (QcaStatus, String)>;
}
impl<T> IntoCErr<T> for Result<T> {
    fn c(self) -> std::result::Result<T, (QcaStatus, String)> {
        self.map_err(|e| (status_of(&e), e.to_string()))
    }
}

fn null(what: &str) -> (QcaStatus, String) {
    (QCA_ERR_NULL_POINTER, format!("{what} is NULL"))
}

/// A NULL error for `what` when `p` is NULL (inputs and out-parameters alike).
fn non_null<T>(p: *const T, what: &str) -> std::result::Result<(), (QcaStatus, String)> {
    if p.is_null() {
        Err(null(what))
    } else {
        Ok(())
    }
}

fn invalid(msg: String) -> (QcaStatus, String) {
    (QCA_ERR_INVALID_ARGUMENT, msg)
}

/// Reads `dims[3]` and checks it; returns dims and voxel count.
unsafe fn read_dims(dims: *const usize) -> std::result::Result<([usize; 3], usize), (QcaStatus, String)> {
    non_null(dims, "dims")?;
    let d = [*dims, *dims.add(1), *dims.add(2)];
    let n = voxel_count(d).c()?;
    Ok((d, n))
}

/// A `len`-element slice from a caller's pointer, or a NULL error.
unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> std::result::Result<&'a [T], (QcaStatus, String)> {
    non_null(p, what)?;
    Ok(std::slice::from_raw_parts(p, len))
}

/// A caller's NUL-terminated, non-empty UTF-8 string.
unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> std::result::Result<&'a str, (QcaStatus, String)> {
    non_null(p, what)?;
    let s = CStr::from_ptr(p).to_str().map_err(|_| invalid(format!("{what} is not UTF-8")))?;
    if s.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    Ok(s)
}

unsafe fn path_arg<'a>(p: *const c_char, what: &str) -> std::result::Result<&'a Path, (QcaStatus, String)> {
    str_arg(p, what).map(Path::new)
}

/// The (start, end) offsets of each field of a struct: an older, shorter version of it
/// ends between two fields (at a field's end, or after the padding before the next).
macro_rules! field_spans {
    ($t:ty: $($f:ident),+) => {{
        fn span<F>(_: impl Fn(&$t) -> &F, offset: usize) -> (usize, usize) {
            (offset, offset + std::mem::size_of::<F>())
        }
        [$(span(|s: &$t| &s.$f, std::mem::offset_of!($t, $f))),+]
    }};
}

/// Whether a struct that ends at byte `size` would cut one of `fields` (start, end) in two.
fn cuts_a_field(fields: &[(usize, usize)], size: usize) -> bool {
    fields.iter().any(|&(start, end)| start < size && size < end)
}

/// Copies a caller's versioned struct over defaults: only the bytes it says it has. Its
/// `struct_size` must not end inside a field (`fields`: their start and end offsets), or
/// it would copy half of one (half a callback pointer).
unsafe fn read_versioned<T: Copy>(
    p: *const T,
    default: T,
    fields: &[(usize, usize)],
    what: &str,
) -> std::result::Result<T, (QcaStatus, String)> {
    let size = *(p as *const u32) as usize;
    if size < 4 {
        return Err(invalid(format!("{what}.struct_size is {size}: call the _default function first")));
    }
    if cuts_a_field(fields, size) {
        return Err(invalid(format!(
            "{what}.struct_size is {size}, which ends inside a field (this library's struct is {} bytes): \
             set it with sizeof or the _default function",
            std::mem::size_of::<T>()
        )));
    }
    let mut out = default;
    let n = size.min(std::mem::size_of::<T>());
    std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, n);
    // the copy overwrote struct_size with the caller's; keep ours
    *(&mut out as *mut T as *mut u32) = std::mem::size_of::<T>() as u32;
    Ok(out)
}

/// Version of this C interface (`QCA_ABI_VERSION` of the loaded library).
#[no_mangle]
pub extern "C" fn qca_abi_version() -> u32 {
    QCA_ABI_VERSION
}

/// Version of the loaded library, "MAJOR.MINOR.PATCH"; static storage.
#[no_mangle]
pub extern "C" fn qca_version() -> *const c_char {
    static V: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();
    V.as_ptr() as *const c_char
}

/// Message of the last failure on this thread ("" if none). Valid until the next
/// failing call on the same thread; do not free.
#[no_mangle]
pub extern "C" fn qca_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Name of a status code ("QCA_OK", ...), static storage; NULL for an unknown code.
#[no_mangle]
pub extern "C" fn qca_status_str(status: i32) -> *const c_char {
    // the names are the enum's own (its Debug spelling), made once
    static NAMES: std::sync::OnceLock<Vec<CString>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..=QcaStatus::LAST as i32).filter_map(QcaStatus::from_i32).map(|s| CString::new(format!("{s:?}")).unwrap_or_default()).collect()
    });
    usize::try_from(status).ok().and_then(|i| names.get(i)).map_or(std::ptr::null(), |n| n.as_ptr())
}

/// Loads ONNX Runtime from `onnxruntime_library_path`, or (NULL) searches for it:
/// `ORT_DYLIB_PATH`, beside libqcanet, beside the program, the system path.
/// Optional: model loading does the search by itself.
///
/// # Safety
/// `onnxruntime_library_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn qca_runtime_init(onnxruntime_library_path: *const c_char) -> QcaStatus {
    guard(|| {
        let p =
            if onnxruntime_library_path.is_null() { None } else { Some(path_arg(onnxruntime_library_path, "onnxruntime_library_path")?) };
        crate::runtime::init(p).c().map(|_| ())
    })
}

/// ONNX Runtime's build string once it is loaded, else NULL. Static storage.
#[no_mangle]
pub extern "C" fn qca_runtime_info() -> *const c_char {
    static INFO: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    match crate::runtime::build_info() {
        Some(s) => INFO.get_or_init(|| CString::new(s).unwrap_or_default()).as_ptr(),
        None => std::ptr::null(),
    }
}

fn default_options() -> QcaModelOptions {
    QcaModelOptions {
        struct_size: std::mem::size_of::<QcaModelOptions>() as u32,
        device: QCA_DEVICE_AUTO,
        device_id: 0,
        num_threads: 0,
        precision: QCA_PRECISION_AUTO,
    }
}

fn options_fields() -> [(usize, usize); 5] {
    field_spans!(QcaModelOptions: struct_size, device, device_id, num_threads, precision)
}

/// Writes the first `size` bytes of `defaults` over a caller's struct, `struct_size` set to
/// what was written: a caller built against an older, shorter struct gets only the fields
/// it has, and nothing past its end is touched.
unsafe fn write_versioned<T: Copy>(
    p: *mut T,
    size: usize,
    defaults: T,
    fields: &[(usize, usize)],
    what: &str,
) -> std::result::Result<(), (QcaStatus, String)> {
    non_null(p, what)?;
    let n = size.min(std::mem::size_of::<T>());
    if size < 4 || cuts_a_field(fields, n) {
        return Err(invalid(format!("{what}: size {size} is not the size of a QcaStruct version (pass sizeof of your struct)")));
    }
    std::ptr::copy_nonoverlapping(&defaults as *const T as *const u8, p as *mut u8, n);
    std::ptr::write_unaligned(p as *mut u32, n as u32);
    Ok(())
}

/// This library's size of a struct of this API by name ("QcaModelOptions",
/// "QcaSegmentParams", "QcaImageInfo", "QcaTrackParams", "QcaTrack", "QcaDivision",
/// "QcaTrackPoint", "QcaFrameCriteria", "QcaDivisionRound", "QcaBlockOptions", "QcaTimings", "QcaFileReport"), 0 for another name or NULL. For hosts that declare the structs at run
/// time from the header shipped with this library (MATLAB's `loadlibrary`) and so cannot
/// take `sizeof`; a C caller passes `sizeof` of its own struct instead.
///
/// # Safety
/// `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn qca_struct_size(name: *const c_char) -> usize {
    if name.is_null() {
        return 0;
    }
    match CStr::from_ptr(name).to_bytes() {
        b"QcaModelOptions" => std::mem::size_of::<QcaModelOptions>(),
        b"QcaSegmentParams" => std::mem::size_of::<QcaSegmentParams>(),
        b"QcaImageInfo" => std::mem::size_of::<QcaImageInfo>(),
        b"QcaTrackParams" => std::mem::size_of::<QcaTrackParams>(),
        b"QcaTrack" => std::mem::size_of::<QcaTrack>(),
        b"QcaDivision" => std::mem::size_of::<QcaDivision>(),
        b"QcaTrackPoint" => std::mem::size_of::<QcaTrackPoint>(),
        b"QcaFrameCriteria" => std::mem::size_of::<QcaFrameCriteria>(),
        b"QcaDivisionRound" => std::mem::size_of::<QcaDivisionRound>(),
        b"QcaBlockOptions" => std::mem::size_of::<QcaBlockOptions>(),
        b"QcaTimings" => std::mem::size_of::<QcaTimings>(),
        b"QcaFileReport" => std::mem::size_of::<QcaFileReport>(),
        _ => 0,
    }
}

/// Fills `o` (`struct_size` = `sizeof *o` bytes as the caller knows it) with the defaults:
/// automatic device, all cores, automatic precision (int8 under OpenVINO on AVX2, else fp32).
///
/// # Safety
/// `o` is NULL or points to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn qca_model_options_default(o: *mut QcaModelOptions, struct_size: usize) -> QcaStatus {
    guard(|| write_versioned(o, struct_size, default_options(), &options_fields(), "QcaModelOptions"))
}

unsafe fn load_options(o: *const QcaModelOptions) -> std::result::Result<LoadOptions, (QcaStatus, String)> {
    let d = default_options();
    let ends = options_fields();
    let o = if o.is_null() { d } else { read_versioned(o, d, &ends, "QcaModelOptions")? };
    let device = match o.device {
        QCA_DEVICE_AUTO => Device::Auto,
        QCA_DEVICE_CPU => Device::Cpu,
        QCA_DEVICE_CUDA => Device::Cuda,
        x => return Err(invalid(format!("device {x} is not QCA_DEVICE_AUTO/CPU/CUDA"))),
    };
    if o.num_threads < 0 || o.device_id < 0 {
        return Err(invalid("num_threads and device_id must be >= 0".into()));
    }
    let precision = match o.precision {
        QCA_PRECISION_FP32 => Precision::Fp32,
        QCA_PRECISION_TF32 => Precision::Tf32,
        QCA_PRECISION_INT8 => Precision::Int8,
        QCA_PRECISION_AUTO => Precision::Auto,
        x => return Err(invalid(format!("precision {x} is not QCA_PRECISION_AUTO/FP32/TF32/INT8"))),
    };
    Ok(LoadOptions { device, device_id: o.device_id, num_threads: o.num_threads as usize, precision })
}

/// Loads an NSN and an NDN ONNX file (`ndn_onnx` may be NULL when `nsn_onnx` is a
/// joint model). `o` may be NULL (defaults). On success `*out` owns a new model:
/// free it with `qca_model_free`.
///
/// # Safety
/// Paths are NULL or NUL-terminated; `o` is NULL or a filled `QcaModelOptions`; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_model_load(
    nsn_onnx: *const c_char,
    ndn_onnx: *const c_char,
    o: *const QcaModelOptions,
    out: *mut *mut QcaModel,
) -> QcaStatus {
    guard(|| {
        non_null(out, "out")?;
        let nsn = path_arg(nsn_onnx, "nsn_onnx")?;
        let ndn = if ndn_onnx.is_null() { None } else { Some(path_arg(ndn_onnx, "ndn_onnx")?) };
        let opts = load_options(o)?;
        let m = Model::load(nsn, ndn, &opts).c()?;
        *out = Box::into_raw(Box::new(QcaModel { inner: m }));
        Ok(())
    })
}

/// Loads the model compiled into the library. Free with `qca_model_free`.
///
/// # Safety
/// `o` is NULL or a filled `QcaModelOptions`; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_model_load_default(o: *const QcaModelOptions, out: *mut *mut QcaModel) -> QcaStatus {
    guard(|| {
        non_null(out, "out")?;
        let opts = load_options(o)?;
        let m = Model::load_default(&opts).c()?;
        *out = Box::into_raw(Box::new(QcaModel { inner: m }));
        Ok(())
    })
}

/// Frees a model from `qca_model_load*`. NULL is fine.
///
/// # Safety
/// `m` is NULL or a model not yet freed, and no other thread is using it.
#[no_mangle]
pub unsafe extern "C" fn qca_model_free(m: *mut QcaModel) {
    if !m.is_null() {
        let _ = crate::quiet_panic::catch(|| drop(Box::from_raw(m)));
    }
}

/// Describes a model: its name, device, provider and precision, and metadata, as one line of text written
/// into `buf` (NUL-terminated, cut to `capacity`). `*needed` (may be NULL) gets the full length + 1.
///
/// # Safety
/// `m` is a live model; `buf` has `capacity` writable bytes (or is NULL with capacity 0).
#[no_mangle]
pub unsafe extern "C" fn qca_model_describe(m: *const QcaModel, buf: *mut c_char, capacity: usize, needed: *mut usize) -> QcaStatus {
    guard(|| {
        let m = m.as_ref().ok_or_else(|| null("model"))?;
        let i = m.inner.info();
        let mut keys: Vec<_> = i.raw.iter().filter(|(k, _)| k.starts_with("qcanet.") && k.as_str() != "qcanet.architecture").collect();
        keys.sort();
        let meta: Vec<String> = keys.iter().map(|(k, v)| format!("{}={}", &k[7..], v)).collect();
        let s = format!(
            "{} on {} ({} provider, {}); {}",
            m.inner.name,
            m.inner.device_used(),
            m.inner.provider(),
            m.inner.precision_used(),
            meta.join("; ")
        );
        write_text(&s, buf, capacity, needed)
    })
}

/// Writes `text` into a caller's buffer as the text functions do: NUL-terminated, cut to
/// `capacity`; `*needed` (may be NULL) gets the full length + 1. Nothing is written when
/// `buf` is NULL with a non-zero capacity.
unsafe fn write_text(text: &str, buf: *mut c_char, capacity: usize, needed: *mut usize) -> std::result::Result<(), (QcaStatus, String)> {
    let bytes = text.as_bytes();
    if capacity > 0 {
        non_null(buf, "buf")?;
        let n = bytes.len().min(capacity - 1);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
    if !needed.is_null() {
        *needed = bytes.len() + 1;
    }
    Ok(())
}

/// Fills `p` (`struct_size` = `sizeof *p` bytes as the caller knows it) with "as the model
/// says" for every field. A caller built against an older header passes its smaller size
/// and gets only the fields it has.
///
/// # Safety
/// `p` is NULL or points to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn qca_segment_params_default(p: *mut QcaSegmentParams, struct_size: usize) -> QcaStatus {
    guard(|| write_versioned(p, struct_size, default_params(), &params_fields(), "QcaSegmentParams"))
}

fn params_fields() -> [(usize, usize); 16] {
    field_spans!(QcaSegmentParams: struct_size, voxel_size, fg_threshold, centre_threshold, markers, marker_sigma_um,
        landscape, fill_holes, min_volume_um3, connectivity, tile, overlap, progress, user_data, voxel_size_source, timings)
}

fn timings_fields() -> [(usize, usize); 11] {
    field_spans!(QcaTimings: struct_size, prepare_s, normalise_s, resample_s, network_s, post_s, mask_s, markers_s,
        landscape_s, watershed_s, resample_back_s)
}

/// The caller's `QcaTimings` size, checked before any work (so that a bad one fails the
/// call with nothing written).
unsafe fn timings_size(t: *mut QcaTimings) -> std::result::Result<usize, (QcaStatus, String)> {
    out_size(t, &timings_fields(), "timings", "QcaTimings")
}

/// The bytes of a caller's versioned out-struct (`*p`'s `struct_size`) this library may
/// write: at most its own size, and refused when the caller's size ends inside a field.
unsafe fn out_size<T>(p: *const T, fields: &[(usize, usize)], what: &str, ty: &str) -> std::result::Result<usize, (QcaStatus, String)> {
    let size = std::ptr::read_unaligned(p as *const u32) as usize;
    let n = size.min(std::mem::size_of::<T>());
    if size < 4 || cuts_a_field(fields, n) {
        return Err(invalid(format!("{what}->struct_size is {size}: set it to sizeof({ty})")));
    }
    Ok(n)
}

/// The progress callback of `c` as a closure (true: go on).
fn progress_of(c: &QcaSegmentParams) -> impl Fn(f32) -> bool + Sync {
    let (cb, user) = (c.progress, c.user_data as usize);
    move |f: f32| -> bool {
        match cb {
            // SAFETY: the caller promised a valid callback and user_data for this call
            Some(f_) => unsafe { f_(f, user as *mut c_void) == 0 },
            None => true,
        }
    }
}

fn default_params() -> QcaSegmentParams {
    QcaSegmentParams {
        struct_size: std::mem::size_of::<QcaSegmentParams>() as u32,
        voxel_size: [0.0; 3],
        fg_threshold: -1.0,
        centre_threshold: -1.0,
        markers: QCA_MARKERS_MODEL,
        marker_sigma_um: -1.0,
        landscape: QCA_LANDSCAPE_MODEL,
        fill_holes: -1,
        min_volume_um3: -1.0,
        connectivity: 0,
        tile: [0; 3],
        overlap: [-1; 3],
        progress: None,
        user_data: std::ptr::null_mut(),
        voxel_size_source: QCA_VOXEL_SIZE_CALLER,
        timings: std::ptr::null_mut(),
    }
}

/// C parameters into the library's: the sentinels ("as the model's") become `None`;
/// the values themselves are checked once, by [`crate::plan`].
unsafe fn segment_params(p: *const QcaSegmentParams) -> std::result::Result<(SegmentParams, QcaSegmentParams), (QcaStatus, String)> {
    let c = if p.is_null() { default_params() } else { read_versioned(p, default_params(), &params_fields(), "QcaSegmentParams")? };
    // -1 means "the model's" (what qca_segment_params_default sets); any other negative is
    // refused here, NaN and the rest are the plan's to check
    let given = |v: f64, what: &str| -> std::result::Result<Option<f64>, (QcaStatus, String)> {
        match v {
            -1.0 => Ok(None),
            v if v < 0.0 => Err(invalid(format!("{what} {v} must be >= 0 (-1 = the model's)"))),
            v => Ok(Some(v)),
        }
    };
    let v = c.voxel_size;
    let voxel_size = if v.iter().all(|&a| a == 0.0) {
        None
    } else if v.iter().any(|&a| a == 0.0) {
        return Err(invalid(format!("voxel_size {v:?}: give all three values or none (0 = the model's)")));
    } else {
        Some(v)
    };
    let markers = match c.markers {
        QCA_MARKERS_MODEL => None,
        QCA_MARKERS_COMPONENTS => Some(MarkerMode::Components),
        QCA_MARKERS_LOCAL_MAXIMA => Some(MarkerMode::LocalMaxima),
        x => return Err(invalid(format!("markers {x} is not a QCA_MARKERS_* value"))),
    };
    let landscape = match c.landscape {
        QCA_LANDSCAPE_MODEL => None,
        QCA_LANDSCAPE_DISTANCE => Some(Landscape::Distance),
        QCA_LANDSCAPE_CENTRE => Some(Landscape::Centre),
        x => return Err(invalid(format!("landscape {x} is not a QCA_LANDSCAPE_* value"))),
    };
    let fill_holes = match c.fill_holes {
        -1 => None,
        0 => Some(false),
        1 => Some(true),
        x => return Err(invalid(format!("fill_holes {x} is not -1, 0 or 1"))),
    };
    let connectivity = if c.connectivity == 0 { None } else { Some(Connectivity::from_rank(c.connectivity).c()?) };
    let tile = match c.tile {
        [0, 0, 0] => None,
        t if t.contains(&0) => return Err(invalid(format!("tile {t:?}: give all three sizes or none"))),
        t => Some(t.map(|a| a as usize)),
    };
    let overlap = match c.overlap {
        [-1, -1, -1] => None,
        o if o.iter().any(|&a| a < 0) => return Err(invalid(format!("overlap {o:?}: three sizes >= 0, or -1, -1, -1 for the model's"))),
        o => Some(o.map(|a| a as usize)),
    };
    let voxel_size_source = match c.voxel_size_source {
        QCA_VOXEL_SIZE_CALLER => crate::VoxelSource::Caller,
        QCA_VOXEL_SIZE_FILE => crate::VoxelSource::File,
        x => return Err(invalid(format!("voxel_size_source {x} is not QCA_VOXEL_SIZE_CALLER/FILE"))),
    };
    let s = SegmentParams {
        voxel_size,
        voxel_size_source,
        fg_threshold: given(c.fg_threshold, "fg_threshold")?,
        centre_threshold: given(c.centre_threshold, "centre_threshold")?,
        markers,
        marker_sigma_um: given(c.marker_sigma_um, "marker_sigma_um")?,
        landscape,
        fill_holes,
        min_volume_um3: given(c.min_volume_um3, "min_volume_um3")?,
        connectivity,
        tile,
        overlap,
    };
    Ok((s, c))
}

/// A caller's voxels as the f32 the networks take: borrowed when they already are.
trait Voxels: Copy {
    fn as_f32(v: &[Self]) -> std::borrow::Cow<'_, [f32]>;
}
impl Voxels for f32 {
    fn as_f32(v: &[f32]) -> std::borrow::Cow<'_, [f32]> {
        std::borrow::Cow::Borrowed(v)
    }
}
impl Voxels for u16 {
    fn as_f32(v: &[u16]) -> std::borrow::Cow<'_, [f32]> {
        std::borrow::Cow::Owned(v.iter().map(|&a| a as f32).collect())
    }
}
impl Voxels for u8 {
    fn as_f32(v: &[u8]) -> std::borrow::Cow<'_, [f32]> {
        std::borrow::Cow::Owned(v.iter().map(|&a| a as f32).collect())
    }
}

/// The one segmentation path behind `qca_segment_u8/u16/f32`.
unsafe fn segment_typed<T: Voxels>(
    m: *const QcaModel,
    voxels: *const T,
    dims: *const usize,
    p: *const QcaSegmentParams,
    labels_out: *mut u32,
    n_nuclei: *mut u32,
) -> QcaStatus {
    guard(|| {
        let (d, n) = read_dims(dims)?;
        let m = m.as_ref().ok_or_else(|| null("model"))?;
        let vol = T::as_f32(slice(voxels, n, "voxels")?);
        non_null(labels_out, "labels_out")?;
        let (params, c) = segment_params(p)?;
        let progress = progress_of(&c);
        let timings_n = if c.timings.is_null() { None } else { Some(timings_size(c.timings)?) };
        let seg = m.inner.segment(&vol, d, &params, Some(&progress)).c()?;
        std::ptr::copy_nonoverlapping(seg.labels.as_ptr(), labels_out, n);
        if !n_nuclei.is_null() {
            *n_nuclei = seg.n_nuclei;
        }
        if let Some(tn) = timings_n {
            let mut full = QcaTimings::of(&seg.timings);
            full.struct_size = tn as u32;
            std::ptr::copy_nonoverlapping(&full as *const QcaTimings as *const u8, c.timings as *mut u8, tn);
        }
        Ok(())
    })
}

/// Segments a 16-bit volume of `dims[0] x dims[1] x dims[2]` (z, y, x) voxels.
/// `labels_out` (caller-allocated, same voxel count) receives 0 for background and
/// 1..N for nuclei; `*n_nuclei` (may be NULL) receives N. `p` may be NULL (defaults).
///
/// # Safety
/// `m` is a live model; `voxels` and `labels_out` hold `dims[0]*dims[1]*dims[2]`
/// elements; `dims` has 3 elements; `p` is NULL or filled by `qca_segment_params_default`.
#[no_mangle]
pub unsafe extern "C" fn qca_segment_u16(
    m: *const QcaModel,
    voxels: *const u16,
    dims: *const usize,
    p: *const QcaSegmentParams,
    labels_out: *mut u32,
    n_nuclei: *mut u32,
) -> QcaStatus {
    segment_typed(m, voxels, dims, p, labels_out, n_nuclei)
}

/// As `qca_segment_u16`, for 8-bit voxels.
///
/// # Safety
/// As `qca_segment_u16`.
#[no_mangle]
pub unsafe extern "C" fn qca_segment_u8(
    m: *const QcaModel,
    voxels: *const u8,
    dims: *const usize,
    p: *const QcaSegmentParams,
    labels_out: *mut u32,
    n_nuclei: *mut u32,
) -> QcaStatus {
    segment_typed(m, voxels, dims, p, labels_out, n_nuclei)
}

/// As `qca_segment_u16`, for float voxels (NaN or infinite values are an error).
///
/// # Safety
/// As `qca_segment_u16`.
#[no_mangle]
pub unsafe extern "C" fn qca_segment_f32(
    m: *const QcaModel,
    voxels: *const f32,
    dims: *const usize,
    p: *const QcaSegmentParams,
    labels_out: *mut u32,
    n_nuclei: *mut u32,
) -> QcaStatus {
    segment_typed(m, voxels, dims, p, labels_out, n_nuclei)
}

/// The plan `qca_segment_*` would run for a volume of `dims` under `p`, as one JSON object
/// (input and model grids with the voxel sizes and where the input's came from,
/// resampling, normalisation, tiles after every clamp, post-processing with every default
/// filled in), written into `buf` as `qca_model_describe` writes its text. An invalid
/// parameter fails here exactly as it would in `qca_segment_*`.
///
/// # Safety
/// `m` is a live model; `dims` has 3 elements; `p` is NULL or filled by
/// `qca_segment_params_default`; `buf` has `capacity` writable bytes (or is NULL with 0).
#[no_mangle]
pub unsafe extern "C" fn qca_plan_json(
    m: *const QcaModel,
    dims: *const usize,
    p: *const QcaSegmentParams,
    buf: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> QcaStatus {
    guard(|| {
        let m = m.as_ref().ok_or_else(|| null("model"))?;
        let (d, _) = read_dims(dims)?;
        let (params, _) = segment_params(p)?;
        let plan = m.inner.plan(d, &params).c()?;
        let json = serde_json::to_string(&plan).map_err(|e| (QCA_ERR_INTERNAL, e.to_string()))?;
        write_text(&json, buf, capacity, needed)
    })
}

/// The `QCA_*` value of a named choice, in the one vocabulary the CLI, model metadata,
/// Python and Fiji share: `option` is "device" (auto, cpu, cuda), "precision" (fp32,
/// tf32), "markers" (components, local-max), "landscape" (distance, centre) or
/// "connectivity" (6, 18, 26); older spellings (local_max, edt) are accepted.
///
/// # Safety
/// `option` and `name` are NUL-terminated; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_option_value(option: *const c_char, name: *const c_char, out: *mut i32) -> QcaStatus {
    guard(|| {
        let (option, name) = (str_arg(option, "option")?, str_arg(name, "name")?);
        non_null(out, "out")?;
        let v = match option {
            "device" => match name.parse::<Device>().c()? {
                Device::Auto => QCA_DEVICE_AUTO,
                Device::Cpu => QCA_DEVICE_CPU,
                Device::Cuda => QCA_DEVICE_CUDA,
            },
            "precision" => match name.parse::<Precision>().c()? {
                Precision::Fp32 => QCA_PRECISION_FP32,
                Precision::Tf32 => QCA_PRECISION_TF32,
                Precision::Int8 => QCA_PRECISION_INT8,
                Precision::Auto => QCA_PRECISION_AUTO,
            },
            "markers" => match name.parse::<MarkerMode>().c()? {
                MarkerMode::Components => QCA_MARKERS_COMPONENTS,
                MarkerMode::LocalMaxima => QCA_MARKERS_LOCAL_MAXIMA,
            },
            "landscape" => match name.parse::<Landscape>().c()? {
                Landscape::Distance => QCA_LANDSCAPE_DISTANCE,
                Landscape::Centre => QCA_LANDSCAPE_CENTRE,
            },
            "connectivity" => name.parse::<Connectivity>().c()?.neighbours(),
            _ => return Err(invalid(format!("option '{option}' is not device, precision, markers, landscape or connectivity"))),
        };
        *out = v;
        Ok(())
    })
}

/// Post-processing alone, for hosts with their own networks: NSN and NDN
/// probabilities (0..1) in, labels out. Fields "as the model's" take the one table of
/// defaults (README "Defaults": thresholds 0.5, QCANet's connected-component markers,
/// distance landscape, holes filled, 6-connected flood, no minimum volume); a voxel size
/// of 0 means 1 micrometre in each axis.
///
/// # Safety
/// Both probability arrays and `labels_out` hold `dims[0]*dims[1]*dims[2]` elements.
#[no_mangle]
pub unsafe extern "C" fn qca_postprocess_f32(
    nsn_prob: *const f32,
    ndn_prob: *const f32,
    dims: *const usize,
    p: *const QcaSegmentParams,
    labels_out: *mut u32,
    n_nuclei: *mut u32,
) -> QcaStatus {
    guard(|| {
        let (d, n) = read_dims(dims)?;
        let fg = slice(nsn_prob, n, "nsn_prob")?;
        let cen = slice(ndn_prob, n, "ndn_prob")?;
        non_null(labels_out, "labels_out")?;
        let (s, _) = segment_params(p)?;
        let pp = s.post_over(&PostParams::default());
        let vox = s.voxel_size.unwrap_or([1.0; 3]);
        let (lab, k) = crate::postprocess_probabilities(fg, cen, d, vox, &pp).c()?;
        std::ptr::copy_nonoverlapping(lab.as_ptr(), labels_out, n);
        if !n_nuclei.is_null() {
            *n_nuclei = k;
        }
        Ok(())
    })
}

/// Marker watershed alone: floods `landscape` from `markers` (0 = none) inside
/// `mask` (non-zero = inside), exactly as scikit-image's
/// `watershed(landscape, markers, mask=mask, connectivity=c)` with c = 1, 2, 3 for
/// `connectivity` 6, 18, 26.
///
/// # Safety
/// All arrays hold `dims[0]*dims[1]*dims[2]` elements.
#[no_mangle]
pub unsafe extern "C" fn qca_watershed_f64(
    landscape: *const f64,
    markers: *const u32,
    mask: *const u8,
    dims: *const usize,
    connectivity: i32,
    labels_out: *mut u32,
) -> QcaStatus {
    guard(|| {
        let (d, n) = read_dims(dims)?;
        let l = slice(landscape, n, "landscape")?;
        let mk = slice(markers, n, "markers")?;
        let ms: Vec<bool> = slice(mask, n, "mask")?.iter().map(|&v| v != 0).collect();
        non_null(labels_out, "labels_out")?;
        let conn = Connectivity::from_rank(connectivity).c()?;
        let out = crate::watershed::watershed(l, mk, &ms, d, conn).c()?;
        std::ptr::copy_nonoverlapping(out.as_ptr(), labels_out, n);
        Ok(())
    })
}

/// Euclidean distance transform: for each non-zero voxel of `mask`, the distance
/// (in the units of `spacing`, z, y, x) to the nearest zero voxel; 0 elsewhere. Equal
/// to `scipy.ndimage.distance_transform_edt(mask, sampling=spacing)` bit for bit (its
/// feature transform and rounding; checked on x86-64) wherever the mask has a zero
/// voxel. A mask without one gives infinity everywhere (scipy then gives the distance
/// to the point (-1, 0, 0), an artefact of its feature array).
///
/// # Safety
/// `mask` and `out` hold `dims[0]*dims[1]*dims[2]` elements; `spacing` has 3.
#[no_mangle]
pub unsafe extern "C" fn qca_edt_f64(mask: *const u8, dims: *const usize, spacing: *const f64, out: *mut f64) -> QcaStatus {
    guard(|| {
        let (d, n) = read_dims(dims)?;
        let ms: Vec<bool> = slice(mask, n, "mask")?.iter().map(|&v| v != 0).collect();
        let sp = slice(spacing, 3, "spacing")?;
        crate::plan::check_voxel_size([sp[0], sp[1], sp[2]], "spacing").c()?;
        non_null(out, "out")?;
        let e = crate::edt::edt(&ms, d, [sp[0], sp[1], sp[2]]);
        std::ptr::copy_nonoverlapping(e.as_ptr(), out, n);
        Ok(())
    })
}

/// Scores predicted labels against ground-truth labels (same dims) into `*out`.
///
/// # Safety
/// `pred` and `gt` hold `dims[0]*dims[1]*dims[2]` elements; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_evaluate(pred: *const u32, gt: *const u32, dims: *const usize, out: *mut QcaMetrics) -> QcaStatus {
    guard(|| {
        let (_, n) = read_dims(dims)?;
        let p = slice(pred, n, "pred")?;
        let g = slice(gt, n, "gt")?;
        non_null(out, "out")?;
        let m = crate::metrics::evaluate(p, g).c()?;
        *out = QcaMetrics::from(&m);
        Ok(())
    })
}

/// Measures every nucleus of a label volume: volume, centroid, bounding box and
/// (when `intensity` is not NULL) mean and total intensity. `voxel_size` (z, y, x
/// micrometres) may be NULL for 1, 1, 1. Free `*out` with `qca_measurements_free`.
///
/// # Safety
/// `labels` (and `intensity` if given) hold `dims[0]*dims[1]*dims[2]` elements.
#[no_mangle]
pub unsafe extern "C" fn qca_measure(
    labels: *const u32,
    intensity: *const f32,
    dims: *const usize,
    voxel_size: *const f64,
    out: *mut *mut QcaMeasurements,
) -> QcaStatus {
    guard(|| {
        let (d, n) = read_dims(dims)?;
        let l = slice(labels, n, "labels")?;
        let i = if intensity.is_null() { None } else { Some(slice(intensity, n, "intensity")?) };
        let v = if voxel_size.is_null() {
            [1.0; 3]
        } else {
            let s = slice(voxel_size, 3, "voxel_size")?;
            [s[0], s[1], s[2]]
        };
        non_null(out, "out")?;
        let nuc = crate::measure::measure(l, d, v, i).c()?;
        let nuclei = nuc.iter().map(QcaNucleus::from).collect();
        *out = Box::into_raw(Box::new(QcaMeasurements { nuclei }));
        Ok(())
    })
}

/// Number of nuclei in a measurement set (0 for NULL).
///
/// # Safety
/// `m` is NULL or a live measurement set.
#[no_mangle]
pub unsafe extern "C" fn qca_measurements_count(m: *const QcaMeasurements) -> usize {
    m.as_ref().map(|m| m.nuclei.len()).unwrap_or(0)
}

/// Copies nucleus `index` (0-based, in label order) into `*out`.
///
/// # Safety
/// `m` is a live measurement set; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_measurements_get(m: *const QcaMeasurements, index: usize, out: *mut QcaNucleus) -> QcaStatus {
    guard(|| {
        let m = m.as_ref().ok_or_else(|| null("measurements"))?;
        non_null(out, "out")?;
        let n = m.nuclei.get(index).ok_or_else(|| invalid(format!("index {index} out of range ({} nuclei)", m.nuclei.len())))?;
        *out = *n;
        Ok(())
    })
}

/// Frees a measurement set from `qca_measure`. NULL is fine.
///
/// # Safety
/// `m` is NULL or a measurement set not yet freed.
#[no_mangle]
pub unsafe extern "C" fn qca_measurements_free(m: *mut QcaMeasurements) {
    if !m.is_null() {
        drop(Box::from_raw(m));
    }
}

/// Reads a TIFF stack (8/16/32-bit, uncompressed/LZW/Deflate, ImageJ metadata).
/// Free `*out` with `qca_image_free`.
///
/// # Safety
/// `path` is NUL-terminated; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_image_read(path: *const c_char, out: *mut *mut QcaImage) -> QcaStatus {
    guard(|| {
        let p = path_arg(path, "path")?;
        non_null(out, "out")?;
        let stack = tiff::read(p).c()?;
        *out = Box::into_raw(Box::new(QcaImage { stack }));
        Ok(())
    })
}

/// Describes an image into `*info` (set `info->struct_size` first).
///
/// # Safety
/// `img` is a live image; `info` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_image_info(img: *const QcaImage, info: *mut QcaImageInfo) -> QcaStatus {
    guard(|| {
        let s = &img.as_ref().ok_or_else(|| null("image"))?.stack;
        non_null(info, "info")?;
        let size = (*info).struct_size as usize;
        if size < 4 {
            return Err(invalid("info->struct_size must be set to sizeof(QcaImageInfo)".into()));
        }
        let vs = s.voxel_size_um();
        let full = QcaImageInfo {
            struct_size: std::mem::size_of::<QcaImageInfo>().min(size) as u32,
            sample_type: match s.samples {
                Samples::U8(_) => QCA_SAMPLE_U8,
                Samples::U16(_) => QCA_SAMPLE_U16,
                Samples::U32(_) => QCA_SAMPLE_U32,
                Samples::F32(_) => QCA_SAMPLE_F32,
            },
            dims: s.dims,
            channels: s.channels as u32,
            frames: s.frames as u32,
            has_voxel_size: vs.is_some() as i32,
            voxel_size_um: vs.unwrap_or([0.0; 3]),
            page_strides: {
                let st = crate::io::tiff::PageStrides::imagej(s.dims[0], s.channels);
                [st.t, st.z, st.c]
            },
        };
        let n = size.min(std::mem::size_of::<QcaImageInfo>());
        std::ptr::copy_nonoverlapping(&full as *const QcaImageInfo as *const u8, info as *mut u8, n);
        Ok(())
    })
}

fn image_info_fields() -> [(usize, usize); 8] {
    field_spans!(QcaImageInfo: struct_size, sample_type, dims, channels, frames, has_voxel_size, voxel_size_um, page_strides)
}

/// Describes the stack in file `path` (a TIFF, BigTIFF or OME-TIFF, or an OME-Zarr image)
/// from its header alone, without reading its voxels (what `qca_segment_file` will see):
/// `dims` of one volume, `channels`, `frames` and the calibration. `sample_type` is 0 (the
/// header alone does not always say; `qca_image_info` of a read image does). Set
/// `info->struct_size` first; on failure `*info` is untouched.
///
/// # Safety
/// `path` is NUL-terminated; `info` points to `info->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn qca_file_info(path: *const c_char, info: *mut QcaImageInfo) -> QcaStatus {
    guard(|| {
        let p = path_arg(path, "path")?;
        non_null(info, "info")?;
        let n = out_size(info, &image_info_fields(), "info", "QcaImageInfo")?;
        let f = crate::files::FileInput::open(p).c()?;
        let count = |n: usize, what: &str| u32::try_from(n).map_err(|_| invalid(format!("{}: {n} {what}", p.display())));
        let vs = f.voxel_size_um();
        let full = QcaImageInfo {
            struct_size: n as u32,
            sample_type: 0,
            dims: f.dims(),
            channels: count(f.channels(), "channels")?,
            frames: count(f.frames(), "frames")?,
            has_voxel_size: vs.is_some() as i32,
            voxel_size_um: vs.unwrap_or([0.0; 3]),
            page_strides: match &f {
                crate::files::FileInput::Tiff(i) => [i.strides.t, i.strides.z, i.strides.c],
                crate::files::FileInput::Zarr(_) => [0; 3],
            },
        };
        std::ptr::copy_nonoverlapping(&full as *const QcaImageInfo as *const u8, info as *mut u8, n);
        Ok(())
    })
}

/// Copies one volume (frame `frame`, channel `channel`) as float into `out`
/// (`dims[0]*dims[1]*dims[2]` elements from `qca_image_info`).
///
/// # Safety
/// `img` is live; `out` has room for one volume.
#[no_mangle]
pub unsafe extern "C" fn qca_image_volume_f32(img: *const QcaImage, frame: u32, channel: u32, out: *mut f32) -> QcaStatus {
    guard(|| {
        let s = &img.as_ref().ok_or_else(|| null("image"))?.stack;
        non_null(out, "out")?;
        let v = s.volume(frame as usize, channel as usize).c()?.to_f32();
        std::ptr::copy_nonoverlapping(v.as_ptr(), out, v.len());
        Ok(())
    })
}

/// Frees an image from `qca_image_read`. NULL is fine.
///
/// # Safety
/// `img` is NULL or an image not yet freed.
#[no_mangle]
pub unsafe extern "C" fn qca_image_free(img: *mut QcaImage) {
    if !img.is_null() {
        drop(Box::from_raw(img));
    }
}

/// Writes `frames` label volumes of `dims` as a 16-bit TIFF (32-bit when a label
/// exceeds 65535) with ImageJ calibration (`voxel_size` z, y, x micrometres, or NULL).
/// The file appears complete or not at all.
///
/// # Safety
/// `labels` holds `frames*dims[0]*dims[1]*dims[2]` elements.
#[no_mangle]
pub unsafe extern "C" fn qca_labels_write(
    path: *const c_char,
    labels: *const u32,
    dims: *const usize,
    frames: u32,
    voxel_size: *const f64,
) -> QcaStatus {
    guard(|| {
        let p = path_arg(path, "path")?;
        let (d, n) = read_dims(dims)?;
        if frames == 0 {
            return Err(invalid("frames must be >= 1".into()));
        }
        let total = n.checked_mul(frames as usize).ok_or_else(|| invalid("size overflows".into()))?;
        let l = slice(labels, total, "labels")?;
        let v = if voxel_size.is_null() {
            None
        } else {
            let s = slice(voxel_size, 3, "voxel_size")?;
            Some([s[0], s[1], s[2]])
        };
        tiff::write_labels(p, l, d, frames as usize, v).c()
    })
}

// ---------------------------------------------------------------------------------------
// Time lapses: follow nuclei through frames (`crate::timelapse`)
// ---------------------------------------------------------------------------------------

/// Linking parameters. Fill with `qca_track_params_default(&p, sizeof p)` first (the
/// defaults suit BBBC050-like embryos; README "Time lapses").
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QcaTrackParams {
    /// `sizeof(QcaTrackParams)` as the caller knows it.
    pub struct_size: u32,
    /// Frames a nucleus may be missing and still be followed (0 = no gap closing).
    pub max_gap: u32,
    /// Farthest a nucleus moves between consecutive frames, micrometres.
    pub max_displacement_um: f64,
    /// Farthest each daughter lies from her mother, micrometres (0 = no divisions).
    pub division_max_distance_um: f64,
    /// Allowed (daughter volumes summed) / (mother volume): least...
    pub division_volume_min: f64,
    /// ...and most.
    pub division_volume_max: f64,
    /// How much voxel overlap lowers a link's cost, 0..1.
    pub overlap_weight: f64,
}

fn default_track_params() -> QcaTrackParams {
    let d = crate::track::TrackParams::default();
    QcaTrackParams {
        struct_size: std::mem::size_of::<QcaTrackParams>() as u32,
        max_gap: d.max_gap as u32,
        max_displacement_um: d.max_displacement_um,
        division_max_distance_um: d.division_max_distance_um,
        division_volume_min: d.division_volume_ratio.0,
        division_volume_max: d.division_volume_ratio.1,
        overlap_weight: d.overlap_weight,
    }
}

fn track_params_fields() -> [(usize, usize); 7] {
    field_spans!(QcaTrackParams: struct_size, max_gap, max_displacement_um, division_max_distance_um,
        division_volume_min, division_volume_max, overlap_weight)
}

/// One track (CTC `L B E P`): a nucleus present from frame `start` to `end` inclusive;
/// `parent` is the mother's track, or the track before a bridged gap; 0 for none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaTrack {
    pub id: u32,
    pub parent: u32,
    pub start: u64,
    pub end: u64,
}

/// A division: `daughters` begin at `frame`, `parent` ended the frame before.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaDivision {
    pub frame: u64,
    pub parent: u32,
    pub daughters: [u32; 2],
}

/// One nucleus in one frame of a track (a row of the tracks table).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaTrackPoint {
    pub track: u32,
    /// Its label in the frame's segmentation.
    pub label: u32,
    pub frame: u64,
    pub parent: u32,
    /// Centroid z, y, x in micrometres.
    pub centroid_um: [f64; 3],
    pub volume_um3: f64,
    pub surface_um2: f64,
    pub mean_intensity: f64,
}

/// The criteria of one frame. NaN marks what is undefined (the time without an interval,
/// the nearest-neighbour distance under two nuclei).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaFrameCriteria {
    pub frame: u64,
    pub nuclei: u64,
    pub divisions: u64,
    pub time: f64,
    pub volume_um3_sum: f64,
    pub volume_um3_mean: f64,
    pub volume_um3_sd: f64,
    pub surface_um2_sum: f64,
    pub surface_um2_mean: f64,
    pub surface_um2_sd: f64,
    pub sphericity_mean: f64,
    pub mean_intensity: f64,
    pub nearest_neighbour_um_mean: f64,
}

/// The n-th round of divisions and its synchrony (`spread_frames` = last - first).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaDivisionRound {
    pub round: u64,
    pub divisions: u64,
    pub first_frame: u64,
    pub last_frame: u64,
    pub spread_frames: u64,
    pub mean_frame: f64,
    pub sd_frames: f64,
}

/// A time lapse being measured. Create with `qca_track_new`, add frames with
/// `qca_track_add_frame`, link with `qca_track_link`; free with `qca_track_free`.
/// Only the last frame's labels are kept, with a few hundred bytes per nucleus.
pub struct QcaTracker {
    inner: crate::timelapse::TimeLapse,
}

/// Tracks, divisions, criteria and division rounds of a linked time lapse. Create with
/// `qca_track_link`; free with `qca_tracking_free`. Read with the `qca_tracking_*` calls.
pub struct QcaTracking {
    tracks: Vec<QcaTrack>,
    divisions: Vec<QcaDivision>,
    points: Vec<QcaTrackPoint>,
    criteria: Vec<QcaFrameCriteria>,
    rounds: Vec<QcaDivisionRound>,
    inner: crate::track::Tracking,
}

/// Fills `p` (`struct_size` = `sizeof *p` bytes as the caller knows it) with the default
/// linking parameters.
///
/// # Safety
/// `p` is NULL or points to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn qca_track_params_default(p: *mut QcaTrackParams, struct_size: usize) -> QcaStatus {
    guard(|| write_versioned(p, struct_size, default_track_params(), &track_params_fields(), "QcaTrackParams"))
}

/// Starts a time lapse on a grid of `voxel_size` (z, y, x micrometres; required: tracking
/// measures distances in micrometres). Free `*out` with `qca_track_free`.
///
/// # Safety
/// `voxel_size` has 3 elements; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_track_new(voxel_size: *const f64, out: *mut *mut QcaTracker) -> QcaStatus {
    guard(|| {
        let v = slice(voxel_size, 3, "voxel_size")?;
        non_null(out, "out")?;
        let inner = crate::timelapse::TimeLapse::new([v[0], v[1], v[2]], 0).c()?;
        *out = Box::into_raw(Box::new(QcaTracker { inner }));
        Ok(())
    })
}

/// Adds the next frame (numbered 0, 1, ... in the order added): its labels (0 =
/// background) and, when `intensity` is not NULL, its intensities for the mean intensity.
/// Every frame has the first one's dims. On failure the tracker is unchanged.
///
/// # Safety
/// `t` is a live tracker; `labels` (and `intensity` if given) hold
/// `dims[0]*dims[1]*dims[2]` elements.
#[no_mangle]
pub unsafe extern "C" fn qca_track_add_frame(
    t: *mut QcaTracker,
    labels: *const u32,
    intensity: *const f32,
    dims: *const usize,
) -> QcaStatus {
    guard(|| {
        let t = t.as_mut().ok_or_else(|| null("tracker"))?;
        let (d, n) = read_dims(dims)?;
        let l = slice(labels, n, "labels")?;
        let i = if intensity.is_null() { None } else { Some(slice(intensity, n, "intensity")?) };
        t.inner.add_frame(l, d, i).c()
    })
}

/// Frames added so far (0 for NULL).
///
/// # Safety
/// `t` is NULL or a live tracker.
#[no_mangle]
pub unsafe extern "C" fn qca_track_frame_count(t: *const QcaTracker) -> usize {
    t.as_ref().map_or(0, |t| t.inner.len())
}

/// Links the frames added so far (the tracker stays usable: more frames may follow and
/// be linked again). `p` NULL means the defaults; `interval` is the time between frames
/// for the criteria's `time` (any unit), 0 when unknown. Free `*out` with `qca_tracking_free`.
///
/// # Safety
/// `t` is a live tracker; `p` is NULL or filled by `qca_track_params_default`; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_track_link(
    t: *const QcaTracker,
    p: *const QcaTrackParams,
    interval: f64,
    out: *mut *mut QcaTracking,
) -> QcaStatus {
    guard(|| {
        let t = t.as_ref().ok_or_else(|| null("tracker"))?;
        non_null(out, "out")?;
        let q = if p.is_null() {
            default_track_params()
        } else {
            read_versioned(p, default_track_params(), &track_params_fields(), "QcaTrackParams")?
        };
        let params = crate::track::TrackParams {
            max_displacement_um: q.max_displacement_um,
            max_gap: q.max_gap as usize,
            division_max_distance_um: q.division_max_distance_um,
            division_volume_ratio: (q.division_volume_min, q.division_volume_max),
            overlap_weight: q.overlap_weight,
        };
        let interval = if interval == 0.0 { None } else { Some(interval) };
        let a = t.inner.analyse(&params, interval).c()?;
        let tracking = QcaTracking {
            tracks: a
                .tracking
                .tracks
                .iter()
                .map(|x| QcaTrack { id: x.id, parent: x.parent, start: x.start as u64, end: x.end as u64 })
                .collect(),
            divisions: a
                .tracking
                .divisions()
                .iter()
                .map(|d| QcaDivision { frame: d.frame as u64, parent: d.parent, daughters: d.daughters })
                .collect(),
            points: a
                .points
                .iter()
                .map(|x| QcaTrackPoint {
                    track: x.track,
                    label: x.label,
                    frame: x.frame as u64,
                    parent: x.parent,
                    centroid_um: x.centroid_um,
                    volume_um3: x.volume_um3,
                    surface_um2: x.surface_um2,
                    mean_intensity: x.mean_intensity,
                })
                .collect(),
            criteria: a
                .criteria
                .iter()
                .map(|c| QcaFrameCriteria {
                    frame: c.frame as u64,
                    nuclei: c.nuclei as u64,
                    divisions: c.divisions as u64,
                    time: c.time.unwrap_or(f64::NAN),
                    volume_um3_sum: c.volume_um3_sum,
                    volume_um3_mean: c.volume_um3_mean,
                    volume_um3_sd: c.volume_um3_sd,
                    surface_um2_sum: c.surface_um2_sum,
                    surface_um2_mean: c.surface_um2_mean,
                    surface_um2_sd: c.surface_um2_sd,
                    sphericity_mean: c.sphericity_mean,
                    mean_intensity: c.mean_intensity,
                    nearest_neighbour_um_mean: c.nearest_neighbour_um_mean,
                })
                .collect(),
            rounds: a
                .rounds
                .iter()
                .map(|r| QcaDivisionRound {
                    round: r.round as u64,
                    divisions: r.divisions as u64,
                    first_frame: r.first_frame as u64,
                    last_frame: r.last_frame as u64,
                    spread_frames: r.spread_frames as u64,
                    mean_frame: r.mean_frame,
                    sd_frames: r.sd_frames,
                })
                .collect(),
            inner: a.tracking,
        };
        *out = Box::into_raw(Box::new(tracking));
        Ok(())
    })
}

/// Frees a tracker from `qca_track_new`. NULL is fine.
///
/// # Safety
/// `t` is NULL or a tracker not yet freed.
#[no_mangle]
pub unsafe extern "C" fn qca_track_free(t: *mut QcaTracker) {
    if !t.is_null() {
        drop(Box::from_raw(t));
    }
}

/// What `qca_tracking_count` and `qca_tracking_get` read.
pub const QCA_TABLE_TRACKS: i32 = 1;
/// `QcaDivision` rows.
pub const QCA_TABLE_DIVISIONS: i32 = 2;
/// `QcaTrackPoint` rows (by track, then frame).
pub const QCA_TABLE_POINTS: i32 = 3;
/// `QcaFrameCriteria` rows (by frame).
pub const QCA_TABLE_CRITERIA: i32 = 4;
/// `QcaDivisionRound` rows (by round).
pub const QCA_TABLE_ROUNDS: i32 = 5;

/// Rows of one table of a tracking result (`QCA_TABLE_*`); 0 for NULL or another table.
///
/// # Safety
/// `r` is NULL or a live tracking result.
#[no_mangle]
pub unsafe extern "C" fn qca_tracking_count(r: *const QcaTracking, table: i32) -> usize {
    let Some(r) = r.as_ref() else { return 0 };
    match table {
        QCA_TABLE_TRACKS => r.tracks.len(),
        QCA_TABLE_DIVISIONS => r.divisions.len(),
        QCA_TABLE_POINTS => r.points.len(),
        QCA_TABLE_CRITERIA => r.criteria.len(),
        QCA_TABLE_ROUNDS => r.rounds.len(),
        _ => 0,
    }
}

/// Copies row `index` of `table` into `*out`, whose type the table names (`QcaTrack`,
/// `QcaDivision`, `QcaTrackPoint`, `QcaFrameCriteria`, `QcaDivisionRound`) and whose size
/// the caller passes as `out_size` (`sizeof *out`), checked against this library's.
///
/// # Safety
/// `r` is a live tracking result; `out` has `out_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn qca_tracking_get(r: *const QcaTracking, table: i32, index: usize, out: *mut c_void, out_size: usize) -> QcaStatus {
    guard(|| {
        let r = r.as_ref().ok_or_else(|| null("tracking"))?;
        non_null(out, "out")?;
        unsafe fn row<T: Copy>(
            rows: &[T],
            index: usize,
            out: *mut c_void,
            out_size: usize,
            name: &str,
        ) -> std::result::Result<(), (QcaStatus, String)> {
            if out_size != std::mem::size_of::<T>() {
                return Err(invalid(format!("out_size {out_size} is not sizeof({name}) = {}", std::mem::size_of::<T>())));
            }
            let v = rows.get(index).ok_or_else(|| invalid(format!("index {index} out of range ({} rows)", rows.len())))?;
            std::ptr::write_unaligned(out as *mut T, *v);
            Ok(())
        }
        match table {
            QCA_TABLE_TRACKS => row(&r.tracks, index, out, out_size, "QcaTrack"),
            QCA_TABLE_DIVISIONS => row(&r.divisions, index, out, out_size, "QcaDivision"),
            QCA_TABLE_POINTS => row(&r.points, index, out, out_size, "QcaTrackPoint"),
            QCA_TABLE_CRITERIA => row(&r.criteria, index, out, out_size, "QcaFrameCriteria"),
            QCA_TABLE_ROUNDS => row(&r.rounds, index, out, out_size, "QcaDivisionRound"),
            _ => Err(invalid(format!("table {table} is not a QCA_TABLE_* value"))),
        }
    })
}

/// Rewrites frame `frame`'s segmentation labels, in place, as track ids (labels the
/// tracking does not know become 0): the frame's CTC label volume.
///
/// # Safety
/// `r` is a live tracking result; `labels` holds `dims[0]*dims[1]*dims[2]` elements.
#[no_mangle]
pub unsafe extern "C" fn qca_tracking_relabel(r: *const QcaTracking, frame: usize, labels: *mut u32, dims: *const usize) -> QcaStatus {
    guard(|| {
        let r = r.as_ref().ok_or_else(|| null("tracking"))?;
        let (_, n) = read_dims(dims)?;
        non_null(labels, "labels")?;
        let l = std::slice::from_raw_parts_mut(labels, n);
        r.inner.relabel(frame, l).c()
    })
}

/// Frees a tracking result from `qca_track_link`. NULL is fine.
///
/// # Safety
/// `r` is NULL or a tracking result not yet freed.
#[no_mangle]
pub unsafe extern "C" fn qca_tracking_free(r: *mut QcaTracking) {
    if !r.is_null() {
        drop(Box::from_raw(r));
    }
}

// ---------------------------------------------------------------------------------------
// Block jobs: one OME-Zarr segmented block by block by many processes (`crate::job`)
// ---------------------------------------------------------------------------------------

/// How a job cuts a volume into blocks. Fill with `qca_block_options_default(&o, sizeof o)`;
/// a zero edge (or a zero `block_voxels`) means "chosen by qcanet".
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QcaBlockOptions {
    /// `sizeof(QcaBlockOptions)` as the caller knows it.
    pub struct_size: u32,
    /// Core of a block (z, y, x input voxels), rounded down to whole chunks of the image (at least one chunk);
    /// all 0: from `block_voxels`.
    pub core: [usize; 3],
    /// Halo on each side of a core (z, y, x input voxels); all 0: the radius of the largest
    /// nucleus plus the markers' reach (the networks run on the frame's own tiles); on a
    /// grid the model resamples, also the networks' measured context.
    pub halo: [usize; 3],
    /// Voxels of a block with its halo when the core is chosen by qcanet; 0: the default
    /// (about 1 GB of memory at the peak of a block).
    pub block_voxels: usize,
    /// Diameter of the largest nucleus (micrometres), for the halo.
    pub max_nucleus_um: f64,
}

fn default_block_options() -> QcaBlockOptions {
    QcaBlockOptions {
        struct_size: std::mem::size_of::<QcaBlockOptions>() as u32,
        core: [0; 3],
        halo: [0; 3],
        block_voxels: 0,
        max_nucleus_um: crate::blocks::DEFAULT_MAX_NUCLEUS_UM,
    }
}

fn block_options_fields() -> [(usize, usize); 5] {
    field_spans!(QcaBlockOptions: struct_size, core, halo, block_voxels, max_nucleus_um)
}

unsafe fn block_options(o: *const QcaBlockOptions) -> std::result::Result<crate::blocks::BlockOptions, (QcaStatus, String)> {
    let d = default_block_options();
    let o = if o.is_null() { d } else { read_versioned(o, d, &block_options_fields(), "QcaBlockOptions")? };
    let given = |v: [usize; 3], what: &str| -> std::result::Result<Option<[usize; 3]>, (QcaStatus, String)> {
        match v {
            [0, 0, 0] => Ok(None),
            v if v.contains(&0) => Err(invalid(format!("{what} {v:?}: give every edge, or all 0 for automatic"))),
            v => Ok(Some(v)),
        }
    };
    Ok(crate::blocks::BlockOptions {
        core: given(o.core, "core")?,
        halo: given(o.halo, "halo")?,
        block_voxels: (o.block_voxels != 0).then_some(o.block_voxels),
        max_nucleus_um: Some(o.max_nucleus_um),
    })
}

/// Fills `o` (`struct_size` = `sizeof *o` bytes as the caller knows it) with the defaults:
/// blocks and halo chosen by qcanet, nuclei up to 24 um across.
///
/// # Safety
/// `o` is NULL or points to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn qca_block_options_default(o: *mut QcaBlockOptions, struct_size: usize) -> QcaStatus {
    guard(|| write_versioned(o, struct_size, default_block_options(), &block_options_fields(), "QcaBlockOptions"))
}

/// A block job opened by this process (see `qca_job_create`).
pub struct QcaJob {
    /// `None` once finished.
    inner: Option<crate::job::Job>,
}

unsafe fn job_ref<'a>(j: *const QcaJob) -> std::result::Result<&'a crate::job::Job, (QcaStatus, String)> {
    let j = j.as_ref().ok_or_else(|| null("job"))?;
    j.inner.as_ref().ok_or_else(|| invalid("the job is finished".into()))
}

unsafe fn block_index(index: *const usize) -> std::result::Result<[usize; 3], (QcaStatus, String)> {
    let i = slice(index, 3, "index")?;
    Ok([i[0], i[1], i[2]])
}

/// Starts (or resumes) a job that segments the OME-Zarr image `source` block by block
/// into a new OME-Zarr at `target`, or, with `target` NULL, into `source/labels/<labels_name>`.
/// The job lives in a folder beside the target (`qca_job_path`) that any process may open
/// with `qca_job_open` to run steps: for every frame t `qca_job_scale`, then
/// `qca_job_segment_block` for every block, then `qca_job_stitch`; then once
/// `qca_job_prepare_output`, `qca_job_write_block` for every frame and block, and
/// `qca_job_finish`. Each step may run again after a failure; a block already segmented is
/// skipped. A folder holding the same job is resumed; one holding another job is an error.
/// `p` and `o` may be NULL (defaults). Free `*out` with `qca_job_free`.
///
/// # Safety
/// `model` is a live model; `source` is NUL-terminated; `target` and `labels_name` are
/// NULL or NUL-terminated; `p`, `o` are NULL or filled by their `_default` functions;
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_job_create(
    model: *const QcaModel,
    source: *const c_char,
    target: *const c_char,
    labels_name: *const c_char,
    channel: u32,
    p: *const QcaSegmentParams,
    o: *const QcaBlockOptions,
    out: *mut *mut QcaJob,
) -> QcaStatus {
    guard(|| {
        let m = model.as_ref().ok_or_else(|| null("model"))?;
        non_null(out, "out")?;
        let source = path_arg(source, "source")?;
        let target = match (target.is_null(), labels_name.is_null()) {
            (false, true) => crate::job::JobTarget::NewImage { path: path_arg(target, "target")?.to_path_buf() },
            (true, false) => crate::job::JobTarget::IntoInput { name: str_arg(labels_name, "labels_name")?.to_string() },
            _ => return Err(invalid("give either target (a new OME-Zarr) or labels_name (labels into the input), not both".into())),
        };
        let (params, _) = if p.is_null() { (SegmentParams::default(), default_params()) } else { segment_params(p)? };
        let opts = block_options(o)?;
        let job = crate::job::Job::create(&m.inner, source, target, channel as usize, &params, &opts).c()?;
        *out = Box::into_raw(Box::new(QcaJob { inner: Some(job) }));
        Ok(())
    })
}

/// Opens the job in folder `dir` (`qca_job_path` of the process that created it).
/// Free `*out` with `qca_job_free`.
///
/// # Safety
/// `dir` is NUL-terminated; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn qca_job_open(dir: *const c_char, out: *mut *mut QcaJob) -> QcaStatus {
    guard(|| {
        non_null(out, "out")?;
        let job = crate::job::Job::open(path_arg(dir, "dir")?).c()?;
        *out = Box::into_raw(Box::new(QcaJob { inner: Some(job) }));
        Ok(())
    })
}

/// The job's frames and block grid: `dims` of a frame, block `core` and `halo` (z, y, x
/// voxels) and the `count` of blocks along z, y, x. Every pointer is required (3 elements
/// each but `frames`).
///
/// # Safety
/// `job` is a live job; the pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn qca_job_grid(
    job: *const QcaJob,
    frames: *mut usize,
    dims: *mut usize,
    core: *mut usize,
    halo: *mut usize,
    count: *mut usize,
) -> QcaStatus {
    guard(|| {
        let j = job_ref(job)?;
        for (p, what) in [(frames, "frames"), (dims, "dims"), (core, "core"), (halo, "halo"), (count, "count")] {
            non_null(p, what)?;
        }
        let s = j.spec();
        *frames = s.frames;
        for k in 0..3 {
            *dims.add(k) = s.grid.dims[k];
            *core.add(k) = s.grid.core[k];
            *halo.add(k) = s.grid.halo[k];
            *count.add(k) = s.grid.count[k];
        }
        Ok(())
    })
}

/// The job's folder (`which` 0) or where its labels will be (`which` 1), as text written
/// into `buf` (NUL-terminated, cut to `capacity`); `*needed` (may be NULL) gets the full
/// length + 1.
///
/// # Safety
/// `job` is a live job; `buf` has `capacity` writable bytes (or is NULL with capacity 0).
#[no_mangle]
pub unsafe extern "C" fn qca_job_path(job: *const QcaJob, which: i32, buf: *mut c_char, capacity: usize, needed: *mut usize) -> QcaStatus {
    guard(|| {
        let j = job_ref(job)?;
        let p = match which {
            0 => j.dir().to_path_buf(),
            1 => j.target_path().c()?,
            x => return Err(invalid(format!("which {x}: 0 (the job folder) or 1 (the target)"))),
        };
        let text = p.to_str().ok_or_else(|| invalid(format!("{} is not UTF-8", p.display())))?;
        write_text(text, buf, capacity, needed)
    })
}

/// Step 1, per frame: frame `t`'s intensity scaling, from the whole frame (once).
///
/// # Safety
/// `job` and `model` are live.
#[no_mangle]
pub unsafe extern "C" fn qca_job_scale(job: *const QcaJob, model: *const QcaModel, t: usize) -> QcaStatus {
    guard(|| {
        let m = model.as_ref().ok_or_else(|| null("model"))?;
        job_ref(job)?.scale(&m.inner, t).c().map(|_| ())
    })
}

/// Step 2, per block: segments block `index` (z, y, x) of frame `t`. `*skipped` (may be
/// NULL) is 1 when the block was done already and nothing was computed, else 0.
///
/// # Safety
/// `job` and `model` are live; `index` has 3 elements; `skipped` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn qca_job_segment_block(
    job: *const QcaJob,
    model: *const QcaModel,
    t: usize,
    index: *const usize,
    skipped: *mut i32,
) -> QcaStatus {
    guard(|| {
        let m = model.as_ref().ok_or_else(|| null("model"))?;
        let j = job_ref(job)?;
        let done = j.segment_block(&m.inner, t, block_index(index)?).c()?;
        if !skipped.is_null() {
            *skipped = done.skipped as i32;
        }
        Ok(())
    })
}

/// Step 3, per frame: joins frame `t`'s pieces across block faces (every block done);
/// `*n_nuclei` (may be NULL) gets its number of nuclei.
///
/// # Safety
/// `job` is live; `n_nuclei` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn qca_job_stitch(job: *const QcaJob, t: usize, n_nuclei: *mut u32) -> QcaStatus {
    guard(|| {
        let n = job_ref(job)?.stitch(t).c()?;
        if !n_nuclei.is_null() {
            *n_nuclei = n;
        }
        Ok(())
    })
}

/// Step 4, once: creates the label image (every frame stitched).
///
/// # Safety
/// `job` is live.
#[no_mangle]
pub unsafe extern "C" fn qca_job_prepare_output(job: *const QcaJob) -> QcaStatus {
    guard(|| job_ref(job)?.prepare_output().c())
}

/// Step 5, per frame and block: writes block `index`'s final labels into the label image.
///
/// # Safety
/// `job` is live; `index` has 3 elements.
#[no_mangle]
pub unsafe extern "C" fn qca_job_write_block(job: *const QcaJob, t: usize, index: *const usize) -> QcaStatus {
    guard(|| job_ref(job)?.write_block(t, block_index(index)?).c())
}

/// Step 6, once: writes the label image's other levels, moves it to the target and removes
/// the job folder. The handle is then finished: free it with `qca_job_free`.
///
/// # Safety
/// `job` is a live job no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn qca_job_finish(job: *mut QcaJob) -> QcaStatus {
    guard(|| {
        let j = job.as_mut().ok_or_else(|| null("job"))?;
        let inner = j.inner.take().ok_or_else(|| invalid("the job is finished".into()))?;
        let dir = inner.dir().to_path_buf();
        match inner.finish() {
            Ok(_) => Ok(()),
            Err(e) => {
                // still there to retry
                j.inner = crate::job::Job::open(&dir).ok();
                Err(e).c()
            }
        }
    })
}

/// Frees a job handle (the job's folder stays). NULL is fine.
///
/// # Safety
/// `job` is NULL or a job not yet freed, and no other thread is using it.
#[no_mangle]
pub unsafe extern "C" fn qca_job_free(job: *mut QcaJob) {
    if !job.is_null() {
        let _ = crate::quiet_panic::catch(|| drop(Box::from_raw(job)));
    }
}

// ---------------------------------------------------------------------------------------
// A file segmented into a file, block by block (`crate::files`)
// ---------------------------------------------------------------------------------------

/// `qca_segment_file` flag: the whole volume as one block (memory grows with the volume);
/// without it, volumes over 32 M voxels (or too large to read whole) and OME-Zarr images
/// of any size go block by block, as `QcaBlockOptions` says.
pub const QCA_FILE_WHOLE: u32 = 1;
/// `qca_segment_file` flag: also write the nuclei's measurements (`qca_measure`'s columns,
/// with a `frame` column) to NAME.csv beside the labels (beside the input image for labels
/// written into it).
pub const QCA_FILE_MEASURE: u32 = 2;

/// What `qca_segment_file` did. Set `struct_size` to `sizeof(QcaFileReport)` before the call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QcaFileReport {
    /// `sizeof(QcaFileReport)` as the caller knows it.
    pub struct_size: u32,
    /// Frames segmented.
    pub frames: usize,
    /// Nuclei over all frames.
    pub nuclei_total: u64,
    /// Voxels over all frames.
    pub voxels: u64,
    /// Blocks per frame, their core and halo (z, y, x voxels).
    pub blocks: usize,
    pub core: [usize; 3],
    pub halo: [usize; 3],
    /// Seconds, summed over frames: reading, networks (with normalisation), post-processing,
    /// stitching; writing the labels (and measurements); the whole call.
    pub read_s: f64,
    pub network_s: f64,
    pub post_s: f64,
    pub stitch_s: f64,
    pub write_s: f64,
    pub wall_s: f64,
}

fn file_report_fields() -> [(usize, usize); 13] {
    field_spans!(QcaFileReport: struct_size, frames, nuclei_total, voxels, blocks, core, halo, read_s, network_s, post_s, stitch_s, write_s, wall_s)
}

/// Segments the stack in file `input` (TIFF, BigTIFF, OME-TIFF, or an OME-Zarr image, NGFF
/// 0.4 or 0.5; every frame of a time series) into labels on disk, block by block, in memory
/// bounded by the block: to the new file `output` (a TIFF, BigTIFF when large; or for an
/// OME-Zarr input a new OME-Zarr when `output` ends in `.zarr`, its labels as NGFF asks), or,
/// with `output` NULL, into the OME-Zarr input's `labels/<labels_name>`. The same code as
/// `qcanet segment` (README "Large volumes"); the labels equal the whole volume's on at least
/// 99.5 % of the foreground, exactly with `QCA_FILE_WHOLE`.
///
/// Refused before any work: an output that is the input (or the measurements' CSV that
/// would be), a new label image where one exists, OME-Zarr labels for a TIFF, a channel the
/// file does not have. The labels are written under a temporary name and renamed when
/// complete: a failed or cancelled call leaves no output and removes its scratch files.
///
/// `channel`: the channel holding the nuclei. `flags`: `QCA_FILE_WHOLE`, `QCA_FILE_MEASURE`
/// or 0. `p` (NULL: defaults) gives the parameters; its voxel size, when set, wins over the
/// file's; its progress callback (fraction of the whole file) may cancel; its `timings` must
/// be NULL (the times are in `report`). `o` (NULL: defaults) gives the blocks' core, halo,
/// size budget and largest nucleus. On success `nuclei[0..min(capacity, frames)]` (NULL
/// when `capacity` is 0) receive the nuclei per frame and `*report` (may be NULL; its
/// `struct_size` set by the caller) what was done; on failure neither is touched.
///
/// # Safety
/// `model` is a live model; `input` is NUL-terminated; `output` and `labels_name` are NULL
/// or NUL-terminated; `p`, `o` are NULL or filled by their `_default` functions; `nuclei`
/// holds `capacity` elements; `report` is NULL or points to `report->struct_size` writable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn qca_segment_file(
    model: *const QcaModel,
    input: *const c_char,
    output: *const c_char,
    labels_name: *const c_char,
    channel: u32,
    flags: u32,
    p: *const QcaSegmentParams,
    o: *const QcaBlockOptions,
    nuclei: *mut u32,
    capacity: usize,
    report: *mut QcaFileReport,
) -> QcaStatus {
    guard(|| {
        let m = model.as_ref().ok_or_else(|| null("model"))?;
        let input = path_arg(input, "input")?;
        let target = match (output.is_null(), labels_name.is_null()) {
            (false, true) => crate::files::FileTarget::File(path_arg(output, "output")?.to_path_buf()),
            (true, false) => crate::files::FileTarget::IntoInput { name: str_arg(labels_name, "labels_name")?.to_string() },
            _ => return Err(invalid("give either output (a new file) or labels_name (labels into the OME-Zarr input), not both".into())),
        };
        if flags & !(QCA_FILE_WHOLE | QCA_FILE_MEASURE) != 0 {
            return Err(invalid(format!("flags {flags:#x}: only QCA_FILE_WHOLE and QCA_FILE_MEASURE are defined")));
        }
        if capacity > 0 {
            non_null(nuclei, "nuclei")?;
        }
        let report_n = if report.is_null() { None } else { Some(out_size(report, &file_report_fields(), "report", "QcaFileReport")?) };
        let (params, c) = if p.is_null() { (SegmentParams::default(), default_params()) } else { segment_params(p)? };
        if !c.timings.is_null() {
            return Err(invalid("p->timings: qca_segment_file gives its times in its report; set timings to NULL".into()));
        }
        let mut block = block_options(o)?;
        let blocks = match (flags & QCA_FILE_WHOLE != 0, block.core.take()) {
            (true, _) => crate::blocks::BlockChoice::Whole,
            (false, Some(core)) => crate::blocks::BlockChoice::Core(core),
            (false, None) => crate::blocks::BlockChoice::Auto,
        };
        let options = crate::files::FileOptions { channel: channel as usize, blocks, block, measure: flags & QCA_FILE_MEASURE != 0 };
        let progress = progress_of(&c);
        let r = crate::files::segment_file(&m.inner, input, target, &params, &options, Some(&progress)).c()?;
        let n = capacity.min(r.nuclei.len());
        if n > 0 {
            std::ptr::copy_nonoverlapping(r.nuclei.as_ptr(), nuclei, n);
        }
        if let Some(size) = report_n {
            let full = QcaFileReport {
                struct_size: size as u32,
                frames: r.nuclei.len(),
                nuclei_total: r.nuclei.iter().map(|&k| k as u64).sum(),
                voxels: r.voxels,
                blocks: r.blocks,
                core: r.core,
                halo: r.halo,
                read_s: r.times.read_s,
                network_s: r.times.network_s,
                post_s: r.times.post_s,
                stitch_s: r.times.stitch_s,
                write_s: r.write_s,
                wall_s: r.wall_s,
            };
            std::ptr::copy_nonoverlapping(&full as *const QcaFileReport as *const u8, report as *mut u8, size);
        }
        Ok(())
    })
}
