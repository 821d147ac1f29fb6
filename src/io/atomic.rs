//! The one way qcanet writes a file: all or nothing, never over an input by accident of
//! naming, readable as any other program's output.
//!
//! - The bytes go to `.qcanet-<pid>-<random>.part` in the target's folder, are synced, and
//!   the file is renamed over the target: a reader never sees half a file.
//! - The temporary file is created with mode 0666, so the kernel applies the user's umask
//!   (the result is 0644 under the usual umask 022, not the 0600 of a private temp file).
//! - An interrupted run (SIGKILL, power loss) can leave a `.part` file behind; its name
//!   carries the writer's process id and host (`.qcanet-<pid>@<host>@<random>.part`), and
//!   [`clean_stale`] removes those of this host whose process is gone when the next run
//!   writes into that folder. Files of other hosts (a folder shared over NFS by cluster
//!   nodes) are left alone: their process cannot be checked from here.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const PREFIX: &str = ".qcanet-";
const SUFFIX: &str = ".part";

fn write_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Write { path: path.display().to_string(), msg: e.to_string() }
}

/// A file being written: bytes go to a temporary file beside `target`, which becomes
/// `target` only by [`PartFile::commit`]. Dropped uncommitted (an error, a panic), the
/// temporary file is removed. For writers that stream (labels written plane by plane).
pub struct PartFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl PartFile {
    /// Starts writing `target` (see the module docs for the temporary file's name and mode).
    pub fn create(target: &Path) -> Result<PartFile> {
        let tmp = temporary_in(folder_of(target)).map_err(|e| write_err(target, e))?;
        Ok(PartFile { tmp, target: target.to_path_buf() })
    }

    pub fn file_mut(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// An error writing this file, naming the target (not the temporary file).
    pub fn error(&self, e: impl std::fmt::Display) -> Error {
        write_err(&self.target, e)
    }

    /// Flushes, syncs and renames the temporary file over the target.
    pub fn commit(mut self) -> Result<()> {
        let target = self.target.clone();
        self.tmp.as_file_mut().flush().map_err(|e| write_err(&target, e))?;
        self.tmp.as_file().sync_all().map_err(|e| write_err(&target, e))?;
        self.tmp.persist(&target).map_err(|e| write_err(&target, e.error))?;
        Ok(())
    }
}

/// A scratch file in `dir` (intermediate data of a long run, e.g. provisional labels of a
/// volume segmented block by block), named like a part file so that [`clean_stale`]
/// removes it if the process dies; removed when dropped.
pub fn scratch_file(dir: &Path) -> Result<tempfile::NamedTempFile> {
    temporary_in(dir).map_err(|e| write_err(dir, e))
}

/// A new empty folder in `dir`, named like a part file (so that [`clean_stale`] removes it
/// if the process dies), for outputs that are folders (OME-Zarr); the caller renames it
/// into place when complete or removes it.
pub fn scratch_dir(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    clean_stale(dir);
    let d = tempfile::Builder::new()
        .prefix(&part_prefix())
        .suffix(SUFFIX)
        .permissions(std::fs::Permissions::from_mode(0o777))
        .tempdir_in(dir)
        .map_err(|e| write_err(dir, e))?;
    Ok(d.keep())
}

/// An output folder being written (a CTC result, a time-lapse analysis): files go to a
/// scratch folder beside `target` (see [`scratch_dir`]), which becomes `target` only by
/// [`PartDir::commit`]; dropped uncommitted, it is removed. `target` must not exist, or be
/// an empty folder: a folder of results is never merged into, or written over, another.
pub struct PartDir {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PartDir {
    pub fn create(target: &Path) -> Result<PartDir> {
        if let Ok(mut entries) = std::fs::read_dir(target) {
            if entries.next().is_some() {
                return Err(write_err(
                    target,
                    "the folder exists and is not empty; name a new one (results are never written over others)",
                ));
            }
        } else if target.exists() {
            return Err(write_err(target, "exists and is not a folder"));
        }
        let parent = folder_of(target);
        std::fs::create_dir_all(parent).map_err(|e| write_err(parent, e))?;
        Ok(PartDir { tmp: scratch_dir(parent)?, target: target.to_path_buf(), committed: false })
    }

    /// Where a file of the result is written now.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.tmp.join(name)
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the folder into place (replacing `target` only if it is still an empty folder).
    pub fn commit(mut self) -> Result<()> {
        if self.target.is_dir() {
            std::fs::remove_dir(&self.target).map_err(|e| write_err(&self.target, format!("{e} (it is no longer empty?)")))?;
        }
        std::fs::rename(&self.tmp, &self.target).map_err(|e| write_err(&self.target, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The start of this process's temporary names: `.qcanet-<pid>@<host>@` (see [`clean_stale`]).
fn part_prefix() -> String {
    format!("{PREFIX}{}@{}@", std::process::id(), hostname())
}

/// The folder a path's file is written in (`.` for a bare name).
pub fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn temporary_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    clean_stale(dir);
    tempfile::Builder::new().prefix(&part_prefix()).suffix(SUFFIX).permissions(std::fs::Permissions::from_mode(0o666)).tempfile_in(dir)
}

/// Writes `path` through `fill`, which receives the temporary file; see the module docs.
pub fn write_with(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
    let mut part = PartFile::create(path)?;
    fill(part.file_mut()).map_err(|e| write_err(path, e))?;
    part.commit()
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |f| f.write_all(bytes))
}

/// This machine's name, as it appears in temporary file names ('@' and '/' replaced).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { String::new() };
    let name: String = name.chars().map(|c| if c == '@' || c == '/' { '_' } else { c }).collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The process id and host in a temporary file's name, if it is one of ours.
fn owner(name: &str) -> Option<(i32, &str)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (pid, rest) = rest.split_once('@')?;
    let (host, _) = rest.rsplit_once('@')?;
    Some((pid.parse().ok()?, host))
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Removes `.qcanet-<pid>@<host>@*.part` files in `dir` left by processes of this host
/// that no longer run. Returns the files removed. Errors are ignored: this is housekeeping.
pub fn clean_stale(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return removed;
    };
    let here = hostname();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some((pid, host)) = name.to_str().and_then(owner) else {
            continue;
        };
        let gone = |p: &Path| {
            if p.is_dir() {
                std::fs::remove_dir_all(p).is_ok()
            } else {
                std::fs::remove_file(p).is_ok()
            }
        };
        if host == here && !process_alive(pid) && gone(&e.path()) {
            removed.push(e.path());
        }
    }
    removed
}

/// True when `a` and `b` name the same existing file (links and `..` included).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn results_follow_the_umask_and_leave_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.csv");
        write_bytes(&p, b"a,b\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"a,b\n");
        // SAFETY: umask only reads and sets this process's mask; set back at once
        let mask = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !(mask as u32), "mode {mode:o}, umask {mask:o}");
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn a_failed_write_says_cannot_write_and_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("labels.tif");
        std::fs::write(&p, b"old").unwrap();
        let e = write_with(&p, |_| Err(std::io::Error::other("disk full"))).unwrap_err();
        assert!(e.to_string().starts_with("cannot write") && e.to_string().contains("disk full"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_parts_of_dead_processes_are_cleaned_and_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        // a pid that cannot exist (above the kernel's pid_max limit of 2^22)
        let h = hostname();
        let dead = d.path().join(format!(".qcanet-99999999@{h}@abc.tif.part"));
        let live = d.path().join(format!(".qcanet-{}@{h}@abc.part", std::process::id()));
        let elsewhere = d.path().join(".qcanet-99999999@another-node@abc.part");
        let other = d.path().join(".qcanet-notapid.part");
        for p in [&dead, &live, &elsewhere, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(clean_stale(d.path()), vec![dead.clone()]);
        assert!(!dead.exists() && live.exists() && elsewhere.exists() && other.exists());
    }

    #[test]
    fn same_file_sees_through_links_and_dots() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.tif");
        std::fs::write(&a, b"x").unwrap();
        std::os::unix::fs::symlink(&a, d.path().join("l.tif")).unwrap();
        assert!(same_file(&a, &d.path().join("l.tif")));
        assert!(same_file(&a, &d.path().join(".").join("a.tif")));
        assert!(!same_file(&a, &d.path().join("b.tif")));
    }
}
