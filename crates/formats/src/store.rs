//! Where output files go. A window's files are published once and never replaced: publishing a
//! name that exists succeeds only if the bytes are identical, which makes re-running a job
//! idempotent and a divergent re-run loud. On disk, [`clearhouse_storage::Dir`] does the writing
//! (exclusive random temp files, no-clobber rename, no link or special file followed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use clearhouse_storage::{Dir, Draft, Fs, OsFs};
pub use clearhouse_storage::{PutOutcome, StorageError as StoreError};

/// A flat namespace of immutable files (the engine's only storage dependency).
pub trait OutputStore: Sync {
    /// Publishes `bytes` under `name` atomically, unless `name` already holds other bytes.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError>;
    /// A draft to write a file into as it is produced, for [`OutputStore::publish_draft`]; in
    /// memory unless the store has somewhere better.
    fn draft(&self) -> Result<Draft, StoreError> {
        Ok(Draft::memory())
    }
    /// Publishes what was written to `draft` by the rules of [`OutputStore::put`].
    fn publish_draft(&self, name: &str, draft: Draft) -> Result<PutOutcome, StoreError> {
        match draft.into_bytes() {
            Some(bytes) => self.put(name, &bytes),
            None => {
                Err(StoreError::Io { path: name.into(), source: std::io::Error::other("a draft of another store") })
            }
        }
    }
    /// Reads `name`, `None` when absent; an entry that is not a regular file is an error.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every entry's name, sorted: output files, and anything else someone put there.
    fn list(&self) -> Result<Vec<String>, StoreError>;
    /// Removes the temporary files interrupted writes left; only the one writer may call it.
    /// Returns how many were removed.
    fn remove_temps(&self) -> Result<usize, StoreError>;
}

/// An output directory on a local filesystem.
#[derive(Debug)]
pub struct DirStore {
    dir: Dir,
}

impl DirStore {
    /// Uses (and creates) `dir` as the only writer: removes the temporary files a killed run
    /// left there.
    pub fn create(dir: &Path) -> Result<DirStore, StoreError> {
        let store = DirStore::shared_on(Arc::new(OsFs), dir)?;
        store.remove_temps()?;
        Ok(store)
    }

    /// Uses (and creates) `dir` on `fs`, shared with other instances: temporary files stay
    /// until the instance that holds the writer's lock calls [`OutputStore::remove_temps`]
    /// (another instance may be writing them).
    pub fn shared_on(fs: Arc<dyn Fs>, dir: &Path) -> Result<DirStore, StoreError> {
        Ok(DirStore { dir: Dir::create_on(fs, dir)? })
    }

    /// Uses an existing `dir` (for reading).
    pub fn open(dir: &Path) -> Result<DirStore, StoreError> {
        Ok(DirStore { dir: Dir::open(dir)? })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of `name` in the directory.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl OutputStore for DirStore {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        self.dir.publish(name, bytes)
    }

    fn draft(&self) -> Result<Draft, StoreError> {
        self.dir.draft()
    }

    fn publish_draft(&self, name: &str, draft: Draft) -> Result<PutOutcome, StoreError> {
        self.dir.publish_draft(name, draft)
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.dir.read(name)
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.dir.entries()?.into_iter().map(|(name, _)| name).collect())
    }

    fn remove_temps(&self) -> Result<usize, StoreError> {
        let removed = self.dir.remove_temps(Duration::ZERO)?;
        if removed > 0 {
            let dir = self.dir.path().display();
            tracing::info!(removed, dir = %dir, "removed temporary files of an interrupted write");
        }
        Ok(removed)
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
        clearhouse_storage::check_name(name)?;
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
        clearhouse_storage::check_name(name)?;
        Ok(self.lock().get(name).cloned())
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().keys().cloned().collect())
    }

    fn remove_temps(&self) -> Result<usize, StoreError> {
        // Every put is whole: an in-memory store never holds a temporary file.
        Ok(0)
    }
}
