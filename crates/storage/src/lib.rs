//! Durable files in a directory Clearhouse does not fully trust.
//!
//! The output directory is shared by every daemon instance and by the people who operate it, and
//! the state directory lives on a shared volume: either may hold a symlink, a FIFO or a leftover
//! under a name Clearhouse is about to use. Every write and read of both goes through [`Dir`], so
//! the rules live in one place:
//!
//! - a temporary file is created exclusively (`O_EXCL`, never through an existing name or link)
//!   under a random name with the [`TEMP_PREFIX`], written, fsynced, then moved into place;
//! - [`Dir::publish`] never replaces a name (`renameat2(RENAME_NOREPLACE)`): a name that exists
//!   is accepted only when it is a regular file with identical bytes;
//! - [`Dir::replace`] atomically replaces a name (daemon state), never writing through a link;
//! - reads open with `O_NOFOLLOW | O_NONBLOCK` and accept regular files only, so a symlink cannot
//!   lead a read outside the directory and a FIFO cannot block it;
//! - the directory is fsynced after every rename, so a crash keeps the old or the new file;
//! - a directory is durable before anything is put in it: its parent is fsynced when it is made,
//!   and again the first time a process uses one it found existing (its maker may have died
//!   between the two), together with the directory itself, so nothing a process reads there
//!   and acts on can vanish in a power loss (a rename its writer died before fsyncing);
//! - temporary files an interrupted run left behind are removed by [`Dir::remove_temps`].
//!
//! `Dir` makes those decisions; the calls themselves go through [`Fs`], so the simulator can
//! crash the machine between any two of them.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

mod draft;
mod fs;

pub use draft::Draft;
pub use fs::{Fs, Kind, Opened, OsFs};

/// Names of temporary files start with this (and end in `.tmp`); nothing else may.
pub const TEMP_PREFIX: &str = ".clearhouse-";

/// Result of publishing a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Newly written.
    Written,
    /// The same bytes were already there.
    AlreadyIdentical,
}

/// Storage failures; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The name exists with different content.
    #[error("refusing to overwrite {path} with different content")]
    Conflict {
        /// Path of the existing file.
        path: PathBuf,
    },
    /// Something other than a regular file (or directory, for a subdirectory) holds the name.
    #[error("{path} is a {kind}, not a regular {expected}: refusing to use it")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is (`symbolic link`, `FIFO`, ...).
        kind: &'static str,
        /// What was expected there (`file` or `directory`).
        expected: &'static str,
    },
    /// A name that is not a single plain file name.
    #[error("{name:?} is not a plain file name")]
    BadName {
        /// The name.
        name: String,
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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_owned(), source }
}

fn not_regular(path: PathBuf, kind: Kind, expected: &'static str) -> StorageError {
    StorageError::NotRegular { path, kind: kind.name(), expected }
}

/// Checks that `name` is one plain component that is not reserved for temporary files.
pub fn check_name(name: &str) -> Result<(), StorageError> {
    let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\0']) && name.len() <= 255;
    if plain {
        Ok(())
    } else {
        Err(StorageError::BadName { name: name.to_owned() })
    }
}

/// A directory of durable files.
#[derive(Debug, Clone)]
pub struct Dir {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    /// Subdirectories this process has made durable, their entry in the parent and their own
    /// entries, shared by every `Dir` reached from the same root: one found existing may have
    /// been left by a process that died before an fsync, so its first use here fsyncs both.
    durable: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Dir {
    /// Uses `path` on the operating system's file system, creating it (and its parents) when
    /// missing; it must be a directory.
    pub fn create(path: &Path) -> Result<Dir, StorageError> {
        Dir::create_on(Arc::new(OsFs), path)
    }

    /// Uses `path` on `fs`, creating it and its missing parents durably (each new directory's
    /// parent is fsynced), so a power loss cannot take the tree away under files already
    /// synced in it.
    pub fn create_on(fs: Arc<dyn Fs>, path: &Path) -> Result<Dir, StorageError> {
        let ancestors: Vec<&Path> = path.ancestors().take_while(|a| !a.as_os_str().is_empty()).collect();
        for dir in ancestors.into_iter().rev() {
            let Some(parent) = dir.parent() else { continue };
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            let synced = match fs.create_dir(dir) {
                Ok(()) => fs.sync_dir(parent),
                // It may have been created by a process that died before the fsync; a parent
                // this user may not read was not created by Clearhouse.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs.sync_dir(parent) {
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
                    other => other,
                },
                Err(e) => return Err(io_err(dir)(e)),
            };
            synced.map_err(io_err(parent))?;
        }
        // Its entries too, for what a process that died before its directory fsync left.
        fs.sync_dir(path).map_err(io_err(path))?;
        Dir::open_on(fs, path)
    }

    /// Uses an existing directory `path` (for reading).
    pub fn open(path: &Path) -> Result<Dir, StorageError> {
        Dir::open_on(Arc::new(OsFs), path)
    }

    /// Uses an existing directory `path` on `fs`.
    pub fn open_on(fs: Arc<dyn Fs>, path: &Path) -> Result<Dir, StorageError> {
        let kind = fs.kind(path, true).map_err(io_err(path))?;
        if kind != Kind::Directory {
            return Err(not_regular(path.to_owned(), kind, "directory"));
        }
        Ok(Dir { fs, path: path.to_owned(), durable: Arc::default() })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file system it is on.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// The subdirectory `name`, created when missing; a symlink or file there is an error, so a
    /// planted link cannot send writes outside the tree.
    pub fn sub(&self, name: &str) -> Result<Dir, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        let created = match self.fs.create_dir(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io_err(&path)(e)),
        };
        let kind = self.fs.kind(&path, false).map_err(io_err(&path))?;
        if kind != Kind::Directory {
            return Err(not_regular(path, kind, "directory"));
        }
        if created || !self.durable.lock().unwrap_or_else(PoisonError::into_inner).contains(&path) {
            self.sync()?;
            if !created {
                // What a process that died before its directory fsync renamed in here is
                // visible, and this process may act on it: it must not vanish in a power loss.
                self.fs.sync_dir(&path).map_err(io_err(&path))?;
            }
            self.durable.lock().unwrap_or_else(PoisonError::into_inner).insert(path.clone());
        }
        Ok(Dir { fs: Arc::clone(&self.fs), path, durable: Arc::clone(&self.durable) })
    }

    /// Publishes `bytes` under `name` unless the name already holds other bytes; never replaces.
    pub fn publish(&self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        if let Some(existing) = self.read(name)? {
            return identical(&path, &existing, bytes);
        }
        match self.write_and_rename(bytes, &path, false) {
            Ok(()) => Ok(PutOutcome::Written),
            Err(StorageError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                let existing = self.read(name)?.unwrap_or_default();
                identical(&path, &existing, bytes)
            }
            Err(e) => Err(e),
        }
    }

    /// A new temporary file in the directory to write a file into as it is produced, for
    /// [`Dir::publish_draft`]; held in memory on a file system without open temporary files.
    pub fn draft(&self) -> Result<Draft, StorageError> {
        match self.fs.create_temp(&self.path, TEMP_PREFIX).map_err(io_err(&self.path))? {
            Some((path, file)) => Ok(Draft::file(Arc::clone(&self.fs), path, file)),
            None => Ok(Draft::memory()),
        }
    }

    /// Publishes what was written to `draft` under `name`, by the rules of [`Dir::publish`]:
    /// never replaces, and a name that exists is accepted only when it holds the same bytes
    /// (the two files compared block by block). The draft's temporary file is gone afterwards,
    /// renamed or removed.
    pub fn publish_draft(&self, name: &str, draft: Draft) -> Result<PutOutcome, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        let temp = match draft.finish() {
            Ok(Ok(temp)) => temp,
            Ok(Err(bytes)) => return self.publish(name, &bytes),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let outcome = self.settle_draft(name, &path, &temp);
        if !matches!(outcome, Ok(PutOutcome::Written)) {
            let _ = self.fs.remove_file(&temp);
        }
        outcome
    }

    /// Moves the finished temporary file `temp` to `path` unless the name is taken, then
    /// compares it with what holds the name.
    fn settle_draft(&self, name: &str, path: &Path, temp: &Path) -> Result<PutOutcome, StorageError> {
        let compare = |existing| match draft::same_content(self.fs.as_ref(), temp, existing) {
            Ok(true) => Ok(PutOutcome::AlreadyIdentical),
            Ok(false) => Err(StorageError::Conflict { path: path.to_owned() }),
            Err(e) => Err(io_err(path)(e)),
        };
        if let Some(existing) = self.reader(name)? {
            return compare(existing);
        }
        self.fs.sync_file(temp).map_err(io_err(temp))?;
        match self.fs.rename(temp, path, false) {
            Ok(()) => self.sync().map(|()| PutOutcome::Written),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match self.reader(name)? {
                Some(existing) => compare(existing),
                None => Err(io_err(path)(e)),
            },
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Replaces `name` with `bytes` atomically and durably (a link there is replaced, never
    /// followed).
    pub fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_name(name)?;
        self.write_and_rename(bytes, &self.path.join(name), true)
    }

    /// Removes `name` (a link itself, never what it points to) durably; false when it was not
    /// there.
    pub fn remove(&self, name: &str) -> Result<bool, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        match self.fs.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&path)(e)),
        }
        self.sync()?;
        Ok(true)
    }

    /// The bytes of the regular file `name`; `None` when absent. A symlink, FIFO, device or
    /// directory under the name is an error naming it.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(reader) = self.reader(name)? else { return Ok(None) };
        fs::read_all(reader).map(Some).map_err(io_err(&self.path.join(name)))
    }

    /// The regular file `name` opened for reading (to read part of it); `None` when absent, an
    /// error for anything else under the name, as for [`Dir::read`].
    pub fn reader(&self, name: &str) -> Result<Option<Box<dyn Read + Send>>, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        match self.fs.open(&path) {
            Ok(Opened::File(reader)) => Ok(Some(reader)),
            Ok(Opened::Other(kind)) => Err(not_regular(path, kind, "file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Opens (creating, never truncating or following a link) the regular file `name`, for use
    /// as a lock with `File::lock`.
    pub fn lock_file(&self, name: &str) -> Result<File, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        let file = self.fs.lock_file(&path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => not_regular(path.clone(), Kind::Symlink, "file"),
            _ => io_err(&path)(e),
        })?;
        let meta = file.metadata().map_err(io_err(&path))?;
        if !meta.is_file() {
            return Err(not_regular(path, Kind::of(meta.file_type()), "file"));
        }
        Ok(file)
    }

    /// Every entry's name and what it is, sorted by name (temporary files and links included:
    /// the caller decides what belongs).
    pub fn entries(&self) -> Result<Vec<(String, &'static str)>, StorageError> {
        let listed = self.fs.list(&self.path).map_err(io_err(&self.path))?;
        let mut out: Vec<(String, &'static str)> = listed.into_iter().map(|(name, kind)| (name, kind.name())).collect();
        out.sort();
        Ok(out)
    }

    /// Removes the temporary files last modified more than `older_than` ago (all of them with
    /// `Duration::ZERO`): what a run killed mid-write left. Returns how many were removed.
    pub fn remove_temps(&self, older_than: Duration) -> Result<usize, StorageError> {
        let mut removed = 0;
        for (name, _) in self.entries()? {
            if !is_temp_name(&name) {
                continue;
            }
            let path = self.path.join(&name);
            let Ok(age) = self.fs.age(&path) else { continue };
            if age >= older_than {
                match self.fs.remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
            }
        }
        Ok(removed)
    }

    /// Writes `bytes` to a new temporary file, fsyncs it, renames it to `path` (replacing what
    /// is there or not, per `replace`) and fsyncs the directory. The temporary file is removed
    /// when a step after its creation fails.
    fn write_and_rename(&self, bytes: &[u8], path: &Path, replace: bool) -> Result<(), StorageError> {
        let temp = self.fs.write_new(&self.path, TEMP_PREFIX, bytes).map_err(io_err(&self.path))?;
        let moved = self
            .fs
            .sync_file(&temp)
            .map_err(io_err(&temp))
            .and_then(|()| self.fs.rename(&temp, path, replace).map_err(io_err(path)));
        if let Err(e) = moved {
            let _ = self.fs.remove_file(&temp);
            return Err(e);
        }
        self.sync()
    }

    /// Makes every entry of the directory durable (fsyncs it): called before reading a file
    /// another live process may have just renamed into place and not yet made durable, when
    /// what is read will be acted on.
    pub fn make_durable(&self) -> Result<(), StorageError> {
        self.sync()
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.fs.sync_dir(&self.path).map_err(io_err(&self.path))
    }
}

fn identical(path: &Path, existing: &[u8], bytes: &[u8]) -> Result<PutOutcome, StorageError> {
    if existing == bytes {
        Ok(PutOutcome::AlreadyIdentical)
    } else {
        Err(StorageError::Conflict { path: path.to_owned() })
    }
}

/// Whether `name` is one of Clearhouse's temporary files.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp")
}

#[cfg(test)]
mod tests;
