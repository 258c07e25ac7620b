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
//! - temporary files an interrupted run left behind are removed by [`Dir::remove_temps`].

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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

/// What a directory entry is, in words.
fn kind_of(file_type: fs::FileType) -> &'static str {
    if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "device"
    } else {
        "regular file"
    }
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
    path: PathBuf,
}

impl Dir {
    /// Uses `path`, creating it (and its parents) when missing; it must be a directory.
    pub fn create(path: &Path) -> Result<Dir, StorageError> {
        fs::create_dir_all(path).map_err(io_err(path))?;
        Dir::open(path)
    }

    /// Uses an existing directory `path` (for reading).
    pub fn open(path: &Path) -> Result<Dir, StorageError> {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if !meta.is_dir() {
            return Err(StorageError::NotRegular {
                path: path.to_owned(),
                kind: kind_of(meta.file_type()),
                expected: "directory",
            });
        }
        Ok(Dir { path: path.to_owned() })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The subdirectory `name`, created when missing; a symlink or file there is an error, so a
    /// planted link cannot send writes outside the tree.
    pub fn sub(&self, name: &str) -> Result<Dir, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        match fs::create_dir(&path) {
            Ok(()) => self.sync()?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if !meta.is_dir() {
            return Err(StorageError::NotRegular { path, kind: kind_of(meta.file_type()), expected: "directory" });
        }
        Ok(Dir { path })
    }

    /// Publishes `bytes` under `name` unless the name already holds other bytes; never replaces.
    pub fn publish(&self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        if let Some(existing) = self.read(name)? {
            return identical(&path, &existing, bytes);
        }
        let temp = self.write_temp(bytes)?;
        match temp.persist_noclobber(&path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return self.compare_existing(&path, name, bytes)
            }
            Err(e) => return Err(io_err(&path)(e.error)),
        }
        self.sync()?;
        Ok(PutOutcome::Written)
    }

    /// Replaces `name` with `bytes` atomically and durably (a link there is replaced, never
    /// followed).
    pub fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        self.write_temp(bytes)?.persist(&path).map_err(|e| io_err(&path)(e.error))?;
        self.sync()
    }

    /// Removes `name` (a link itself, never what it points to) durably; false when it was not
    /// there.
    pub fn remove(&self, name: &str) -> Result<bool, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        match std::fs::remove_file(&path) {
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
        let Some(mut file) = self.open_file(name)? else { return Ok(None) };
        let path = self.path.join(name);
        let len = file.metadata().map_err(io_err(&path))?.len();
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        Ok(Some(bytes))
    }

    /// The regular file `name` opened for reading (to read part of it); `None` when absent, an
    /// error for anything else under the name, as for [`Dir::read`].
    pub fn open_file(&self, name: &str) -> Result<Option<File>, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path);
        let file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(StorageError::NotRegular { path, kind: "symbolic link", expected: "file" })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let meta = file.metadata().map_err(io_err(&path))?;
        if !meta.is_file() {
            return Err(StorageError::NotRegular { path, kind: kind_of(meta.file_type()), expected: "file" });
        }
        Ok(Some(file))
    }

    /// Opens (creating, never truncating or following a link) the regular file `name`, for use
    /// as a lock with `File::lock`.
    pub fn lock_file(&self, name: &str) -> Result<File, StorageError> {
        check_name(name)?;
        let path = self.path.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => {
                    StorageError::NotRegular { path: path.clone(), kind: "symbolic link", expected: "file" }
                }
                _ => io_err(&path)(e),
            })?;
        let meta = file.metadata().map_err(io_err(&path))?;
        if !meta.is_file() {
            return Err(StorageError::NotRegular { path, kind: kind_of(meta.file_type()), expected: "file" });
        }
        Ok(file)
    }

    /// Every entry's name and what it is, sorted by name (temporary files and links included:
    /// the caller decides what belongs).
    pub fn entries(&self) -> Result<Vec<(String, &'static str)>, StorageError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(io_err(&self.path))? {
            let entry = entry.map_err(io_err(&self.path))?;
            let kind = kind_of(entry.file_type().map_err(io_err(&entry.path()))?);
            out.push((entry.file_name().to_string_lossy().into_owned(), kind));
        }
        out.sort();
        Ok(out)
    }

    /// Removes the temporary files last modified more than `older_than` ago (all of them with
    /// `Duration::ZERO`): what a run killed mid-write left. Returns how many were removed.
    pub fn remove_temps(&self, older_than: Duration) -> Result<usize, StorageError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for (name, _) in self.entries()? {
            if !is_temp_name(&name) {
                continue;
            }
            let path = self.path.join(&name);
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or(Duration::ZERO);
            if age >= older_than {
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
            }
        }
        Ok(removed)
    }

    fn write_temp(&self, bytes: &[u8]) -> Result<tempfile::NamedTempFile, StorageError> {
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(".tmp")
            .rand_bytes(16)
            .permissions(Permissions::from_mode(0o644))
            .tempfile_in(&self.path)
            .map_err(io_err(&self.path))?;
        let temp_path = temp.path().to_owned();
        temp.write_all(bytes).and_then(|()| temp.as_file().sync_all()).map_err(io_err(&temp_path))?;
        Ok(temp)
    }

    fn compare_existing(&self, path: &Path, name: &str, bytes: &[u8]) -> Result<PutOutcome, StorageError> {
        let existing = self.read(name)?.unwrap_or_default();
        identical(path, &existing, bytes)
    }

    fn sync(&self) -> Result<(), StorageError> {
        File::open(&self.path).and_then(|d| d.sync_all()).map_err(io_err(&self.path))
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
