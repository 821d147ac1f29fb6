//! Finding and starting ONNX Runtime (loaded at run time, never linked).
//!
//! Two builds exist: the CPU build (`onnxruntime` wheel, shipped beside qcanet) and the
//! GPU build (`onnxruntime-gpu` wheel: the same runtime plus its CUDA provider, 284 MB,
//! fetched by `make runtime-gpu`). One process loads one of them, once, so the device
//! asked for by the first model decides which:
//!
//! - CPU: the path given by the caller (`qca_runtime_init`, `--onnxruntime`),
//!   `ORT_DYLIB_PATH`, the folder of the qcanet library itself, the folder of the
//!   running program (and its `../lib`), then the system's library search path. In each
//!   folder an `onnxruntime-openvino/` build (`onnxruntime-openvino` wheel) comes first:
//!   its OpenVINO provider runs the networks on the CPU faster, with the same labels;
//!   where it does not start, the session falls back to ONNX Runtime's own CPU kernels.
//! - CUDA: a folder holding the GPU build: `QCANET_ORT_GPU`, the folder of
//!   `ORT_DYLIB_PATH` if it is one, then `onnxruntime-gpu/` beside the qcanet library,
//!   beside the program or in the program's `../lib`; then the NVIDIA driver and the
//!   CUDA libraries the provider needs ([`crate::cuda_libs`]). Anything missing is an
//!   error that names it.
//! - Auto: CUDA when all of that is there, else the CPU build; [`fallback_note`] says why
//!   CUDA was not used when a GPU build was there (without one the CPU is no surprise).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::cuda_libs;
use crate::error::{Error, Result};
use crate::session::Device;

const LIB_NAMES: [&str; 2] = ["libonnxruntime.so", "libonnxruntime.so.1"];
/// Name of the folder that holds the GPU build next to the library or the program.
pub const GPU_DIR_NAME: &str = "onnxruntime-gpu";
/// Name of the folder that holds the OpenVINO build next to the library or the program.
pub const OPENVINO_DIR_NAME: &str = "onnxruntime-openvino";
/// The OpenVINO provider's library, beside an `onnxruntime-openvino` build.
const OPENVINO_PROVIDER: &str = "libonnxruntime_providers_openvino.so";

struct Started {
    env: ort::environment::Environment,
    path: String,
    /// The GPU build, with the CUDA libraries it needs loaded.
    cuda: bool,
    /// A build with the OpenVINO provider beside it (`onnxruntime-openvino` wheel).
    openvino: bool,
    /// Why `Device::Auto` did not get CUDA, if it did not.
    note: Option<String>,
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
        // the OpenVINO build first: on the CPU it runs the networks faster, same labels
        c.push((format!("{what}, OpenVINO build"), d.join(OPENVINO_DIR_NAME).join(LIB_NAMES[0])));
        for n in LIB_NAMES {
            c.push((what.clone(), d.join(n)));
        }
    }
    for n in LIB_NAMES {
        c.push(("system library path".into(), PathBuf::from(n)));
    }
    c
}

/// True if `dir` holds a GPU build of ONNX Runtime (the CUDA provider beside the runtime).
fn is_gpu_runtime_dir(dir: &Path) -> bool {
    dir.join("libonnxruntime_providers_cuda.so").is_file() && dir.join("libonnxruntime_providers_shared.so").is_file()
}

/// True when `ORT_DYLIB_PATH` names a CPU build and no GPU build is asked for by name.
fn pinned_cpu_build() -> bool {
    let named_gpu = std::env::var_os("QCANET_ORT_GPU").is_some_and(|v| !v.is_empty());
    let pinned = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()).map(PathBuf::from);
    !named_gpu && pinned.is_some_and(|p| !p.parent().is_some_and(is_gpu_runtime_dir))
}

/// Folders that may hold the GPU build, with where each came from.
fn gpu_candidates() -> Vec<(String, PathBuf)> {
    let mut c = Vec::new();
    if let Some(v) = std::env::var_os("QCANET_ORT_GPU").filter(|v| !v.is_empty()) {
        c.push(("QCANET_ORT_GPU".to_string(), PathBuf::from(v)));
    }
    if let Some(d) =
        std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()).and_then(|p| PathBuf::from(p).parent().map(Path::to_path_buf))
    {
        c.push(("the folder of ORT_DYLIB_PATH".to_string(), d));
    }
    if let Some(d) = own_dir() {
        c.push(("beside the qcanet library".to_string(), d.join(GPU_DIR_NAME)));
    }
    if let Some(d) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        c.push(("beside the program".to_string(), d.join(GPU_DIR_NAME)));
        if let Some(p) = d.parent() {
            c.push(("the program's ../lib".to_string(), p.join("lib").join(GPU_DIR_NAME)));
        }
    }
    c
}

/// The GPU build's library in the first folder that holds one, or what was looked at.
pub fn find_gpu_runtime() -> std::result::Result<PathBuf, String> {
    let mut looked = Vec::new();
    for (what, d) in gpu_candidates() {
        if is_gpu_runtime_dir(&d) {
            if let Some(lib) = LIB_NAMES.iter().map(|n| d.join(n)).find(|p| p.exists()) {
                return Ok(lib);
            }
        }
        looked.push(format!("{} ({what})", d.display()));
    }
    Err(format!(
        "the GPU build of ONNX Runtime (libonnxruntime.so with libonnxruntime_providers_cuda.so beside it) was not found in: {}. \
         Run `make runtime-gpu` (it unpacks the onnxruntime-gpu wheel), or set QCANET_ORT_GPU to the folder that holds it",
        looked.join(", ")
    ))
}

fn already_started(s: &Started, device: Device, explicit: Option<&Path>) -> Result<String> {
    if let Some(p) = explicit {
        if Path::new(&s.path) != p {
            return Err(Error::Runtime(format!(
                "ONNX Runtime is already loaded from {}; it cannot be replaced by {} in the same process",
                s.path,
                p.display()
            )));
        }
    }
    if device == Device::Cuda && !s.cuda {
        return Err(Error::Runtime(format!(
            "CUDA was asked for, but this process already runs ONNX Runtime from {} without CUDA{}. \
             One process loads one ONNX Runtime: ask for CUDA with the first model it loads",
            s.path,
            s.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
        )));
    }
    Ok(s.path.clone())
}

/// Starts ONNX Runtime once per process, the build `device` needs (module docs). Later
/// calls return the same runtime (a different explicit path after a successful start, or
/// CUDA after a start without it, is an error).
pub fn init_for(device: Device, explicit: Option<&Path>) -> Result<String> {
    if let Some(s) = RUNTIME.get() {
        return already_started(s, device, explicit);
    }
    let _g = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = RUNTIME.get() {
        return already_started(s, device, explicit);
    }
    let mut note = None;
    let gpu: Option<PathBuf> = match (explicit, device) {
        // an explicit GPU build is used on the GPU unless the CPU was asked for
        (Some(p), d) => {
            let is_gpu = p.parent().is_some_and(is_gpu_runtime_dir);
            match (is_gpu, d) {
                (false, Device::Cuda) => {
                    return Err(Error::Runtime(format!(
                        "CUDA was asked for, but {} has no CUDA provider beside it (libonnxruntime_providers_cuda.so); \
                         use the GPU build (`make runtime-gpu`)",
                        p.display()
                    )))
                }
                (true, Device::Cuda) => {
                    cuda_libs::prepare().map_err(Error::Runtime)?;
                    None
                }
                (true, Device::Auto) => {
                    if let Err(e) = cuda_libs::prepare() {
                        note = Some(format!("CUDA not used: {e}"));
                    }
                    None
                }
                (false, Device::Auto) => {
                    note = Some(format!("CUDA not used: {} is a CPU build of ONNX Runtime", p.display()));
                    None
                }
                _ => None,
            }
        }
        (None, Device::Cpu) => None,
        (None, Device::Cuda) => {
            let lib = find_gpu_runtime().map_err(Error::Runtime)?;
            cuda_libs::prepare().map_err(Error::Runtime)?;
            Some(lib)
        }
        // ORT_DYLIB_PATH naming a CPU build pins the CPU (unless QCANET_ORT_GPU asks for a GPU build)
        (None, Device::Auto) if pinned_cpu_build() => None,
        (None, Device::Auto) => match find_gpu_runtime() {
            // no GPU build installed: the CPU is the plain choice, nothing to report
            Err(_) => None,
            Ok(lib) => match cuda_libs::prepare() {
                Ok(_) => Some(lib),
                Err(e) => {
                    note = Some(format!("CUDA not used: {e}"));
                    None
                }
            },
        },
    };
    // CUDA counts only where its libraries were loaded: the GPU branch above, or an explicit
    // GPU build with CUDA asked for or found to work
    let prepared = gpu.is_some() || (explicit.is_some() && device != Device::Cpu && note.is_none());
    let list = match &gpu {
        Some(lib) => vec![("the GPU build".to_string(), lib.clone())],
        None => candidates(explicit),
    };
    let explicit_only = explicit.is_some() || gpu.is_some();
    let mut tried = Vec::new();
    for (what, path) in list {
        let is_bare = path.components().count() == 1;
        if !is_bare && !path.exists() {
            tried.push(format!("{} ({what}: not found)", path.display()));
            continue;
        }
        // ort panics when the library lacks the expected API version; keep that inside.
        // Once one library is loaded (init_from succeeded) it stays the process's ONNX
        // Runtime: a failure after that ends the search instead of naming another path.
        let mut loaded = false;
        let r = crate::quiet_panic::catch(|| -> std::result::Result<ort::environment::Environment, String> {
            let b = ort::init_from(&path).map_err(|e| e.to_string())?;
            loaded = true;
            b.with_name("qcanet").build().map_err(|e| e.to_string())
        });
        match r {
            Ok(Ok(env)) => {
                let shown = path.display().to_string();
                // a GPU build counts only once its CUDA libraries are in place
                let cuda = device != Device::Cpu && prepared && path.parent().is_some_and(is_gpu_runtime_dir);
                let note = if device == Device::Cpu { None } else { note };
                // a bare name came from the system path: no folder to look in
                let real = std::fs::canonicalize(&path).ok();
                let openvino = !cuda && real.as_deref().and_then(Path::parent).is_some_and(|d| d.join(OPENVINO_PROVIDER).is_file());
                let _ = RUNTIME.set(Started { env, path: shown.clone(), cuda, openvino, note });
                return Ok(shown);
            }
            Ok(Err(e)) => tried.push(format!("{} ({what}: {e})", path.display())),
            Err(_) => tried.push(format!("{} ({what}: incompatible ONNX Runtime, need 1.22 or newer)", path.display())),
        }
        if explicit_only || loaded {
            break;
        }
    }
    Err(Error::Runtime(format!(
        "could not load libonnxruntime.so; tried: {}. Pass its path (qca_runtime_init / --onnxruntime), set ORT_DYLIB_PATH, or put it beside libqcanet.so",
        tried.join("; ")
    )))
}

/// Starts ONNX Runtime for a caller that names no device (`qca_runtime_init`,
/// `--onnxruntime`): CUDA if the build and the machine allow it.
pub fn init(explicit: Option<&Path>) -> Result<String> {
    init_for(Device::Auto, explicit)
}

/// The started environment for `device` (starting it if needed), and whether it can run CUDA.
pub fn environment_for(device: Device) -> Result<(&'static ort::environment::Environment, Providers)> {
    init_for(device, None)?;
    let s = RUNTIME.get().expect("runtime initialised above");
    Ok((&s.env, Providers { cuda: s.cuda, openvino: s.openvino }))
}

/// What the loaded ONNX Runtime can run besides its default CPU provider.
#[derive(Clone, Copy, Debug)]
pub struct Providers {
    pub cuda: bool,
    pub openvino: bool,
}

/// Why the automatic device choice did not get CUDA, once the runtime is started.
pub fn fallback_note() -> Option<String> {
    RUNTIME.get().and_then(|s| s.note.clone())
}

/// ONNX Runtime's build string (version, commit), if loaded.
pub fn build_info() -> Option<String> {
    RUNTIME.get().map(|_| ort::info().to_string())
}
