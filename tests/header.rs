//! The committed include/qcanet.h is exactly what cbindgen generates from src/capi.rs now.
#[test]
fn committed_header_matches_cbindgen() {
    let generated = std::fs::read_to_string(env!("QCANET_GENERATED_HEADER")).unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/qcanet.h")).unwrap();
    assert!(generated == committed, "include/qcanet.h is out of date with src/capi.rs: run `make header` and commit it");
}

/// MATLAB's loadlibrary and ctypes need plain C: no unions, bit-fields, bool or variadics.
#[test]
fn header_has_only_what_loadlibrary_accepts() {
    let h = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/qcanet.h")).unwrap();
    let code = strip_comments(&h);
    for bad in ["union ", "bool ", "_Bool", "...", " : 1;"] {
        assert!(!code.contains(bad), "header contains '{bad}'");
    }
    for f in [
        "qca_abi_version",
        "qca_version",
        "qca_last_error",
        "qca_runtime_init",
        "qca_model_options_default",
        "qca_model_load",
        "qca_model_load_default",
        "qca_model_free",
        "qca_segment_params_default",
        "qca_segment_u16",
        "qca_segment_f32",
        "qca_segment_u8",
        "qca_postprocess_f32",
        "qca_evaluate",
        "qca_measure",
        "qca_status_str",
    ] {
        assert!(code.contains(&format!(" {f}(")) || code.contains(&format!("*{f}(")), "missing {f}");
    }
}

/// The header without its /* */ and // comments.
fn strip_comments(h: &str) -> String {
    let mut out = String::new();
    let mut rest = h;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = match rest[i..].find("*/") {
            Some(j) => &rest[i + j + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}
