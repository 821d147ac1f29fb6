//! The GPU path on a machine without a GPU (CI's): which ONNX Runtime each device loads,
//! and the errors a user sees when something is missing. Each case runs `qcanet` in its
//! own process, since a process loads one ONNX Runtime once.
//!
//! Needs the GPU build unpacked by `make runtime-gpu` (`make test` does that first). The
//! no-driver cases are `#[ignore]`d and run by `make test` with `--ignored` on machines
//! without an NVIDIA driver (CI's), so a GPU machine shows them as ignored, not passed.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cpu_runtime() -> String {
    std::env::var("ORT_DYLIB_PATH").expect("run through `make test` (ORT_DYLIB_PATH)")
}

fn gpu_runtime_dir() -> PathBuf {
    let d = root().join(".cache/onnxruntime-gpu");
    assert!(
        d.join("libonnxruntime_providers_cuda.so").is_file(),
        "{} has no GPU build of ONNX Runtime: run `make runtime-gpu` (make test does)",
        d.display()
    );
    d
}

/// `qcanet` from a copy of the program in `dir` (nothing beside it unless the test puts
/// it there), with a clean environment for the runtime search.
fn qcanet_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let exe = dir.join("qcanet");
    if !exe.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_qcanet"), &exe).unwrap();
    }
    let mut c = Command::new(&exe);
    c.args(args).env_remove("QCANET_ORT_GPU").env_remove("QCANET_CUDA_LIBS").env("ORT_DYLIB_PATH", cpu_runtime());
    for (k, v) in env {
        c.env(k, v);
    }
    // a fresh copy of a program can be "busy" for a moment: another test thread's fork may
    // still hold the descriptor the copy was written through (until that child execs)
    for _ in 0..100 {
        match c.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::sleep(std::time::Duration::from_millis(20)),
            r => return r.unwrap(),
        }
    }
    panic!("{} stayed busy (ETXTBSY) for 2 s", exe.display());
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `qcanet segment RAW -o OUT -q --device DEVICE` in `dir`, with `env`.
fn segment_in(dir: &Path, raw: &Path, out: &Path, device: &str, env: &[(&str, &str)]) -> Output {
    qcanet_in(dir, &["segment", raw.to_str().unwrap(), "-o", out.to_str().unwrap(), "-q", "--device", device], env)
}

fn synth(dir: &Path) -> PathBuf {
    let raw = dir.join("emb.tif");
    let o = qcanet_in(
        dir,
        &["synth", "-o", raw.to_str().unwrap(), "--labels", dir.join("gt.tif").to_str().unwrap(), "--nuclei", "4", "--dims", "24,64,64"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    raw
}

#[test]
#[ignore = "describes a machine without an NVIDIA driver (make test runs it there)"]
fn cuda_without_the_gpu_build_says_how_to_get_it() {
    let d = tempfile::tempdir().unwrap();
    let raw = synth(d.path());
    let out = d.path().join("labels.tif");
    let o = segment_in(d.path(), &raw, &out, "cuda", &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("GPU build of ONNX Runtime") && e.contains("make runtime-gpu") && e.contains("QCANET_ORT_GPU"), "{e}");
    assert!(!out.exists());
}

#[test]
#[ignore = "describes a machine without an NVIDIA driver (make test runs it there)"]
fn cuda_with_the_gpu_build_but_no_driver_names_the_driver() {
    let gpu = gpu_runtime_dir();
    let d = tempfile::tempdir().unwrap();
    let raw = synth(d.path());
    let out = d.path().join("labels.tif");
    let o = segment_in(d.path(), &raw, &out, "cuda", &[("QCANET_ORT_GPU", gpu.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("no NVIDIA driver") && e.contains("libcuda.so.1"), "{e}");
    assert_eq!(e.lines().count(), 1, "one error line: {e}");
    // the same when the GPU build sits beside the program, where `make build` links it
    std::os::unix::fs::symlink(&gpu, d.path().join("onnxruntime-gpu")).unwrap();
    let o = qcanet_in(d.path(), &["info", "--device", "cuda"], &[]);
    assert!(stderr(&o).contains("libcuda.so.1"), "{}", stderr(&o));
}

#[test]
#[ignore = "describes a machine without an NVIDIA driver (make test runs it there)"]
fn auto_falls_back_to_the_cpu_and_says_why_when_a_gpu_build_is_there() {
    let gpu = gpu_runtime_dir();
    let d = tempfile::tempdir().unwrap();
    let raw = synth(d.path());
    let out = d.path().join("labels.tif");
    let o = qcanet_in(
        d.path(),
        &["segment", raw.to_str().unwrap(), "-o", out.to_str().unwrap(), "--device", "auto"],
        &[("QCANET_ORT_GPU", gpu.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("note: CUDA not used") && e.contains("libcuda.so.1"), "{e}");
    assert!(e.contains("on cpu)"), "{e}");
    assert!(out.is_file());
    // without a GPU build, auto is the CPU and nothing is worth a note
    let o = qcanet_in(d.path(), &["segment", raw.to_str().unwrap(), "-o", out.to_str().unwrap(), "--device", "auto"], &[]);
    assert!(o.status.success() && !stderr(&o).contains("note: CUDA"), "{}", stderr(&o));
}

#[test]
fn the_gpu_build_runs_on_the_cpu_with_the_cpu_builds_labels() {
    let gpu = gpu_runtime_dir();
    let d = tempfile::tempdir().unwrap();
    let raw = synth(d.path());
    let (a, b) = (d.path().join("a.tif"), d.path().join("b.tif"));
    let o = segment_in(d.path(), &raw, &a, "cpu", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lib = gpu.join("libonnxruntime.so");
    let o = qcanet_in(
        d.path(),
        &["--onnxruntime", lib.to_str().unwrap(), "segment", raw.to_str().unwrap(), "-o", b.to_str().unwrap(), "-q", "--device", "cpu"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "labels from the two builds differ");
}

#[test]
fn timings_are_one_parsable_line() {
    let d = tempfile::tempdir().unwrap();
    let raw = synth(d.path());
    let out = d.path().join("labels.tif");
    let o =
        qcanet_in(d.path(), &["segment", raw.to_str().unwrap(), "-o", out.to_str().unwrap(), "-q", "--device", "cpu", "--timings"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    let line = s.lines().find(|l| l.starts_with("timings: ")).unwrap_or_else(|| panic!("{s}"));
    for key in ["device=cpu", "volumes=1", "median_network_ms=", "median_post_ms=", "wall_per_volume_ms="] {
        assert!(line.contains(key), "{key} in {line}");
    }
    // every stage and step is a number, and the steps add up to their stages
    let v: std::collections::HashMap<&str, &str> = line[9..].split_whitespace().filter_map(|f| f.split_once('=')).collect();
    let ms = |k: &str| v.get(k).unwrap_or_else(|| panic!("{k} in {line}")).parse::<f64>().unwrap_or_else(|_| panic!("{k} in {line}"));
    for k in [
        "load_ms",
        "median_read_ms",
        "median_write_ms",
        "median_normalise_ms",
        "median_resample_ms",
        "median_mask_ms",
        "median_markers_ms",
        "median_landscape_ms",
        "median_watershed_ms",
        "median_resample_back_ms",
    ] {
        assert!(ms(k) >= 0.0, "{k} in {line}");
    }
    let steps = ms("median_mask_ms")
        + ms("median_markers_ms")
        + ms("median_landscape_ms")
        + ms("median_watershed_ms")
        + ms("median_resample_back_ms");
    assert!(steps <= ms("median_post_ms") + 0.5 && steps >= 0.5 * ms("median_post_ms"), "post steps {steps} vs post in {line}");
    assert!(ms("median_network_ms") > 0.0 && ms("median_read_ms") > 0.0 && ms("median_write_ms") > 0.0, "{line}");
    assert!((ms("median_normalise_ms") + ms("median_resample_ms") - ms("median_prepare_ms")).abs() < 0.5, "{line}");
}
