//! The `qcanet` command as a user runs it: exit status, one readable error line, files.
use std::path::Path;
use std::process::{Command, Output};

fn qcanet(args: &[&str]) -> Output {
    let ort = std::env::var("ORT_DYLIB_PATH").expect("run through `make test` (ORT_DYLIB_PATH)");
    Command::new(env!("CARGO_BIN_EXE_qcanet")).args(args).env("ORT_DYLIB_PATH", ort).output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "stderr: {}\nstdout: {}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
}

fn one_error_line(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<_> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(lines[0].starts_with("qcanet: error: ") && lines[0].contains(needle), "{e}");
}

/// A generated embryo and its ground truth in `dir`: (raw, labels).
fn synth_in(dir: &Path, nuclei: u32, seed: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    let (raw, gt) = (dir.join("emb.tif"), dir.join("gt.tif"));
    ok(&qcanet(&["synth", "-o", s(&raw), "--labels", s(&gt), "--nuclei", &nuclei.to_string(), "--seed", &seed.to_string()]));
    (raw, gt)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn segment_measure_evaluate_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let (raw, gt) = synth_in(d.path(), 8, 4);
    let out = d.path().join("labels.tif");
    ok(&qcanet(&["segment", s(&raw), "-o", s(&out), "-q", "--measure"]));
    let st = qcanet::io::tiff::read(&out).unwrap();
    assert_eq!(st.dims, [51, 120, 120]);
    let v = st.voxel_size_um().unwrap();
    assert!((v[0] - 1.75).abs() < 1e-6 && (v[2] - 0.8).abs() < 1e-6, "calibration carried over: {v:?}");
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    assert!(csv.starts_with("frame,label,voxels,volume_um3"));
    let j = d.path().join("scores.json");
    let o = qcanet(&["evaluate", s(&out), s(&gt), "--json", s(&j)]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("mean of 1"));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert!(doc["mean"]["seg"].as_f64().unwrap() > 0.5, "{doc}");
    // detection at IoU 0.5..0.9: per file, mean and pooled, printed and in the JSON
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("AP.5") && text.contains("pooled over 1 file(s)"), "{text}");
    let pooled = doc["pooled"].as_array().unwrap();
    assert_eq!(pooled.len(), 5);
    assert_eq!((pooled[0]["threshold"].as_f64(), pooled[4]["threshold"].as_f64()), (Some(0.5), Some(0.9)));
    let m0 = &doc["files"][0]["metrics"]["matching"][0];
    assert_eq!(pooled[0]["tp"], m0["tp"]);
    assert_eq!(doc["files"][0]["metrics"]["n_matched"], m0["tp"]);
    let m = d.path().join("nuclei.csv");
    let o = qcanet(&["measure", s(&gt), "--image", s(&raw), "-o", s(&m)]);
    ok(&o);
    assert_eq!(std::fs::read_to_string(&m).unwrap().lines().count(), 9);
}

#[test]
fn a_folder_in_gives_a_folder_out_with_the_same_names() {
    let d = tempfile::tempdir().unwrap();
    let inp = d.path().join("in");
    std::fs::create_dir(&inp).unwrap();
    for (i, name) in ["a.tif", "b.tiff"].iter().enumerate() {
        ok(&qcanet(&[
            "synth",
            "-o",
            s(&inp.join(name)),
            "--labels",
            s(&d.path().join(format!("g{i}.tif"))),
            "--nuclei",
            "3",
            "--dims",
            "20,48,48",
            "--seed",
            &i.to_string(),
        ]));
    }
    let out = d.path().join("out");
    ok(&qcanet(&["segment", s(&inp), "-o", s(&out), "-q"]));
    assert!(out.join("a.tif").is_file() && out.join("b.tiff").is_file());
}

#[test]
fn time_series_is_segmented_frame_by_frame() {
    let d = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    for seed in [1u64, 2] {
        let e = qcanet::synth::generate(&qcanet::synth::SynthParams {
            dims: [16, 48, 48],
            n_nuclei: 2 + seed as usize,
            seed,
            ..Default::default()
        });
        frames.extend(e.image);
    }
    let p = d.path().join("series.tif");
    qcanet::io::tiff::write(&p, &qcanet::io::tiff::Samples::U16(frames), [16, 48, 48], 2, Some([1.75, 0.8, 0.8])).unwrap();
    let out = d.path().join("series_labels.tif");
    let o = qcanet(&["segment", s(&p), "-o", s(&out)]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nuclei per frame"));
    let st = qcanet::io::tiff::read(&out).unwrap();
    assert_eq!((st.frames, st.dims), (2, [16, 48, 48]));
}

#[test]
fn bad_inputs_fail_with_one_line_and_leave_no_file() {
    let d = tempfile::tempdir().unwrap();
    let junk = d.path().join("junk.tif");
    std::fs::write(&junk, b"definitely not a tiff").unwrap();
    let out = d.path().join("out.tif");
    one_error_line(&qcanet(&["segment", s(&junk), "-o", s(&out), "-q"]), "junk.tif");
    assert!(!out.exists());
    one_error_line(&qcanet(&["segment", s(&d.path().join("absent.tif")), "-o", s(&out), "-q"]), "absent.tif");
    let raw = d.path().join("emb.tif");
    ok(&qcanet(&["synth", "-o", s(&raw), "--labels", s(&d.path().join("g.tif")), "--nuclei", "2", "--dims", "16,40,40"]));
    one_error_line(&qcanet(&["segment", s(&raw), "-o", s(&d.path().join("no/such/dir/x.tif")), "-q"]), "does not exist");
    one_error_line(&qcanet(&["segment", s(&raw), "-o", s(&out), "-q", "--fg-threshold", "2"]), "fg_threshold 2 must be within 0..=1");
    one_error_line(&qcanet(&["segment", s(&raw), "-o", s(&out), "-q", "--nsn", s(&junk)]), "not a loadable ONNX model");
    one_error_line(
        &qcanet(&["segment", s(&raw), "-o", s(&out), "-q", "--onnxruntime", "/nonexistent/libonnxruntime.so"]),
        "could not load",
    );
    assert!(!out.exists());
    // usage errors are clap's (exit 2), with help
    assert_eq!(qcanet(&["segment"]).status.code(), Some(2));
    assert!(String::from_utf8_lossy(&qcanet(&["--help"]).stdout).contains("micrometres"));
}

#[test]
fn the_plan_is_printed_before_anything_runs() {
    let d = tempfile::tempdir().unwrap();
    let (raw, _) = synth_in(d.path(), 4, 2);
    // text: the file's calibration, said to be the file's
    let o = qcanet(&["plan", s(&raw), "--device", "cpu"]);
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("[51, 120, 120] voxels of [1.75, 0.8, 0.8] um (from the file)"), "{text}");
    assert!(text.contains("no resampling") && text.contains("min volume  700 um^3"), "{text}");
    // JSON, with an override and the old spelling of a name
    let o = qcanet(&["plan", s(&raw), "--device", "cpu", "--json", "--voxel-size", "2,0.8,0.8", "--markers", "components"]);
    ok(&o);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["voxel_size_source"], "caller");
    assert_eq!(plan["resampled"], true);
    assert_eq!(plan["post"]["markers"], "components");
    assert_eq!(plan["tiles"]["count"].as_array().unwrap().len(), 3);
    // refused exactly as segment refuses it
    one_error_line(&qcanet(&["plan", s(&raw), "--device", "cpu", "--min-volume=-3"]), "min_volume_um3 -3 must be >= 0");
    // segment --verbose prints the same plan per file
    let out = d.path().join("labels.tif");
    let o = qcanet(&["segment", s(&raw), "-o", s(&out), "--device", "cpu", "--verbose"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("model grid  [51, 120, 120]") && err.contains("markers     local-max of NDN > 0.3"), "{err}");
}

#[test]
fn block_by_block_streams_a_time_series_and_keeps_its_calibration() {
    let d = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    for seed in [3u64, 4] {
        let e = qcanet::synth::generate(&qcanet::synth::SynthParams { dims: [20, 64, 96], n_nuclei: 5, seed, ..Default::default() });
        frames.extend(e.image);
    }
    let p = d.path().join("series.tif");
    let every = qcanet::io::tiff::FrameInterval { value: 90.0, unit: "sec".into() };
    qcanet::io::tiff::write_timed(&p, &qcanet::io::tiff::Samples::U16(frames), [20, 64, 96], 2, Some([1.75, 0.8, 0.8]), Some(&every))
        .unwrap();
    let (whole, blocks) = (d.path().join("whole.tif"), d.path().join("blocks.tif"));
    ok(&qcanet(&["segment", s(&p), "-o", s(&whole), "--blocks", "whole"]));
    let o = qcanet(&["segment", s(&p), "-o", s(&blocks), "--blocks", "20,32,48", "--timings", "-v"]);
    ok(&o);
    let (err, out) = (String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
    assert!(err.contains("block by block") && err.contains("blocks      4 of core [20, 32, 48]"), "{err}");
    assert!(out.contains("timings: blocks ") && out.contains("peak_rss_mb="), "{out}");
    let (a, b) = (qcanet::io::tiff::read(&whole).unwrap(), qcanet::io::tiff::read(&blocks).unwrap());
    assert_eq!((b.frames, b.dims, b.voxel_size_um(), &b.frame_interval), (a.frames, a.dims, a.voxel_size_um(), &Some(every)));
    // the same nuclei, frame by frame (the partition within the networks' tiling noise)
    let n = 20 * 64 * 96;
    let (la, lb) = (a.samples.to_labels().unwrap(), b.samples.to_labels().unwrap());
    for t in 0..2 {
        let r = qcanet::metrics::agreement(&lb[t * n..(t + 1) * n], &la[t * n..(t + 1) * n]).unwrap();
        assert_eq!(r.nuclei_a, r.nuclei_b, "frame {t}: {r:?}");
        assert!(r.agreement > 0.98, "frame {t}: {r:?}");
    }
    // `qcanet compare` gives the same figures
    let o = qcanet(&["compare", s(&blocks), s(&whole), "--json"]);
    ok(&o);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = qcanet::metrics::agreement(&lb, &la).unwrap();
    assert_eq!((doc["fg_voxels"].as_u64(), doc["differing_voxels"].as_u64()), (Some(r.fg_voxels), Some(r.differing_voxels)));
    let other = d.path().join("other.tif");
    qcanet::io::tiff::write(&other, &qcanet::io::tiff::Samples::U16(vec![0; 8 * 8 * 2]), [2, 8, 8], 1, None).unwrap();
    one_error_line(&qcanet(&["compare", s(&blocks), s(&other)]), "frame(s)");
    std::fs::remove_file(&other).unwrap();
    // no scratch file left beside the output
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 3, "{left:?}");
    // --measure block by block: the CSV `qcanet measure` gives for the same labels and image,
    // byte for byte, both frames
    let m = d.path().join("m.tif");
    ok(&qcanet(&["segment", s(&p), "-o", s(&m), "-q", "--blocks", "20,32,48", "--measure"]));
    let reference = d.path().join("reference.csv");
    ok(&qcanet(&["measure", s(&m), "--image", s(&p), "-o", s(&reference)]));
    let (got, want) = (std::fs::read_to_string(d.path().join("m.csv")).unwrap(), std::fs::read_to_string(&reference).unwrap());
    assert_eq!(got, want);
    let frames: std::collections::BTreeSet<_> = got.lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    assert_eq!(frames.into_iter().collect::<Vec<_>>(), ["0", "1"]);
    assert!(got.lines().count() > 5, "{got}");
}
