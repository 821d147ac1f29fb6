//! Finding and starting ONNX Runtime (loaded at run time, never linked).
//!
//! Search order: the path given by the caller (`qca_runtime_init`, `--onnxruntime`),
//! `ORT_DYLIB_PATH`, the folder of the qcanet library itself, the folder of the
//! running program, then the system's library search path.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

const LIB_NAMES: [&str; 2] = ["libonnxruntime.so", "libonnxruntime.so.1"];

struct Started {
    env: ort::environment::Environment,
    path: String,
}

static RUNTIME: OnceLock<Started> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Folder holding the shared object this code lives in (libqcanet.so or the program).
fn own_dir() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address and fills `info`.
    let ok = unsafe { libc::dladdr(own_dir as *const libc::c_void, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let p = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
    let p = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(p));
    p.parent().map(Path::to_path_buf)
}

fn candidates(explicit: Option<&Path>) -> Vec<(String, PathBuf)> {
    let mut c = Vec::new();
    if let Some(p) = explicit {
        c.push(("given path".to_string(), p.to_path_buf()));
        return c; // an explicit path is a requirement, not a hint
    }
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        if !p.is_empty() {
            c.push(("ORT_DYLIB_PATH".into(), PathBuf::from(p)));
        }
    }
    let mut dirs = Vec::new();
    if let Some(d) = own_dir() {
        dirs.push(("beside the qcanet library".to_string(), d));
    }
    if let Some(d) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        // an installed program (PREFIX/bin) finds the runtime in PREFIX/lib
        let lib = d.parent().map(|p| p.join("lib"));
        dirs.push(("beside the program".to_string(), d));
        if let Some(lib) = lib {
            dirs.push(("the program's ../lib".to_string(), lib));
        }
    }
    for (what, d) in dirs {
        for n in LIB_NAMES {
            c.push((what.clone(), d.join(n)));
        }
    }
    for n in LIB_NAMES {
        c.push(("system library path".into(), PathBuf::from(n)));
    }
    c
}

/// Starts ONNX Runtime once per process. Later calls return the same runtime
/// (a different explicit path after a successful start is an error).
pub fn init(explicit: Option<&Path>) -> Result<String> {
    if let Some(s) = RUNTIME.get() {
        if let Some(p) = explicit {
            if Path::new(&s.path) != p {
                return Err(Error::Runtime(format!(
                    "ONNX Runtime is already loaded from {}; it cannot be replaced by {} in the same process",
                    s.path,
                    p.display()
                )));
            }
        }
        return Ok(s.path.clone());
    }
    let _g = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = RUNTIME.get() {
        return Ok(s.path.clone());
    }
    let mut tried = Vec::new();
    for (what, path) in candidates(explicit) {
        let is_bare = path.components().count() == 1;
        if !is_bare && !path.exists() {
            tried.push(format!("{} ({what}: not found)", path.display()));
            continue;
        }
        // ort panics when the library lacks the expected API version; keep that inside
        let r = std::panic::catch_unwind(|| -> std::result::Result<ort::environment::Environment, String> {
            let b = ort::init_from(&path).map_err(|e| e.to_string())?;
            b.with_name("qcanet").build().map_err(|e| e.to_string())
        });
        match r {
            Ok(Ok(env)) => {
                let shown = path.display().to_string();
                let _ = RUNTIME.set(Started { env, path: shown.clone() });
                return Ok(shown);
            }
            Ok(Err(e)) => tried.push(format!("{} ({what}: {e})", path.display())),
            Err(_) => tried.push(format!("{} ({what}: incompatible ONNX Runtime, need 1.22 or newer)", path.display())),
        }
        if explicit.is_some() {
            break;
        }
    }
    Err(Error::Runtime(format!(
        "could not load libonnxruntime.so; tried: {}. Pass its path (qca_runtime_init / --onnxruntime), set ORT_DYLIB_PATH, or put it beside libqcanet.so",
        tried.join("; ")
    )))
}

/// The started environment (starting it from the default places if needed).
pub fn environment() -> Result<&'static ort::environment::Environment> {
    init(None)?;
    Ok(&RUNTIME.get().expect("runtime initialised above").env)
}

/// Where the runtime was loaded from, if it was.
pub fn loaded_path() -> Option<String> {
    RUNTIME.get().map(|s| s.path.clone())
}

/// ONNX Runtime's build string (version, commit), if loaded.
pub fn build_info() -> Option<String> {
    RUNTIME.get().map(|_| ort::info().to_string())
}
