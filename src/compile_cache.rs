//! OpenVINO's compiled-model cache, shared between processes without ever showing one of
//! them a half-written file.
//!
//! Compiling the network for the CPU takes OpenVINO about a quarter of a second per process
//! (measured on the 2-core EPYC: `load_ms` 230-310), as long as the whole network on a
//! small volume on a VNNI CPU. OpenVINO can keep the compiled network in a folder
//! (`cache_dir`), but it writes its blob straight to the final file name: a second process
//! starting meanwhile (two Dask workers, a folder of jobs on a cluster) could read a blob
//! that is still being written. So OpenVINO is never given the shared folder itself:
//!
//! 1. each session gets a private folder beside the shared one, into which every blob of
//!    the shared folder is hard-linked (no copy; a complete file stays complete);
//! 2. OpenVINO reads its blob from there, or compiles and writes a new one there;
//! 3. once the session has started, each new blob is published into the shared folder by
//!    `rename` (atomic: readers see the old file or the new one, never a part);
//! 4. the private folder is removed (also when the session failed).
//!
//! Where: `QCANET_CACHE_DIR` if set (`off` or empty turns the cache off), else
//! `$XDG_CACHE_HOME/qcanet`, else `~/.cache/qcanet`; inside, one folder per ONNX Runtime build
//! (OpenVINO refuses blobs of another version anyway, this keeps them from replacing each
//! other). A cache that cannot be created or written is no error: the network is compiled
//! as it would be without one.

use std::path::{Path, PathBuf};

/// The environment variable that moves or turns off the cache.
pub const CACHE_ENV: &str = "QCANET_CACHE_DIR";

/// Private folders older than this were left by a process that died; they are removed.
const STALE_SECS: u64 = 24 * 3600;

/// The cache's root folder, or `None` when it is turned off or there is no home.
pub fn root() -> Option<PathBuf> {
    match std::env::var_os(CACHE_ENV) {
        Some(v) if v.is_empty() || v == "off" || v == "0" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => None,
    }
}

/// A session's private view of the shared folder (see the module's text).
#[derive(Debug)]
pub struct Slot {
    shared: PathBuf,
    private: PathBuf,
}

/// The folder name for one runtime build: its build string with anything but
/// `[A-Za-z0-9.-]` replaced, so that every build has its own folder.
fn build_folder(build: &str) -> String {
    let tag: String = build.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    format!("openvino-{}", &tag[..tag.len().min(120)])
}

impl Slot {
    /// A private folder seeded with the shared blobs, or `None` if the cache is off or its
    /// folders cannot be made.
    pub fn open(build: &str) -> Option<Slot> {
        Self::open_in(&root()?, build)
    }

    pub fn open_in(root: &Path, build: &str) -> Option<Slot> {
        let shared = root.join(build_folder(build));
        std::fs::create_dir_all(&shared).ok()?;
        remove_stale(&shared);
        // `.tmp-` names never collide with OpenVINO's blob names and sit on the shared
        // folder's file system, so that rename and hard links work
        let private = tempfile::Builder::new().prefix(".tmp-").tempdir_in(&shared).ok()?.keep();
        let slot = Slot { shared, private };
        for entry in std::fs::read_dir(&slot.shared).ok()?.flatten() {
            let name = entry.file_name();
            if is_blob(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
                // a blob replaced meanwhile is linked whole, old or new: both are complete
                let _ = std::fs::hard_link(entry.path(), slot.private.join(&name));
            }
        }
        Some(slot)
    }

    /// The folder to give OpenVINO as `cache_dir`.
    pub fn dir(&self) -> &Path {
        &self.private
    }

    /// Publishes what OpenVINO wrote (call once its session has started), then removes the
    /// private folder.
    pub fn publish(self) {
        if let Ok(entries) = std::fs::read_dir(&self.private) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let linked = std::fs::metadata(self.shared.join(&name)).ok().zip(entry.metadata().ok());
                // a blob still linked to the shared one was read, not written
                let same = linked.is_some_and(|(s, p)| {
                    use std::os::unix::fs::MetadataExt;
                    s.ino() == p.ino() && s.dev() == p.dev()
                });
                if is_blob(&name) && !same && entry.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::rename(entry.path(), self.shared.join(&name));
                }
            }
        }
        // Drop removes the folder
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.private);
    }
}

/// OpenVINO's cache files are `<hash>.blob`; anything else in the folder is not ours to move.
fn is_blob(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    !name.starts_with('.') && name.ends_with(".blob")
}

/// Removes private folders left by processes that died more than a day ago.
fn remove_stale(shared: &Path) {
    let Ok(entries) = std::fs::read_dir(shared) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        let old =
            entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() > STALE_SECS);
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_published_whole_and_shared_ones_are_seeded() {
        let root = tempfile::tempdir().unwrap();
        // a first session compiles: its blob appears in the shared folder only at publish
        let a = Slot::open_in(root.path(), "ORT Build Info: git-branch=rel-1.24.1").unwrap();
        let shared = root.path().join("openvino-ORT_Build_Info__git-branch_rel-1.24.1");
        assert!(a.dir().starts_with(&shared));
        std::fs::write(a.dir().join("123.blob"), b"compiled").unwrap();
        std::fs::write(a.dir().join("notes.txt"), b"not a blob").unwrap();
        assert!(!shared.join("123.blob").exists());
        let private = a.dir().to_path_buf();
        a.publish();
        assert_eq!(std::fs::read(shared.join("123.blob")).unwrap(), b"compiled");
        assert!(!shared.join("notes.txt").exists());
        assert!(!private.exists(), "the private folder is removed");
        // a second session sees the blob in its own folder, linked, not copied
        let b = Slot::open_in(root.path(), "ORT Build Info: git-branch=rel-1.24.1").unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(b.dir().join("123.blob")).unwrap().ino(), std::fs::metadata(shared.join("123.blob")).unwrap().ino());
        // reading it publishes nothing; a session that failed (dropped) leaves nothing
        let private = b.dir().to_path_buf();
        b.publish();
        assert!(!private.exists());
        let c = Slot::open_in(root.path(), "ORT Build Info: git-branch=rel-1.24.1").unwrap();
        std::fs::write(c.dir().join("456.blob"), b"half").unwrap();
        drop(c);
        let names: Vec<_> = std::fs::read_dir(&shared).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("123.blob")]);
    }

    #[test]
    fn an_unwritable_cache_is_no_cache() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        assert!(Slot::open_in(&file, "build").is_none());
    }
}
