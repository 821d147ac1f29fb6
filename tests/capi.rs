//! The C API's contract, called exactly as a C host would: exact status codes,
//! out-parameters untouched on failure, bad models refused at load time.
mod common;

use std::ffi::{CStr, CString};
use std::ptr;

use qcanet::capi::QcaStatus::*;
use qcanet::capi::*;

fn last_error() -> String {
    unsafe { CStr::from_ptr(qca_last_error()) }.to_string_lossy().into_owned()
}

fn cpath(p: &std::path::Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

fn params() -> QcaSegmentParams {
    let mut p = std::mem::MaybeUninit::<QcaSegmentParams>::zeroed();
    unsafe {
        assert_eq!(qca_segment_params_default(p.as_mut_ptr(), std::mem::size_of::<QcaSegmentParams>()), QCA_OK);
        p.assume_init()
    }
}

fn load(nsn: &str, ndn: Option<&str>) -> (QcaStatus, *mut QcaModel) {
    common::runtime();
    let a = cpath(&common::data(nsn));
    let b = ndn.map(|n| cpath(&common::data(n)));
    let mut m: *mut QcaModel = 0x1 as *mut QcaModel;
    let s = unsafe { qca_model_load(a.as_ptr(), b.as_ref().map_or(ptr::null(), |b| b.as_ptr()), ptr::null(), &mut m) };
    (s, m)
}

/// The small test pair (NSN and NDN that threshold their input), loaded.
fn threshold_pair() -> *mut QcaModel {
    let (s, m) = load("threshold_nsn.onnx", Some("threshold_ndn.onnx"));
    assert_eq!(s, QCA_OK, "{}", last_error());
    m
}

#[test]
fn models_with_wrong_tensors_are_refused_and_out_is_untouched() {
    for (f, want) in [("rank4.onnx", "rank 4"), ("three_channels.onnx", "3 channels"), ("int_input.onnx", "Int64")] {
        let (s, m) = load(f, None);
        assert_eq!(s, QCA_ERR_MODEL, "{f}");
        assert_eq!(m as usize, 1, "{f}: out-parameter changed");
        assert!(last_error().contains(want), "{f}: {}", last_error());
    }
    let (s, _) = load("make_models.py", None); // not ONNX at all
    assert_eq!(s, QCA_ERR_MODEL);
    assert!(last_error().contains("not a loadable ONNX model"), "{}", last_error());
    let (s, _) = load("missing.onnx", None);
    assert_eq!(s, QCA_ERR_IO);
    // NSN alone (not joint) is not enough; NSN and NDN swapped are refused
    let (s, _) = load("threshold_nsn.onnx", None);
    assert_eq!(s, QCA_ERR_MODEL);
    let (s, _) = load("threshold_ndn.onnx", Some("threshold_nsn.onnx"));
    assert_eq!(s, QCA_ERR_MODEL);
    assert!(last_error().contains("NSN model, given as NDN"), "{}", last_error());
}

#[test]
fn segment_with_a_custom_pair_and_every_bad_argument() {
    let m = threshold_pair();
    // two bright cubes (1.0) on a dim background (0.1): centre > 0.8 only inside
    let dims = [10usize, 20, 40];
    let n = 10 * 20 * 40;
    let mut v = vec![0.1f32; n];
    for z in 2..8 {
        for y in 5..15 {
            for x in (4..14).chain(24..34) {
                v[(z * 20 + y) * 40 + x] = 1.0;
            }
        }
    }
    let p = params();
    let mut lab = vec![0u32; n];
    let mut k = 0u32;
    let s = unsafe { qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k) };
    assert_eq!(s, QCA_OK, "{}", last_error());
    assert_eq!(k, 2);
    assert_ne!(lab[(5 * 20 + 10) * 40 + 8], lab[(5 * 20 + 10) * 40 + 28]);
    assert_eq!(lab[0], 0);

    let mut k = 99u32;
    let zero = [10usize, 0, 40];
    let huge = [usize::MAX / 2, 4, 4];
    unsafe {
        assert_eq!(qca_segment_f32(ptr::null(), v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_ERR_NULL_POINTER);
        assert_eq!(qca_segment_f32(m, ptr::null(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_ERR_NULL_POINTER);
        assert_eq!(qca_segment_f32(m, v.as_ptr(), ptr::null(), &p, lab.as_mut_ptr(), &mut k), QCA_ERR_NULL_POINTER);
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, ptr::null_mut(), &mut k), QCA_ERR_NULL_POINTER);
        assert_eq!(qca_segment_f32(m, v.as_ptr(), zero.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT);
        assert_eq!(qca_segment_f32(m, v.as_ptr(), huge.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT);
        let mut bad = p;
        bad.voxel_size = [1.0, 0.0, 1.0];
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &bad, lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT);
        let mut bad = p;
        bad.markers = 9;
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &bad, lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT);
        let mut bad = p;
        bad.tile = [4, 0, 0];
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &bad, lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT);
        let mut nan = v.clone();
        nan[17] = f32::INFINITY;
        assert_eq!(qca_segment_f32(m, nan.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_ERR_NON_FINITE);
        assert!(last_error().contains("NaN or infinite"));
        assert_eq!(k, 99, "n_nuclei must be untouched on failure");
        qca_model_free(m);
    }
}

extern "C" fn cancel_at_once(_f: f32, _u: *mut std::ffi::c_void) -> i32 {
    1
}

extern "C" fn count_calls(_f: f32, u: *mut std::ffi::c_void) -> i32 {
    unsafe { *(u as *mut u32) += 1 };
    0
}

#[test]
fn progress_callback_reports_and_cancels() {
    let m = threshold_pair();
    let dims = [20usize, 40, 80]; // several 16x32x32 tiles
    let v = vec![0.5f32; 20 * 40 * 80];
    let mut lab = vec![7u32; v.len()];
    let mut calls = 0u32;
    let mut p = params();
    p.progress = Some(count_calls);
    p.user_data = &mut calls as *mut u32 as *mut std::ffi::c_void;
    unsafe {
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), ptr::null_mut()), QCA_OK);
        assert!(calls >= 4, "{calls} progress calls");
        p.progress = Some(cancel_at_once);
        let before = lab.clone();
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), ptr::null_mut()), QCA_ERR_CANCELLED);
        assert_eq!(lab, before, "labels must be untouched when cancelled");
        qca_model_free(m);
    }
}

#[test]
fn model_is_shared_between_threads() {
    let m = threshold_pair();
    let addr = m as usize;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let dims = [8usize, 16, 16];
                let mut v = vec![0.1f32; 8 * 16 * 16];
                for z in 2..6 {
                    for y in 4..12 {
                        for x in 4..12 {
                            v[(z * 16 + y) * 16 + x] = 1.0 + i as f32 * 0.01;
                        }
                    }
                }
                let mut lab = vec![0u32; v.len()];
                let mut k = 0;
                let p = params();
                let s = unsafe { qca_segment_f32(addr as *const QcaModel, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k) };
                (s, k)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), (QCA_OK, 1));
    }
    unsafe { qca_model_free(m) };
}

#[test]
fn tiff_errors_have_their_own_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("corrupt.tif");
    std::fs::write(&bad, b"II*\0garbage that is not a TIFF directory").unwrap();
    let mut img: *mut QcaImage = ptr::null_mut();
    unsafe {
        assert_eq!(qca_image_read(cpath(&bad).as_ptr(), &mut img), QCA_ERR_FORMAT);
        assert!(img.is_null());
        assert!(last_error().contains("corrupt.tif"));
        let labels = [1u32; 8];
        let dims = [2usize, 2, 2];
        let nowhere = dir.path().join("no/such/folder/out.tif");
        assert_eq!(qca_labels_write(cpath(&nowhere).as_ptr(), labels.as_ptr(), dims.as_ptr(), 1, ptr::null()), QCA_ERR_IO);
        let ok = dir.path().join("ok.tif");
        assert_eq!(qca_labels_write(cpath(&ok).as_ptr(), labels.as_ptr(), dims.as_ptr(), 1, ptr::null()), QCA_OK);
        assert_eq!(qca_image_read(cpath(&ok).as_ptr(), &mut img), QCA_OK);
        let mut info = QcaImageInfo { struct_size: std::mem::size_of::<QcaImageInfo>() as u32, ..Default::default() };
        assert_eq!(qca_image_info(img, &mut info), QCA_OK);
        assert_eq!((info.dims, info.sample_type, info.frames), ([2, 2, 2], QCA_SAMPLE_U16, 1));
        let mut out = [0f32; 8];
        assert_eq!(qca_image_volume_f32(img, 1, 0, out.as_mut_ptr()), QCA_ERR_INVALID_ARGUMENT);
        assert_eq!(qca_image_volume_f32(img, 0, 0, out.as_mut_ptr()), QCA_OK);
        assert_eq!(out, [1.0; 8]);
        qca_image_free(img);
    }
}

#[test]
fn runtime_path_errors_are_clear() {
    // once loaded, a different explicit library is refused with a message naming both
    common::runtime();
    let other = CString::new("/nonexistent/libonnxruntime.so").unwrap();
    assert_eq!(unsafe { qca_runtime_init(other.as_ptr()) }, QCA_ERR_RUNTIME);
    assert!(last_error().contains("already loaded"), "{}", last_error());
    assert!(!qca_runtime_info().is_null());
}

#[test]
fn measurements_through_the_handle() {
    let dims = [1usize, 2, 3];
    let labels = [0u32, 2, 2, 0, 5, 0];
    let inten = [0f32, 1.0, 3.0, 0.0, 4.0, 0.0];
    let vs = [2.0f64, 1.0, 1.0];
    let mut h: *mut QcaMeasurements = ptr::null_mut();
    unsafe {
        assert_eq!(qca_measure(labels.as_ptr(), inten.as_ptr(), dims.as_ptr(), vs.as_ptr(), &mut h), QCA_OK);
        assert_eq!(qca_measurements_count(h), 2);
        let mut n = QcaNucleus::default();
        assert_eq!(qca_measurements_get(h, 0, &mut n), QCA_OK);
        assert_eq!((n.label, n.voxels, n.volume_um3, n.mean_intensity), (2, 2, 4.0, 2.0));
        assert_eq!(n.centroid, [0.0, 0.0, 1.5]);
        assert_eq!(qca_measurements_get(h, 2, &mut n), QCA_ERR_INVALID_ARGUMENT);
        assert_eq!(n.label, 2, "untouched on failure");
        qca_measurements_free(h);
    }
}

/// Sizes nobody bounded used to abort or crash the host: each is now an error status.
#[test]
fn absurd_sizes_are_errors_not_crashes() {
    let m = threshold_pair();
    let dims = [10usize, 20, 40];
    let v = vec![0.5f32; 10 * 20 * 40];
    let mut lab = vec![0u32; v.len()];
    let mut k = 99u32;
    unsafe {
        // 1000 um voxels against the default model's 1.75 x 0.8 x 0.8: terabytes before
        let mut dm: *mut QcaModel = ptr::null_mut();
        assert_eq!(qca_model_load_default(ptr::null(), &mut dm), QCA_OK, "{}", last_error());
        let mut p = params();
        p.voxel_size = [1000.0, 1000.0, 1000.0];
        assert_eq!(qca_segment_f32(dm, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("resamples by at most"), "{}", last_error());
        qca_model_free(dm);
        // tiles far beyond any memory
        let mut p = params();
        p.tile = [100_000, 100_000, 100_000];
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("tile"), "{}", last_error());
        // a struct_size that ends inside a field (half of the callback pointer)
        let mut p = params();
        p.struct_size = (std::mem::offset_of!(QcaSegmentParams, progress) + 4) as u32;
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("inside a field"), "{}", last_error());
        // an older, shorter struct that ends on a field boundary is fine
        let mut p = params();
        p.struct_size = std::mem::offset_of!(QcaSegmentParams, progress) as u32;
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_OK, "{}", last_error());
        // one z slice: a 2-D image is not a volume
        let flat = [1usize, 20, 40];
        assert_eq!(qca_segment_f32(m, v.as_ptr(), flat.as_ptr(), &params(), lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("slices"), "{}", last_error());
        qca_model_free(m);

        // 100000 threads: a segfault inside ONNX Runtime before
        let mut o = std::mem::MaybeUninit::<QcaModelOptions>::zeroed();
        assert_eq!(qca_model_options_default(o.as_mut_ptr(), std::mem::size_of::<QcaModelOptions>()), QCA_OK);
        let mut o = o.assume_init();
        o.num_threads = 100_000;
        let mut out: *mut QcaModel = 0x1 as *mut QcaModel;
        let a = cpath(&common::data("threshold_nsn.onnx"));
        let b = cpath(&common::data("threshold_ndn.onnx"));
        assert_eq!(qca_model_load(a.as_ptr(), b.as_ptr(), &o, &mut out), QCA_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("threads"), "{}", last_error());
        assert_eq!(out as usize, 1, "out-parameter untouched");
        // options whose struct_size ends inside a field
        o.num_threads = 0;
        o.struct_size = 6;
        assert_eq!(qca_model_load(a.as_ptr(), b.as_ptr(), &o, &mut out), QCA_ERR_INVALID_ARGUMENT);
        // an unknown precision
        o.struct_size = std::mem::size_of::<QcaModelOptions>() as u32;
        o.precision = 7;
        assert_eq!(qca_model_load(a.as_ptr(), b.as_ptr(), &o, &mut out), QCA_ERR_INVALID_ARGUMENT);
    }
    // post-processing alone with tiny voxels: the marker smoothing would span millions of voxels
    let fg = vec![0.9f32; v.len()];
    let mut p = params();
    p.voxel_size = [1e-6, 1e-6, 1e-6];
    p.markers = QCA_MARKERS_LOCAL_MAXIMA;
    p.marker_sigma_um = 2.5;
    let s = unsafe { qca_postprocess_f32(fg.as_ptr(), fg.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k) };
    assert_eq!(s, QCA_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("marker smoothing"), "{}", last_error());
}

#[test]
fn stage_times_are_reported_only_on_success_and_only_as_far_as_the_callers_struct() {
    let m = threshold_pair();
    let dims = [8usize, 24, 24];
    let v: Vec<f32> = (0..8 * 24 * 24).map(|i| if (i / 24) % 24 > 12 { 1.0 } else { 0.1 }).collect();
    let mut lab = vec![7u32; v.len()];
    let mut k = 0u32;
    let sentinel =
        QcaTimings { struct_size: std::mem::size_of::<QcaTimings>() as u32, network_s: -5.0, watershed_s: -5.0, ..Default::default() };
    let mut t = sentinel;
    let mut p = params();
    p.timings = &mut t;
    unsafe {
        assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_OK, "{}", last_error());
        assert_eq!(qca_struct_size(c"QcaTimings".as_ptr()), std::mem::size_of::<QcaTimings>());
    }
    assert!(t.network_s > 0.0 && t.watershed_s >= 0.0 && t.post_s > 0.0, "{t:?}");
    // stages are timed around their steps
    assert!(t.normalise_s + t.resample_s <= t.prepare_s + 1e-6, "{t:?}");
    let steps = t.mask_s + t.markers_s + t.landscape_s + t.watershed_s + t.resample_back_s;
    assert!(steps <= t.post_s + 1e-3, "{t:?}");
    assert_eq!(t.struct_size as usize, std::mem::size_of::<QcaTimings>());
    // a failing call leaves them as they were, and so does a bad struct_size (refused
    // before any work: the labels are untouched too)
    let mut t = sentinel;
    let mut bad = params();
    bad.timings = &mut t;
    bad.markers = 9;
    unsafe { assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &bad, lab.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT) };
    assert_eq!((t.network_s, t.watershed_s), (-5.0, -5.0));
    // a call that fails during the segmentation itself (cancelled from its progress callback)
    let mut t = sentinel;
    let mut cancelled = params();
    cancelled.timings = &mut t;
    cancelled.progress = Some(cancel_at_once);
    unsafe { assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &cancelled, lab.as_mut_ptr(), &mut k), QCA_ERR_CANCELLED) };
    assert_eq!((t.network_s, t.watershed_s), (-5.0, -5.0));
    // a caller built before the field: its struct ends where `timings` starts, and whatever
    // lies beyond (here a junk pointer) is never read
    let mut old = params();
    old.struct_size = std::mem::offset_of!(QcaSegmentParams, timings) as u32;
    old.timings = 0x10 as *mut QcaTimings;
    unsafe { assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &old, lab.as_mut_ptr(), &mut k), QCA_OK, "{}", last_error()) };
    let mut lab2 = vec![7u32; v.len()];
    for size in [0u32, 3, 12] {
        let mut t = QcaTimings { struct_size: size, network_s: -5.0, ..Default::default() };
        let mut p = params();
        p.timings = &mut t;
        unsafe { assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab2.as_mut_ptr(), &mut k), QCA_ERR_INVALID_ARGUMENT) };
        assert!(last_error().contains("timings->struct_size"), "{}", last_error());
        assert_eq!(t.network_s, -5.0);
        assert!(lab2.iter().all(|&l| l == 7));
    }
    // an older caller's shorter struct: filled up to its last field, not a byte further
    let short = std::mem::offset_of!(QcaTimings, network_s) + 8;
    let mut t = QcaTimings { struct_size: short as u32, network_s: -5.0, post_s: -5.0, ..Default::default() };
    let mut p = params();
    p.timings = &mut t;
    unsafe { assert_eq!(qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k), QCA_OK) };
    assert!(t.network_s > 0.0);
    assert_eq!((t.struct_size as usize, t.post_s), (short, -5.0));
    unsafe { qca_model_free(m) };
}

/// Every struct_size a caller could pass, from 0 to past the end: each is either accepted
/// (a field boundary or the whole struct) or refused with QCA_ERR_INVALID_ARGUMENT; none
/// reads past what the caller owns or crashes.
#[test]
fn every_struct_size_is_accepted_or_refused() {
    let m = threshold_pair();
    let dims = [4usize, 16, 16];
    let v = vec![0.5f32; 4 * 16 * 16];
    let mut lab = vec![0u32; v.len()];
    let full = std::mem::size_of::<QcaSegmentParams>();
    // the bytes each field occupies: a size that ends strictly inside one is refused, any
    // other (a field's end, padding between fields, the whole struct and more) accepted
    use std::mem::{offset_of, size_of_val};
    let q = params();
    let spans = [
        (offset_of!(QcaSegmentParams, struct_size), size_of_val(&q.struct_size)),
        (offset_of!(QcaSegmentParams, voxel_size), size_of_val(&q.voxel_size)),
        (offset_of!(QcaSegmentParams, fg_threshold), size_of_val(&q.fg_threshold)),
        (offset_of!(QcaSegmentParams, centre_threshold), size_of_val(&q.centre_threshold)),
        (offset_of!(QcaSegmentParams, markers), size_of_val(&q.markers)),
        (offset_of!(QcaSegmentParams, marker_sigma_um), size_of_val(&q.marker_sigma_um)),
        (offset_of!(QcaSegmentParams, landscape), size_of_val(&q.landscape)),
        (offset_of!(QcaSegmentParams, fill_holes), size_of_val(&q.fill_holes)),
        (offset_of!(QcaSegmentParams, min_volume_um3), size_of_val(&q.min_volume_um3)),
        (offset_of!(QcaSegmentParams, connectivity), size_of_val(&q.connectivity)),
        (offset_of!(QcaSegmentParams, tile), size_of_val(&q.tile)),
        (offset_of!(QcaSegmentParams, overlap), size_of_val(&q.overlap)),
        (offset_of!(QcaSegmentParams, progress), size_of_val(&q.progress)),
        (offset_of!(QcaSegmentParams, user_data), size_of_val(&q.user_data)),
        (offset_of!(QcaSegmentParams, voxel_size_source), size_of_val(&q.voxel_size_source)),
        (offset_of!(QcaSegmentParams, timings), size_of_val(&q.timings)),
    ];
    for size in 0..full + 16 {
        let mut p = params();
        p.struct_size = size as u32;
        let mut k = 0u32;
        let inside = spans.iter().any(|&(at, len)| at < size && size < at + len);
        let want = if size < 4 || inside { QCA_ERR_INVALID_ARGUMENT } else { QCA_OK };
        let got = unsafe { qca_segment_f32(m, v.as_ptr(), dims.as_ptr(), &p, lab.as_mut_ptr(), &mut k) };
        assert_eq!(got, want, "struct_size {size}: {}", last_error());
    }
    unsafe { qca_model_free(m) };
}

#[test]
fn status_names_come_from_the_enum_and_text_out_parameters_stay_untouched_on_failure() {
    let name = |s: i32| unsafe { CStr::from_ptr(qca_status_str(s)).to_str().unwrap().to_string() };
    assert_eq!(name(0), "QCA_OK");
    assert_eq!(name(QCA_ERR_INVALID_ARGUMENT as i32), "QCA_ERR_INVALID_ARGUMENT");
    assert_eq!(name(QCA_ERR_INTERNAL as i32), "QCA_ERR_INTERNAL");
    assert!(qca_status_str(11).is_null() && qca_status_str(-1).is_null());
    // a failing describe (buffer NULL with a capacity) leaves *needed as it was
    let m = threshold_pair();
    let mut needed = 12345usize;
    assert_eq!(unsafe { qca_model_describe(m, ptr::null_mut(), 10, &mut needed) }, QCA_ERR_NULL_POINTER);
    assert_eq!(needed, 12345);
    // the plan: JSON of the resolved parameters; refused exactly as segmentation would be
    let dims = [8usize, 40, 40];
    let mut p = params();
    p.voxel_size = [2.0, 1.0, 1.0];
    let mut n = 0usize;
    assert_eq!(unsafe { qca_plan_json(m, dims.as_ptr(), &p, ptr::null_mut(), 0, &mut n) }, QCA_OK, "{}", last_error());
    let mut buf = vec![0 as std::ffi::c_char; n];
    assert_eq!(unsafe { qca_plan_json(m, dims.as_ptr(), &p, buf.as_mut_ptr(), n, ptr::null_mut()) }, QCA_OK);
    let json: serde_json::Value = serde_json::from_str(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap()).unwrap();
    assert_eq!(json["input_voxel_size"], serde_json::json!([2.0, 1.0, 1.0]));
    assert_eq!(json["voxel_size_source"], "caller");
    assert_eq!(json["post"]["markers"], "components", "the one defaults table (a model without metadata)");
    // where the voxel size came from travels with it
    let mut q = p;
    q.voxel_size_source = QCA_VOXEL_SIZE_FILE;
    let mut big = vec![0 as std::ffi::c_char; 4096];
    assert_eq!(unsafe { qca_plan_json(m, dims.as_ptr(), &q, big.as_mut_ptr(), big.len(), ptr::null_mut()) }, QCA_OK);
    assert!(unsafe { CStr::from_ptr(big.as_ptr()) }.to_str().unwrap().contains("\"voxel_size_source\":\"file\""));
    q.voxel_size_source = 7;
    assert_eq!(unsafe { qca_plan_json(m, dims.as_ptr(), &q, big.as_mut_ptr(), big.len(), ptr::null_mut()) }, QCA_ERR_INVALID_ARGUMENT);
    // only -1 means "the model's": another negative is an error, not a silent default
    for bad in [
        QcaSegmentParams { fg_threshold: -0.3, ..p },
        QcaSegmentParams { min_volume_um3: -5.0, ..p },
        QcaSegmentParams { overlap: [-5, -5, -5], ..p },
    ] {
        assert_eq!(
            unsafe { qca_plan_json(m, dims.as_ptr(), &bad, big.as_mut_ptr(), big.len(), ptr::null_mut()) },
            QCA_ERR_INVALID_ARGUMENT
        );
    }
    p.min_volume_um3 = f64::NAN;
    let mut untouched = 7usize;
    assert_eq!(unsafe { qca_plan_json(m, dims.as_ptr(), &p, ptr::null_mut(), 0, &mut untouched) }, QCA_ERR_INVALID_ARGUMENT);
    assert_eq!(untouched, 7);
    assert!(last_error().contains("min_volume_um3"), "{}", last_error());
    unsafe { qca_model_free(m) };
    // named choices: one vocabulary, old spellings accepted
    let val = |o: &str, n: &str| {
        let (o, n) = (CString::new(o).unwrap(), CString::new(n).unwrap());
        let mut v = -7i32;
        let s = unsafe { qca_option_value(o.as_ptr(), n.as_ptr(), &mut v) };
        (s, v)
    };
    assert_eq!(val("markers", "local_max"), (QCA_OK, QCA_MARKERS_LOCAL_MAXIMA));
    assert_eq!(val("markers", "components"), (QCA_OK, QCA_MARKERS_COMPONENTS));
    assert_eq!(val("landscape", "edt"), (QCA_OK, QCA_LANDSCAPE_DISTANCE));
    assert_eq!(val("device", "CUDA"), (QCA_OK, QCA_DEVICE_CUDA));
    assert_eq!(val("precision", "tf32"), (QCA_OK, QCA_PRECISION_TF32));
    assert_eq!(val("connectivity", "18"), (QCA_OK, 18));
    assert_eq!(val("markers", "watershed"), (QCA_ERR_INVALID_ARGUMENT, -7));
    assert_eq!(val("colour", "red"), (QCA_ERR_INVALID_ARGUMENT, -7));
}

#[test]
fn defaults_never_write_past_the_callers_struct() {
    use std::mem::{offset_of, size_of};
    let full = size_of::<QcaSegmentParams>();
    // a caller built before the last field existed: only its bytes are written
    let older = offset_of!(QcaSegmentParams, voxel_size_source);
    let mut buf = vec![0xAAAA_AAAA_AAAA_AAAAu64; full / 8 + 2];
    let p = buf.as_mut_ptr() as *mut QcaSegmentParams;
    assert_eq!(unsafe { qca_segment_params_default(p, older) }, QCA_OK, "{}", last_error());
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, buf.len() * 8) };
    assert!(bytes[older..].iter().all(|&b| b == 0xAA), "wrote past the caller's struct");
    assert_eq!(u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize, older);
    // and segmentation reads that older struct with the new field defaulted
    assert_eq!(unsafe { (*p).markers }, QCA_MARKERS_MODEL);
    // sizes that end inside a field, too small, NULL
    let inside = offset_of!(QcaSegmentParams, voxel_size) + 4;
    assert_eq!(unsafe { qca_segment_params_default(p, inside) }, QCA_ERR_INVALID_ARGUMENT);
    assert_eq!(unsafe { qca_segment_params_default(p, 2) }, QCA_ERR_INVALID_ARGUMENT);
    assert_eq!(unsafe { qca_segment_params_default(ptr::null_mut(), full) }, QCA_ERR_NULL_POINTER);
    // model options of ABI 1's first release (before `precision`)
    let mut o = [0xFFFF_FFFFu32; 8];
    let op = o.as_mut_ptr() as *mut QcaModelOptions;
    assert_eq!(unsafe { qca_model_options_default(op, 16) }, QCA_OK);
    assert_eq!(&o[..5], &[16, QCA_DEVICE_AUTO as u32, 0, 0, 0xFFFF_FFFF]);
    // the sizes a run-time binding (MATLAB) reads
    let name = |n: &str| CString::new(n).unwrap();
    assert_eq!(unsafe { qca_struct_size(name("QcaSegmentParams").as_ptr()) }, full);
    assert_eq!(unsafe { qca_struct_size(name("QcaModelOptions").as_ptr()) }, size_of::<QcaModelOptions>());
    assert_eq!(unsafe { qca_struct_size(name("Nonsense").as_ptr()) }, 0);
    assert_eq!(unsafe { qca_struct_size(ptr::null()) }, 0);
}

/// A two-frame u16 TIFF of 20 x 40 x 80 with two bright boxes per frame (the threshold
/// pair sees each box as one nucleus), and its folder.
fn two_frame_stack() -> (tempfile::TempDir, std::path::PathBuf) {
    use qcanet::io::tiff::{self, Samples};
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("stack.tif");
    let (nz, ny, nx) = (20usize, 40usize, 80usize);
    let mut v = vec![0u16; 2 * nz * ny * nx];
    for t in 0..2 {
        for z in 4..16 {
            for y in 8..30 {
                for x in (6..30).chain(44 + 4 * t..70) {
                    v[((t * nz + z) * ny + y) * nx + x] = 1000;
                }
            }
        }
    }
    tiff::write(&path, &Samples::U16(v), [nz, ny, nx], 2, Some([1.0, 1.0, 1.0])).unwrap();
    (d, path)
}

#[test]
fn segment_file_writes_labels_per_frame_and_refuses_with_exact_statuses() {
    let m = threshold_pair();
    let (d, input) = two_frame_stack();
    let (inp, out) = (cpath(&input), cpath(&d.path().join("labels.tif")));
    let report_size = std::mem::size_of::<QcaFileReport>();
    let untouched = || QcaFileReport { struct_size: report_size as u32, frames: 77, ..Default::default() };
    let mut nuclei = [9u32; 4];
    let mut report = untouched();
    let p = params();
    let names = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let before = names(d.path());
    let input_bytes = std::fs::read(&input).unwrap();
    unsafe {
        let run = |input: *const std::ffi::c_char,
                   output: *const std::ffi::c_char,
                   name: *const std::ffi::c_char,
                   flags: u32,
                   p: &QcaSegmentParams,
                   nuclei: &mut [u32; 4],
                   report: &mut QcaFileReport| {
            qca_segment_file(m, input, output, name, 0, flags, p, ptr::null(), nuclei.as_mut_ptr(), 4, report)
        };
        // refused before any work, out-parameters untouched, nothing written
        let name = CString::new("qcanet").unwrap();
        for (status, input, output, name, flags, what) in [
            (QCA_ERR_NULL_POINTER, ptr::null(), out.as_ptr(), ptr::null(), 0, "input"),
            (QCA_ERR_INVALID_ARGUMENT, inp.as_ptr(), out.as_ptr(), name.as_ptr(), 0, "not both"),
            (QCA_ERR_INVALID_ARGUMENT, inp.as_ptr(), ptr::null(), ptr::null(), 0, "not both"),
            (QCA_ERR_INVALID_ARGUMENT, inp.as_ptr(), out.as_ptr(), ptr::null(), 4, "flags"),
            (QCA_ERR_INVALID_ARGUMENT, inp.as_ptr(), inp.as_ptr(), ptr::null(), 0, "never writes over its inputs"),
            (QCA_ERR_INVALID_ARGUMENT, inp.as_ptr(), ptr::null(), name.as_ptr(), 0, "OME-Zarr images only"),
        ] {
            assert_eq!(run(input, output, name, flags, &p, &mut nuclei, &mut report), status, "{what}: {}", last_error());
            assert!(last_error().contains(what), "{what}: {}", last_error());
            assert_eq!((nuclei, report.frames), ([9; 4], 77), "{what}");
        }
        let csv_out = cpath(&d.path().join("labels.csv"));
        assert_eq!(
            run(inp.as_ptr(), csv_out.as_ptr(), ptr::null(), QCA_FILE_MEASURE, &p, &mut nuclei, &mut report),
            QCA_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("no name of their own"), "{}", last_error());
        // the header alone: frames, dims, calibration and ImageJ's page order
        let mut info = QcaImageInfo { struct_size: std::mem::size_of::<QcaImageInfo>() as u32, ..Default::default() };
        assert_eq!(qca_file_info(inp.as_ptr(), &mut info), QCA_OK, "{}", last_error());
        assert_eq!((info.dims, info.frames, info.channels, info.has_voxel_size), ([20, 40, 80], 2, 1, 1));
        assert_eq!(info.page_strides, [20, 1, 1]);
        let mut cut = QcaImageInfo { struct_size: 12, frames: 77, ..Default::default() };
        assert_eq!(qca_file_info(inp.as_ptr(), &mut cut), QCA_ERR_INVALID_ARGUMENT);
        assert_eq!((cut.frames, cut.dims), (77, [0; 3]));
        assert_eq!(qca_file_info(out.as_ptr(), &mut info), QCA_ERR_IO, "a file that is not there");
        let zarr = cpath(&d.path().join("labels.ome.zarr"));
        assert_eq!(run(inp.as_ptr(), zarr.as_ptr(), ptr::null(), 0, &p, &mut nuclei, &mut report), QCA_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("write the labels of a TIFF as .tif"), "{}", last_error());
        let mut bad = untouched();
        bad.struct_size = 12; // ends inside `frames`
        assert_eq!(run(inp.as_ptr(), out.as_ptr(), ptr::null(), 0, &p, &mut nuclei, &mut bad), QCA_ERR_INVALID_ARGUMENT);
        let mut timed = params();
        let mut t = QcaTimings { struct_size: std::mem::size_of::<QcaTimings>() as u32, ..Default::default() };
        timed.timings = &mut t;
        assert_eq!(run(inp.as_ptr(), out.as_ptr(), ptr::null(), 0, &timed, &mut nuclei, &mut report), QCA_ERR_INVALID_ARGUMENT);
        assert_eq!(
            qca_segment_file(m, inp.as_ptr(), out.as_ptr(), ptr::null(), 1, 0, &p, ptr::null(), ptr::null_mut(), 0, ptr::null_mut()),
            QCA_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("channel 1"), "{}", last_error());
        // cancelled: nothing written, no scratch file left
        let mut cancelling = params();
        cancelling.progress = Some(cancel_at_once);
        assert_eq!(run(inp.as_ptr(), out.as_ptr(), ptr::null(), 0, &cancelling, &mut nuclei, &mut report), QCA_ERR_CANCELLED);
        assert_eq!((nuclei, report.frames), ([9; 4], 77));
        assert_eq!(names(d.path()), before, "a refused or cancelled call leaves the folder as it was");

        // blocks of 8 x 16 x 32 (several per frame), and the whole volume: the same labels
        // (the threshold pair's boxes are far from any doubt), two nuclei per frame
        let o = QcaBlockOptions {
            core: [8, 16, 32],
            ..{
                let mut o = std::mem::MaybeUninit::<QcaBlockOptions>::zeroed();
                assert_eq!(qca_block_options_default(o.as_mut_ptr(), std::mem::size_of::<QcaBlockOptions>()), QCA_OK);
                o.assume_init()
            }
        };
        let s =
            qca_segment_file(m, inp.as_ptr(), out.as_ptr(), ptr::null(), 0, QCA_FILE_MEASURE, &p, &o, nuclei.as_mut_ptr(), 4, &mut report);
        assert_eq!(s, QCA_OK, "{}", last_error());
        assert_eq!(nuclei, [2, 2, 9, 9], "only the frames' entries are written");
        assert_eq!((report.frames, report.nuclei_total, report.voxels), (2, 4, 2 * 20 * 40 * 80));
        assert!(report.blocks > 1 && report.core.iter().zip([8, 16, 32]).all(|(&c, m)| c <= m), "{report:?}");
        assert!(report.wall_s > 0.0 && report.network_s > 0.0);
        let blocked = qcanet::io::tiff::read(d.path().join("labels.tif")).unwrap();
        assert_eq!((blocked.frames, blocked.dims), (2, [20, 40, 80]));
        let csv = std::fs::read_to_string(d.path().join("labels.csv")).unwrap();
        assert!(csv.starts_with("frame,label,"), "{csv}");
        assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
        let whole = cpath(&d.path().join("whole.tif"));
        let mut n2 = [0u32; 1];
        let s = qca_segment_file(
            m,
            inp.as_ptr(),
            whole.as_ptr(),
            ptr::null(),
            0,
            QCA_FILE_WHOLE,
            ptr::null(),
            ptr::null(),
            n2.as_mut_ptr(),
            1,
            ptr::null_mut(),
        );
        assert_eq!(s, QCA_OK, "{}", last_error());
        assert_eq!(n2, [2], "a capacity of 1 gets the first frame only");
        let whole = qcanet::io::tiff::read(d.path().join("whole.tif")).unwrap();
        assert_eq!(whole.samples.to_labels().unwrap(), blocked.samples.to_labels().unwrap());
        // an existing output is replaced, never an input: the input is byte for byte as it was
        assert_eq!(std::fs::read(&input).unwrap(), input_bytes);
        qca_model_free(m);
    }
}
