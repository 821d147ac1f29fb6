//! Safe by default: no run loses a user's data, and no file crashes qcanet. One test per
//! class of fault found by trying qcanet as a new user would and by fuzzing.
use std::path::Path;
use std::process::{Command, Output};

use qcanet::io::tiff::{self, Samples};

fn qcanet(args: &[&str]) -> Output {
    let ort = std::env::var("ORT_DYLIB_PATH").expect("run through `make test` (ORT_DYLIB_PATH)");
    Command::new(env!("CARGO_BIN_EXE_qcanet")).args(args).env("ORT_DYLIB_PATH", ort).env_remove("QCANET_ORT_GPU").output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn synth(p: &Path, seed: u64) {
    let gt = p.with_file_name(format!("gt_{seed}_{}", p.file_name().unwrap().to_str().unwrap()));
    let o = qcanet(&["synth", "-o", s(p), "--labels", s(&gt), "--nuclei", "3", "--dims", "16,48,48", "--seed", &seed.to_string()]);
    assert!(o.status.success(), "{}", err(&o));
    std::fs::remove_file(gt).unwrap();
}

fn refused(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(o).contains(needle), "wanted '{needle}' in: {}", err(o));
}

#[test]
fn outputs_never_replace_inputs() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.tif");
    synth(&a, 1);
    let before = std::fs::read(&a).unwrap();
    // the input as output, directly and through another spelling of the path
    refused(&qcanet(&["segment", s(&a), "-o", s(&a), "-q"]), "is an input");
    let other = d.path().join(".").join("a.tif");
    refused(&qcanet(&["segment", s(&a), "-o", s(&other), "-q"]), "is an input");
    // the input folder as output folder
    refused(&qcanet(&["segment", s(d.path()), "-o", s(d.path()), "-q"]), "is an input");
    // --measure's CSV onto the labels themselves
    refused(&qcanet(&["segment", s(&a), "-o", s(&d.path().join("res.csv")), "-q", "--measure"]), "would both be written");
    let b = d.path().join("b.tif");
    synth(&b, 2);
    assert_eq!(std::fs::read(&a).unwrap(), before, "the raw stack was changed");
    // measure and evaluate refuse to write over what they read
    refused(&qcanet(&["measure", s(&a), "-o", s(&a)]), "is an input");
    refused(&qcanet(&["evaluate", s(&a), s(&b), "--json", s(&b)]), "is an input");
    assert_eq!(std::fs::read(&a).unwrap(), before);
    // evaluate over folders: the JSON may not land on one of the paired files
    let (p, g) = (d.path().join("pred"), d.path().join("gt"));
    std::fs::create_dir(&p).unwrap();
    std::fs::create_dir(&g).unwrap();
    std::fs::copy(&a, p.join("x.tif")).unwrap();
    std::fs::copy(&a, g.join("x.tif")).unwrap();
    refused(&qcanet(&["evaluate", s(&p), s(&g), "--json", s(&p.join("x.tif"))]), "is an input");
}

#[test]
fn two_inputs_never_share_one_result() {
    let d = tempfile::tempdir().unwrap();
    for sub in ["x", "y"] {
        std::fs::create_dir(d.path().join(sub)).unwrap();
        synth(&d.path().join(sub).join("emb.tif"), 3);
    }
    let out = d.path().join("out");
    refused(&qcanet(&["segment", s(&d.path().join("x")), s(&d.path().join("y")), "-o", s(&out), "-q"]), "would both be written");
    assert!(!out.join("emb.tif").exists(), "no work before the refusal");
    // a.tif and a.tiff give different label files but one a.csv
    let e = d.path().join("e");
    std::fs::create_dir(&e).unwrap();
    synth(&e.join("a.tif"), 4);
    synth(&e.join("a.tiff"), 5);
    refused(&qcanet(&["segment", s(&e), "-o", s(&out), "-q", "--measure"]), "would both be written");
    // a .tif name for several results: no folder named labels.tif
    let lab = d.path().join("labels.tif");
    refused(&qcanet(&["segment", s(&d.path().join("x/emb.tif")), s(&d.path().join("y/emb.tif")), "-o", s(&lab), "-q"]), "name a folder");
    assert!(!lab.exists());
}

#[test]
fn a_bad_file_in_a_folder_does_not_stop_the_others() {
    let d = tempfile::tempdir().unwrap();
    let inp = d.path().join("in");
    std::fs::create_dir(&inp).unwrap();
    synth(&inp.join("a.tif"), 4);
    std::fs::write(inp.join("b.tif"), b"not a tiff at all").unwrap();
    synth(&inp.join("c.tif"), 5);
    let out = d.path().join("out");
    let o = qcanet(&["segment", s(&inp), "-o", s(&out), "-q"]);
    refused(&o, "1 of 3 file(s) failed");
    assert!(err(&o).contains("b.tif"), "{}", err(&o));
    assert!(out.join("a.tif").is_file() && out.join("c.tif").is_file(), "the good files are segmented");
    assert!(!out.join("b.tif").exists());
}

#[test]
fn results_follow_the_umask_and_stale_temporary_files_are_cleaned() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.tif");
    synth(&a, 6);
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // left by a run killed while writing (its process is gone)
    let stale = out.join(format!(".qcanet-99999999@{}@x1y2z3.tif.part", qcanet::io::atomic::hostname()));
    std::fs::write(&stale, b"half").unwrap();
    let ort = std::env::var("ORT_DYLIB_PATH").unwrap();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 027 && exec '{}' segment '{}' -o '{}' -q --measure",
            env!("CARGO_BIN_EXE_qcanet"),
            s(&a),
            s(&out.join("a.tif"))
        ))
        .env("ORT_DYLIB_PATH", ort)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    for f in ["a.tif", "a.csv"] {
        let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{f}: mode {mode:o} under umask 027");
    }
    assert!(!stale.exists(), "stale .part file removed");
    let names: Vec<String> = std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".part")), "{names:?}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    use std::os::fd::FromRawFd;
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.tif");
    synth(&a, 7);
    // stdout is a pipe whose reading end is already closed
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let w = unsafe { std::process::Stdio::from_raw_fd(fds[1]) };
    let o = Command::new(env!("CARGO_BIN_EXE_qcanet"))
        .args(["evaluate", s(&a), s(&a)])
        .env("ORT_DYLIB_PATH", std::env::var("ORT_DYLIB_PATH").unwrap())
        .stdout(w)
        .output()
        .unwrap();
    assert!(!err(&o).contains("panicked"), "{}", err(&o));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{:?}", o.status);
}

#[test]
fn meaningless_input_is_refused_with_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let flat = d.path().join("flat.tif");
    tiff::write(&flat, &Samples::U16(vec![100; 40 * 40]), [1, 40, 40], 1, Some([1.0, 0.5, 0.5])).unwrap();
    refused(&qcanet(&["segment", s(&flat), "-o", s(&d.path().join("o.tif")), "-q"]), "single 2-D image");
    // a voxel size a thousand times the model's (a wrong unit)
    let a = d.path().join("a.tif");
    synth(&a, 8);
    refused(&qcanet(&["segment", s(&a), "-o", s(&d.path().join("o.tif")), "-q", "--voxel-size", "1000,800,800"]), "resamples by at most");
    // a NaN voxel size is never written into a file
    let e = tiff::write(d.path().join("nan.tif"), &Samples::U16(vec![0; 8]), [2, 2, 2], 1, Some([f64::NAN, 1.0, 1.0])).unwrap_err();
    assert!(e.to_string().contains("must be three positive lengths"), "{e}");
}

/// A TIFF built by hand: one 16-bit page with the given tags (value fits in 4 bytes) and an
/// ImageJ description. Enough to reach every size the reader takes from a file.
fn tiny_tiff(width: u32, height: u32, pages: u32, description: &str, xres: (u32, u32)) -> Vec<u8> {
    tiny_tiff_with(width, height, pages, description, xres, &[])
}

/// As `tiny_tiff`, with extra tags (tag, type, count, value) on every page.
fn tiny_tiff_with(width: u32, height: u32, pages: u32, description: &str, xres: (u32, u32), extra: &[(u16, u16, u32, u32)]) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend(8u32.to_le_bytes());
    let desc = format!("{description}\0").into_bytes();
    let data_len = (width * height * 2).min(1 << 16) as usize;
    let mut ifd_offsets = Vec::new();
    // the data and the description first, then the IFDs
    let data_at = out.len() as u32;
    out.extend(vec![0u8; data_len]);
    let desc_at = out.len() as u32;
    out.extend(&desc);
    let res_at = out.len() as u32;
    out.extend(xres.0.to_le_bytes());
    out.extend(xres.1.to_le_bytes());
    for p in 0..pages {
        if out.len() % 2 == 1 {
            out.push(0);
        }
        ifd_offsets.push(out.len());
        let mut tags: Vec<(u16, u16, u32, u32)> = vec![
            (256, 4, 1, width),
            (257, 4, 1, height),
            (258, 3, 1, 16),
            (259, 3, 1, 1),
            (262, 3, 1, 1),
            (273, 4, 1, data_at),
            (277, 3, 1, 1),
            (278, 4, 1, height),
            (279, 4, 1, width * height * 2),
            (282, 5, 1, res_at),
            (283, 5, 1, res_at),
        ];
        tags.extend_from_slice(extra);
        if p == 0 {
            tags.push((270, 2, desc.len() as u32, desc_at));
        }
        tags.sort();
        out.extend((tags.len() as u16).to_le_bytes());
        for (tag, ty, count, value) in &tags {
            out.extend(tag.to_le_bytes());
            out.extend(ty.to_le_bytes());
            out.extend(count.to_le_bytes());
            if *ty == 3 {
                out.extend((*value as u16).to_le_bytes());
                out.extend([0, 0]);
            } else {
                out.extend(value.to_le_bytes());
            }
        }
        out.extend(0u32.to_le_bytes()); // next IFD, patched below
    }
    // chain the IFDs
    out[4..8].copy_from_slice(&(ifd_offsets[0] as u32).to_le_bytes());
    for w in 0..ifd_offsets.len() - 1 {
        let at = ifd_offsets[w];
        let n = u16::from_le_bytes([out[at], out[at + 1]]) as usize;
        let next = at + 2 + n * 12;
        out[next..next + 4].copy_from_slice(&(ifd_offsets[w + 1] as u32).to_le_bytes());
    }
    out
}

#[test]
fn sizes_in_file_metadata_are_bounded() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.tif");
    // hyperstack numbers that overflow or divide by zero once multiplied
    for desc in [
        "ImageJ=1.54f\nimages=4\nchannels=4294967296\nframes=4294967296\n",
        "ImageJ=1.54f\nimages=4\nchannels=9223372036854775808\nslices=2\n",
        "ImageJ=1.54f\nimages=4\nframes=18446744073709551615\nchannels=2\n",
        "ImageJ=1.54f\nimages=4\nslices=0\nframes=0\nchannels=0\n",
    ] {
        std::fs::write(&p, tiny_tiff(8, 8, 4, desc, (1, 1))).unwrap();
        let st = tiff::read(&p).unwrap_or_else(|e| panic!("{desc:?}: {e}"));
        assert_eq!((st.dims, st.channels, st.frames), ([4, 8, 8], 1, 1), "{desc:?}");
    }
    // a page claiming 65535 x 65535 16-bit voxels (8 GiB) in a file of a few kilobytes
    std::fs::write(&p, tiny_tiff(65535, 65535, 1, "ImageJ=1.54f\n", (1, 1))).unwrap();
    let e = tiff::read(&p).unwrap_err();
    assert!(e.to_string().contains("too large to read whole"), "{e}");
    // calibration: no unit = uncalibrated; units converted; a tiny resolution is refused by
    // the segmenter's resampling bound, not by an allocation
    std::fs::write(&p, tiny_tiff(8, 8, 2, "ImageJ=1.54f\nspacing=2\n", (1, 1))).unwrap();
    assert_eq!(tiff::read(&p).unwrap().voxel_size_um(), None);
    std::fs::write(&p, tiny_tiff(8, 8, 2, "ImageJ=1.54f\nunit=mm\nspacing=0.002\n", (1000, 1))).unwrap();
    let v = tiff::read(&p).unwrap().voxel_size_um().unwrap();
    assert!((v[0] - 2.0).abs() < 1e-9 && (v[2] - 1.0).abs() < 1e-9, "{v:?}");
    std::fs::write(&p, tiny_tiff(8, 8, 2, "ImageJ=1.54f\nunit=inch\nspacing=1\n", (1, 1))).unwrap();
    assert_eq!(tiff::read(&p).unwrap().voxel_size_um().unwrap()[0], 25_400.0);
    std::fs::write(&p, tiny_tiff(8, 8, 2, "ImageJ=1.54f\nunit=micron\n", (1, 1_000_000_000))).unwrap();
    let v = tiff::read(&p).unwrap().voxel_size_um().unwrap();
    assert!((v[2] - 1e9).abs() < 1.0, "{v:?}");
}

#[test]
fn uncalibrated_files_get_the_models_voxel_size_written_and_said() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("raw.tif");
    let e = qcanet::synth::generate(&qcanet::synth::SynthParams { dims: [16, 48, 48], n_nuclei: 3, seed: 9, ..Default::default() });
    tiff::write(&raw, &Samples::U16(e.image), e.dims, 1, None).unwrap();
    let out = d.path().join("labels.tif");
    let o = qcanet(&["segment", s(&raw), "-o", s(&out), "--measure"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("has no calibration"), "{}", err(&o));
    let v = tiff::read(&out).unwrap().voxel_size_um().expect("the voxel size used is written");
    assert!((v[0] - 1.75).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6, "{v:?}");
    // measurements in cubic micrometres of that grid, not voxel counts
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).expect("one nucleus at least").split(',').collect();
    let (voxels, um3): (f64, f64) = (row[2].parse().unwrap(), row[3].parse().unwrap());
    assert!((um3 - voxels * 1.75 * 0.8 * 0.8).abs() < 1e-6 * um3.max(1.0), "{row:?}");
}

#[test]
fn a_decoder_panic_is_an_error_that_prints_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.tif");
    // a SampleFormat tag with no values panics inside the `tiff` crate (found by fuzz_tiff)
    std::fs::write(&p, tiny_tiff_with(8, 8, 2, "ImageJ=1.54f\n", (1, 1), &[(339, 3, 0, 0)])).unwrap();
    let e = tiff::read(&p).unwrap_err();
    assert!(e.to_string().contains("malformed file"), "{e}");
    let o = qcanet(&["measure", s(&p), "-o", s(&d.path().join("m.csv"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!err(&o).contains("panicked") && err(&o).lines().count() == 1, "{}", err(&o));
}

#[test]
fn ctrl_c_stops_cleanly_and_leaves_nothing_half_written() {
    let d = tempfile::tempdir().unwrap();
    let inp = d.path().join("in");
    std::fs::create_dir(&inp).unwrap();
    let e = qcanet::synth::generate(&qcanet::synth::SynthParams { dims: [51, 320, 320], n_nuclei: 30, seed: 2, ..Default::default() });
    tiff::write(inp.join("v0.tif"), &Samples::U16(e.image), e.dims, 1, Some(e.voxel_size)).unwrap();
    // eight volumes of 5 M voxels: far more work than the 1.5 s before the signal
    for k in 1..8 {
        std::os::unix::fs::symlink(inp.join("v0.tif"), inp.join(format!("v{k}.tif"))).unwrap();
    }
    let out = d.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_qcanet"))
        .args(["segment", s(&inp), "-o", s(&out), "-q", "--device", "cpu"])
        .env("ORT_DYLIB_PATH", std::env::var("ORT_DYLIB_PATH").unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", err(&o));
    assert!(err(&o).contains("interrupted") && !err(&o).contains("panicked"), "{}", err(&o));
    // what is there is complete; nothing half-written
    for f in std::fs::read_dir(&out).unwrap().flatten() {
        let name = f.file_name().into_string().unwrap();
        assert!(!name.ends_with(".part"), "{name}");
        assert_eq!(tiff::read(f.path()).unwrap().dims, [51, 320, 320], "{name}");
    }
}

#[test]
fn a_time_lapse_keeps_its_frame_interval() {
    let d = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    for seed in [1u64, 2] {
        frames.extend(
            qcanet::synth::generate(&qcanet::synth::SynthParams { dims: [16, 48, 48], n_nuclei: 3, seed, ..Default::default() }).image,
        );
    }
    let every = tiff::FrameInterval { value: 7.5, unit: "min".into() };
    let raw = d.path().join("lapse.tif");
    tiff::write_timed(&raw, &Samples::U16(frames), [16, 48, 48], 2, Some([1.75, 0.8, 0.8]), Some(&every)).unwrap();
    assert_eq!(tiff::read(&raw).unwrap().frame_interval, Some(every.clone()));
    let out = d.path().join("labels.tif");
    let o = qcanet(&["segment", s(&raw), "-o", s(&out), "-q"]);
    assert!(o.status.success(), "{}", err(&o));
    let st = tiff::read(&out).unwrap();
    assert_eq!((st.frames, st.frame_interval), (2, Some(every)));
}
