//! Build script: embeds the default model from models/ (when present) and
//! regenerates include/qcanet.h from src/capi.rs with cbindgen.
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let model = root.join("models").join("qcanet-default.onnx");
    println!("cargo:rerun-if-changed=models");
    println!("cargo:rerun-if-changed=src/capi.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let code = if model.exists() {
        format!(
            "/// ONNX bytes of the embedded default model, if this build has one.\n\
             pub const DEFAULT_MODEL: Option<&[u8]> = Some(include_bytes!({:?}));\n\
             /// File name of the embedded default model.\npub const DEFAULT_MODEL_NAME: &str = \"qcanet-default.onnx\";\n",
            model.display().to_string()
        )
    } else {
        "/// ONNX bytes of the embedded default model, if this build has one.\n\
         pub const DEFAULT_MODEL: Option<&[u8]> = None;\n\
         /// File name of the embedded default model.\npub const DEFAULT_MODEL_NAME: &str = \"(none)\";\n"
            .to_string()
    };
    // its int8 (QDQ) version, calibrated on training volumes (tools/quantize_int8.py)
    let int8 = root.join("models").join("qcanet-default-int8.onnx");
    let code = code
        + &if int8.exists() {
            format!(
                "/// ONNX bytes of the embedded default model's int8 version, if this build has one.\n\
                 pub const DEFAULT_MODEL_INT8: Option<&[u8]> = Some(include_bytes!({:?}));\n",
                int8.display().to_string()
            )
        } else {
            "/// ONNX bytes of the embedded default model's int8 version, if this build has one.\n\
             pub const DEFAULT_MODEL_INT8: Option<&[u8]> = None;\n"
                .to_string()
        };
    std::fs::write(out.join("default_model.rs"), code).unwrap();

    // The header is generated into OUT_DIR and copied to include/ only when asked
    // (QCANET_WRITE_HEADER=1, `make header`), so that a test can detect drift.
    let cfg = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    match cbindgen::Builder::new().with_crate(&root).with_config(cfg).generate() {
        Ok(b) => {
            b.write_to_file(out.join("qcanet.h"));
            if std::env::var("QCANET_WRITE_HEADER").map(|v| v == "1").unwrap_or(false) {
                b.write_to_file(root.join("include").join("qcanet.h"));
            }
            println!("cargo:rustc-env=QCANET_GENERATED_HEADER={}", out.join("qcanet.h").display());
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    }
    println!("cargo:rerun-if-env-changed=QCANET_WRITE_HEADER");
}
