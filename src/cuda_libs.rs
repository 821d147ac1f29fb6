//! Finding the NVIDIA libraries that ONNX Runtime's CUDA provider needs, before it loads.
//!
//! `libonnxruntime_providers_cuda.so` (onnxruntime-gpu 1.31, CUDA 13 build) links to
//! cudart, cuBLAS/cuBLASLt and cuRAND and opens cuFFT, NVRTC and cuDNN at run time. A
//! user's machine has them in one of two places: a system CUDA installation (found by
//! the loader, `CUDA_HOME`, `/usr/local/cuda`) or NVIDIA's PyPI wheels inside a Python
//! environment (`site-packages/nvidia/<package>/lib`, which the loader never searches;
//! PyTorch's CUDA builds bring these). Each library is opened once, by full path and
//! `RTLD_GLOBAL`, so that the provider's own `dlopen` finds it already loaded under its
//! soname. When one is missing the error names it and the package that provides it,
//! instead of ONNX Runtime's generic "failed to load the CUDA provider".
//!
//! Search order for each library: `QCANET_CUDA_LIBS` (folders separated by `:`), the
//! system loader (`LD_LIBRARY_PATH`, ldconfig), `CUDA_HOME`/`CUDA_PATH`, `/usr/local/cuda`,
//! then the `nvidia/*/lib` folders of the Python environments in sight: `VIRTUAL_ENV`,
//! `CONDA_PREFIX`, the environment of each `python3`/`python` on `PATH`, and the
//! system's and the user's site-packages.

use std::ffi::{CStr, CString, OsString};
use std::path::PathBuf;

/// One library the CUDA provider needs: soname, what it is, where to get it.
pub struct Needed {
    pub soname: &'static str,
    pub what: &'static str,
    pub pypi: &'static str,
}

/// In load order (cuBLAS needs cuBLASLt already loaded).
pub const NEEDED: [Needed; 7] = [
    Needed { soname: "libcudart.so.13", what: "CUDA runtime 13", pypi: "nvidia-cuda-runtime" },
    Needed { soname: "libcublasLt.so.13", what: "cuBLASLt 13", pypi: "nvidia-cublas" },
    Needed { soname: "libcublas.so.13", what: "cuBLAS 13", pypi: "nvidia-cublas" },
    Needed { soname: "libcurand.so.10", what: "cuRAND 10", pypi: "nvidia-curand" },
    Needed { soname: "libcufft.so.12", what: "cuFFT 12", pypi: "nvidia-cufft" },
    Needed { soname: "libnvrtc.so.13", what: "NVRTC 13", pypi: "nvidia-cuda-nvrtc" },
    Needed { soname: "libcudnn.so.9", what: "cuDNN 9", pypi: "nvidia-cudnn-cu13" },
];

fn dlopen_global(name: &str) -> Result<(), String> {
    let c = CString::new(name).map_err(|_| format!("{name}: bad path"))?;
    // SAFETY: dlopen takes a NUL-terminated path; the handle is deliberately kept open
    // for the life of the process (the provider relies on the library staying loaded).
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        // SAFETY: dlerror returns a thread-local C string or NULL.
        let e = unsafe { libc::dlerror() };
        let msg = if e.is_null() { "unknown error".to_string() } else { unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned() };
        return Err(msg);
    }
    Ok(())
}

/// Python site-packages folders that may hold NVIDIA wheels.
fn site_packages(env: &Env<'_>) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            roots.push(PathBuf::from(v));
        }
    }
    if let Some(path) = env("PATH") {
        for dir in std::env::split_paths(&path) {
            for exe in ["python3", "python"] {
                let p = dir.join(exe);
                if p.is_file() {
                    // bin/python3 -> the environment's root (links kept: a venv's python
                    // links to the base interpreter, whose root is not the venv's)
                    if let Some(root) = dir.parent() {
                        roots.push(root.to_path_buf());
                    }
                }
            }
        }
    }
    if let Some(home) = env("HOME") {
        roots.push(PathBuf::from(home).join(".local"));
    }
    roots.push(PathBuf::from("/usr/local"));
    roots.push(PathBuf::from("/usr"));
    let mut out = Vec::new();
    for r in roots {
        let lib = r.join("lib");
        let Ok(rd) = std::fs::read_dir(&lib) else {
            continue;
        };
        let mut pys: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3")))
            .collect();
        pys.sort();
        for py in pys {
            for sp in ["site-packages", "dist-packages"] {
                let d = py.join(sp);
                if d.is_dir() && !out.contains(&d) {
                    out.push(d);
                }
            }
        }
    }
    out
}

/// Reads an environment variable (a parameter so that tests need not change the process's).
type Env<'a> = dyn Fn(&str) -> Option<OsString> + 'a;

/// Folders to look in, most specific first (the system loader is tried separately).
pub fn search_dirs() -> Vec<PathBuf> {
    search_dirs_in(&|k| std::env::var_os(k))
}

fn search_dirs_in(env: &Env<'_>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(v) = env("QCANET_CUDA_LIBS") {
        dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            dirs.push(PathBuf::from(&v).join("lib64"));
            dirs.push(PathBuf::from(&v).join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    for sp in site_packages(env) {
        let Ok(rd) = std::fs::read_dir(sp.join("nvidia")) else {
            continue;
        };
        let mut libs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path().join("lib"))).filter(|p| p.is_dir()).collect();
        libs.sort();
        dirs.extend(libs);
    }
    dirs.dedup();
    dirs
}

fn find_in(dirs: &[PathBuf], soname: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(soname)).find(|p| p.is_file())
}

/// Number of CUDA devices the driver sees, or why there are none.
pub fn device_count() -> Result<i32, String> {
    dlopen_global("libcuda.so.1").map_err(|e| format!("no NVIDIA driver: libcuda.so.1 cannot be loaded ({e})"))?;
    let lib = CString::new("libcuda.so.1").unwrap();
    // SAFETY: the library is loaded (above); RTLD_NOLOAD only returns its handle.
    let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if h.is_null() {
        return Err("libcuda.so.1 vanished after loading".into());
    }
    let sym = |n: &str| {
        let c = CString::new(n).unwrap();
        // SAFETY: dlsym on a valid handle with a NUL-terminated name.
        unsafe { libc::dlsym(h, c.as_ptr()) }
    };
    let (init, count) = (sym("cuInit"), sym("cuDeviceGetCount"));
    if init.is_null() || count.is_null() {
        return Err("libcuda.so.1 lacks cuInit/cuDeviceGetCount".into());
    }
    // SAFETY: the driver API's documented signatures: CUresult cuInit(unsigned),
    // CUresult cuDeviceGetCount(int *).
    let (init, count): (extern "C" fn(u32) -> i32, extern "C" fn(*mut i32) -> i32) =
        unsafe { (std::mem::transmute(init), std::mem::transmute(count)) };
    let r = init(0);
    if r != 0 {
        return Err(format!("the NVIDIA driver did not start (cuInit error {r}; 100 = no CUDA device)"));
    }
    let mut n = 0i32;
    let r = count(&mut n);
    if r != 0 {
        return Err(format!("cuDeviceGetCount error {r}"));
    }
    if n <= 0 {
        return Err("the NVIDIA driver sees no CUDA device".into());
    }
    Ok(n)
}

/// Checks for a CUDA device and loads every library the provider needs, or says which
/// ones are missing and how to get them. Safe to call more than once.
pub fn prepare() -> Result<(), String> {
    device_count()?;
    let dirs = search_dirs();
    let mut missing = Vec::new();
    // a folder named by the user wins over whatever the loader would pick
    let explicit = std::env::var_os("QCANET_CUDA_LIBS").is_some_and(|v| !v.is_empty());
    for n in &NEEDED {
        let found = find_in(&dirs, n.soname);
        let attempt = match (&found, explicit) {
            (Some(p), true) => dlopen_global(&p.to_string_lossy()),
            _ => dlopen_global(n.soname).or_else(|e| match &found {
                Some(p) => dlopen_global(&p.to_string_lossy()),
                None => Err(e),
            }),
        };
        if let Err(e) = attempt {
            missing.push(format!("{} ({}: `pip install {}`; {e})", n.soname, n.what, n.pypi));
        }
    }
    if !missing.is_empty() {
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(format!(
            "the CUDA provider needs NVIDIA libraries that were not found: {}. Searched the system library path and: {}. \
             Install CUDA 13 and cuDNN 9, or the PyPI wheels named above into a Python environment, \
             or set QCANET_CUDA_LIBS to the folders that hold them",
            missing.join("; "),
            if shown.is_empty() { "(no other folder)".to_string() } else { shown.join(", ") }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_needed_library_has_a_package_and_a_soname() {
        for n in &NEEDED {
            assert!(n.soname.starts_with("lib") && n.soname.contains(".so."), "{}", n.soname);
            assert!(n.pypi.starts_with("nvidia-"), "{}", n.pypi);
        }
        // cuBLASLt must come before cuBLAS (cuBLAS links to it)
        let pos = |s: &str| NEEDED.iter().position(|n| n.soname == s).unwrap();
        assert!(pos("libcublasLt.so.13") < pos("libcublas.so.13"));
    }

    #[test]
    fn python_wheel_folders_are_searched() {
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("lib/python3.12/site-packages/nvidia/cu13/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libcurand.so.10"), b"").unwrap();
        // a fake environment on PATH, the way `python3` of a venv is found
        std::fs::create_dir_all(t.path().join("bin")).unwrap();
        std::fs::write(t.path().join("bin/python3"), b"").unwrap();
        let bin = t.path().join("bin").into_os_string();
        let dirs = search_dirs_in(&|k| if k == "PATH" { Some(bin.clone()) } else { None });
        assert!(dirs.contains(&lib), "{dirs:?}");
        // QCANET_CUDA_LIBS comes first
        let dirs = search_dirs_in(&|k| match k {
            "QCANET_CUDA_LIBS" => Some("/opt/a:/opt/b".into()),
            "PATH" => Some(bin.clone()),
            _ => None,
        });
        assert_eq!(&dirs[..2], &[PathBuf::from("/opt/a"), PathBuf::from("/opt/b")]);
        assert_eq!(find_in(&dirs, "libcurand.so.10"), Some(lib.join("libcurand.so.10")));
    }
}
