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
    qcanet(&["segment", &s(&raw), "-o", &s(&a), "-q", "--device", "cpu", "--precision", "fp32"], &plain);
    qcanet(&["segment", &s(&raw), "-o", &s(&b), "-q", "--device", "cpu", "--precision", "fp32"], &ov);
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

#[test]
fn int8_is_the_default_under_openvino_and_agrees_with_fp32() {
    let ov = openvino_runtime();
    let info = String::from_utf8_lossy(&qcanet(&["info", "--device", "cpu"], &ov).stdout).into_owned();
    if qcanet::session::int8_pays() {
        assert!(info.contains("(openvino provider) in int8"), "{info}");
    } else {
        eprintln!("this CPU has no AVX2: auto must stay fp32");
        assert!(info.contains("(openvino provider) in fp32"), "{info}");
    }
    // explicit choices, whatever the CPU
    let info = String::from_utf8_lossy(&qcanet(&["info", "--device", "cpu", "--precision", "fp32"], &ov).stdout).into_owned();
    assert!(info.contains("in fp32"), "{info}");
    let d = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (raw, gt) = (d.path().join("emb.tif"), d.path().join("gt.tif"));
    qcanet(&["synth", "-o", &s(&raw), "--labels", &s(&gt), "--nuclei", "14", "--seed", "7", "--time", "0.6"], &ov);
    let (a, b) = (d.path().join("fp32.tif"), d.path().join("int8.tif"));
    qcanet(&["segment", &s(&raw), "-o", &s(&a), "-q", "--device", "cpu", "--precision", "fp32"], &ov);
    qcanet(&["segment", &s(&raw), "-o", &s(&b), "-q", "--device", "cpu", "--precision", "int8"], &ov);
    let read = |p: &Path| qcanet::io::tiff::read(p).unwrap().samples.to_labels().unwrap();
    let (la, lb) = (read(&a), read(&b));
    let agree = qcanet::metrics::agreement(&la, &lb).unwrap();
    eprintln!("int8 against fp32: {agree:?}");
    // measured 99.45 % of the foreground, 14 and 14 nuclei (README "int8")
    assert!(agree.agreement >= 0.98, "int8 and fp32 agree on only {:?}", agree);
    assert!(agree.nuclei_a.abs_diff(agree.nuclei_b) <= 1, "{:?}", agree);
    // int8 is the embedded model's: a model file without an int8 version is refused with a way out
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qcanet-default.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_qcanet"))
        .args(["info", "--device", "cpu", "--precision", "int8", "--nsn", &s(&model)])
        .env("ORT_DYLIB_PATH", &ov)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("quantize_int8.py"), "{}", String::from_utf8_lossy(&o.stderr));
}
