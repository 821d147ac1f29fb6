//! The OpenVINO build of ONNX Runtime (`make runtime-openvino`, part of `make runtime`): found
//! first on the CPU, its provider starts, and the labels are those of ONNX Runtime's own CPU
//! kernels.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn openvino_runtime() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/onnxruntime-openvino/libonnxruntime.so");
    assert!(p.exists(), "{} is missing: run `make runtime` (it fetches the onnxruntime-openvino wheel)", p.display());
    p
}

fn qcanet(args: &[&str], runtime: &Path) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_qcanet")).args(args).env("ORT_DYLIB_PATH", runtime).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

#[test]
fn the_openvino_provider_starts_and_gives_the_default_providers_labels() {
    let ov = openvino_runtime();
    let plain = PathBuf::from(std::env::var("ORT_DYLIB_PATH").expect("run through `make test` (ORT_DYLIB_PATH)"));
    let info = String::from_utf8_lossy(&qcanet(&["info", "--device", "cpu"], &ov).stdout).into_owned();
    assert!(info.contains("on cpu (openvino provider)"), "{info}");
    let info = String::from_utf8_lossy(&qcanet(&["info", "--device", "cpu"], &plain).stdout).into_owned();
    assert!(info.contains("on cpu (default provider)"), "{info}");
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("emb.tif");
    let gt = d.path().join("gt.tif");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    qcanet(&["synth", "-o", &s(&raw), "--labels", &s(&gt), "--nuclei", "14", "--seed", "7", "--time", "0.6"], &plain);
    let (a, b) = (d.path().join("default.tif"), d.path().join("openvino.tif"));
    qcanet(&["segment", &s(&raw), "-o", &s(&a), "-q", "--device", "cpu"], &plain);
    qcanet(&["segment", &s(&raw), "-o", &s(&b), "-q", "--device", "cpu"], &ov);
    let (la, lb) = (qcanet::io::tiff::read(&a).unwrap(), qcanet::io::tiff::read(&b).unwrap());
    let (la, lb) = (la.samples.to_labels().unwrap(), lb.samples.to_labels().unwrap());
    let differ = la.iter().zip(&lb).filter(|(x, y)| x != y).count();
    assert_eq!(differ, 0, "{differ} voxels labelled differently by the OpenVINO provider");
    assert!(la.iter().any(|&v| v > 0));
}

#[test]
fn with_nothing_pinned_the_openvino_build_beside_the_program_is_found_first() {
    // `make build` links .cache/onnxruntime-openvino beside the program as onnxruntime-openvino/
    openvino_runtime();
    let run = |extra: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_qcanet"));
        c.args(["info", "--device", "cpu"]).env_remove("ORT_DYLIB_PATH");
        for (k, v) in extra {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let info = run(&[]);
    assert!(info.contains("onnxruntime-openvino/libonnxruntime.so") && info.contains("on cpu (openvino provider)"), "{info}");
    // the opt-out: the same runtime on its own CPU kernels
    let info = run(&[("QCANET_OPENVINO", "0")]);
    assert!(info.contains("on cpu (default provider)"), "{info}");
}
