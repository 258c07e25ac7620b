//! Where output files go. Files are published atomically (temporary file, fsync, hard link,
//! directory fsync) and never replaced: publishing a name that exists succeeds only if the bytes
//! are identical, which makes re-running a job idempotent and a divergent re-run loud.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Result of publishing a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Newly written.
    Written,
    /// The same bytes were already there.
    AlreadyIdentical,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The name exists with different content.
    #[error("refusing to overwrite {path} with different content")]
    Conflict {
        /// Path of the existing file.
        path: PathBuf,
    },
    /// An I/O error on `path`.
    #[error("{path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// A flat namespace of immutable files (the engine's only storage dependency).
pub trait OutputStore {
    /// Publishes `bytes` under `name` atomically, unless `name` already holds other bytes.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError>;
    /// Reads `name`, `None` when absent.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// All names, sorted.
    fn list(&self) -> Result<Vec<String>, StoreError>;
}

/// An output directory on a local filesystem.
#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
    counter: AtomicU64,
}

impl DirStore {
    /// Uses (and creates) `dir`.
    pub fn create(dir: &Path) -> Result<DirStore, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_owned(), source })?;
        Ok(DirStore::open(dir))
    }

    /// Uses an existing `dir` (for reading).
    pub fn open(dir: &Path) -> DirStore {
        DirStore { dir: dir.to_owned(), counter: AtomicU64::new(0) }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_temp(&self, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn compare_existing(&self, path: &Path, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let existing = fs::read(path).map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
        if existing == bytes {
            Ok(PutOutcome::AlreadyIdentical)
        } else {
            Err(StoreError::Conflict { path: path.to_owned() })
        }
    }
}

impl OutputStore for DirStore {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        assert!(!name.contains('/') && !name.starts_with('.'), "bad output name {name:?}");
        let path = self.dir.join(name);
        if path.exists() {
            return self.compare_existing(&path, bytes);
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let io_err = |source| StoreError::Io { path: tmp.clone(), source };
        self.write_temp(&tmp, bytes).map_err(io_err)?;
        // A hard link never replaces an existing name, unlike rename.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return self.compare_existing(&path, bytes),
            Err(source) => return Err(StoreError::Io { path, source }),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Io { path: self.dir.clone(), source })?;
        Ok(PutOutcome::Written)
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        let io_err = |source| StoreError::Io { path: self.dir.clone(), source };
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            if let Some(name) = entry.file_name().to_str().filter(|n| !n.starts_with('.')) {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// An in-memory store with the same publish rules (tests, benchmarks, dry runs).
#[derive(Debug, Default)]
pub struct MemStore {
    files: std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
}

impl MemStore {
    /// All files, by name.
    pub fn into_files(self) -> std::collections::BTreeMap<String, Vec<u8>> {
        self.files.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Vec<u8>>> {
        self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl OutputStore for MemStore {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let mut files = self.lock();
        match files.get(name) {
            Some(existing) if existing == bytes => Ok(PutOutcome::AlreadyIdentical),
            Some(_) => Err(StoreError::Conflict { path: PathBuf::from(name) }),
            None => {
                files.insert(name.to_owned(), bytes.to_vec());
                Ok(PutOutcome::Written)
            }
        }
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(name).cloned())
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_once_accepts_identical_refuses_different() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::create(dir.path()).expect("store");
        assert_eq!(store.put("a.txt", b"one").expect("put"), PutOutcome::Written);
        assert_eq!(store.put("a.txt", b"one").expect("put"), PutOutcome::AlreadyIdentical);
        assert!(matches!(store.put("a.txt", b"two"), Err(StoreError::Conflict { .. })));
        assert_eq!(store.get("a.txt").expect("get").as_deref(), Some(&b"one"[..]));
        assert_eq!(store.get("b.txt").expect("get"), None);
        assert_eq!(store.list().expect("list"), vec!["a.txt".to_owned()], "no temporary files left");
    }
}
