#![allow(dead_code)]
use std::path::PathBuf;

/// ONNX Runtime for the tests: `make test` sets ORT_DYLIB_PATH (a test without it fails, loudly).
pub fn runtime() {
    let p = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH is not set: run the tests through `make test`");
    qcanet::runtime::init(Some(std::path::Path::new(&p))).expect("ONNX Runtime");
}

pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("data").join(name)
}
