//! The file-system calls [`Dir`](crate::Dir) is made of, as one small interface.
//!
//! `Dir` decides the order of things (write a temporary file, fsync it, rename it, fsync the
//! directory) and what is refused (links, FIFOs, other content under a name). Those decisions
//! are what a crash tests, and a real disk cannot be crashed on demand between two calls. So the
//! calls go through [`Fs`]: [`OsFs`] is the operating system, and the simulator
//! (`clearhouse-sim`) has a disk that loses what was not yet durable when its machine loses
//! power: unsynced file content (or part of it), and directory changes not yet fsynced.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A block or character device.
    Device,
}

impl Kind {
    /// The kind in words, as error messages and listings say it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "regular file",
            Kind::Directory => "directory",
            Kind::Symlink => "symbolic link",
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
            Kind::Device => "device",
        }
    }

    pub(crate) fn of(file_type: fs::FileType) -> Kind {
        if file_type.is_symlink() {
            Kind::Symlink
        } else if file_type.is_dir() {
            Kind::Directory
        } else if file_type.is_fifo() {
            Kind::Fifo
        } else if file_type.is_socket() {
            Kind::Socket
        } else if file_type.is_block_device() || file_type.is_char_device() {
            Kind::Device
        } else {
            Kind::File
        }
    }
}

/// A file opened for reading, or what holds the name instead of a regular file.
pub enum Opened {
    /// A regular file.
    File(Box<dyn Read + Send>),
    /// Something else (a link is never followed).
    Other(Kind),
}

/// The calls a [`Dir`](crate::Dir) makes. Paths are the directory's path joined with one
/// checked name; a missing path is an error of kind `NotFound`.
pub trait Fs: Send + Sync + std::fmt::Debug {
    /// What `path` is, following a final link when `follow`.
    fn kind(&self, path: &Path, follow: bool) -> io::Result<Kind>;
    /// Creates the directory `path`, whose parent exists (`AlreadyExists` when the name is
    /// taken); durable only once the parent is synced.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a file exclusively under a new unpredictable name in `dir` starting with
    /// `prefix` and ending in `.tmp`, and writes `bytes` to it, not yet durably.
    fn write_new(&self, dir: &Path, prefix: &str, bytes: &[u8]) -> io::Result<PathBuf>;
    /// Creates a file as [`Fs::write_new`] does, left open for writing as it is produced;
    /// `None` when this file system cannot (the caller then buffers and calls `write_new`).
    fn create_temp(&self, dir: &Path, prefix: &str) -> io::Result<Option<(PathBuf, Box<dyn Write + Send>)>> {
        let _ = (dir, prefix);
        Ok(None)
    }
    /// Makes a file's content durable (fsync).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to` in the same directory, atomically. With `replace` false it fails
    /// with `AlreadyExists` when `to` exists; with `replace` true it replaces what is there (a
    /// link itself, never its target). Durable only once the directory is synced.
    fn rename(&self, from: &Path, to: &Path, replace: bool) -> io::Result<()>;
    /// Removes a file (a link itself); durable only once the directory is synced.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Opens `path` for reading without following a link or blocking on a FIFO.
    fn open(&self, path: &Path) -> io::Result<Opened>;
    /// Every entry of the directory `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<(String, Kind)>>;
    /// Makes the directory's entries durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// How long ago `path` (not followed) was last modified.
    fn age(&self, path: &Path) -> io::Result<Duration>;
    /// Opens (creating, never truncating or following a link) a regular file to hold an
    /// advisory lock on with `File::lock`.
    fn lock_file(&self, path: &Path) -> io::Result<File> {
        let _ = path;
        Err(io::Error::new(io::ErrorKind::Unsupported, "this file system has no lock files"))
    }
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

/// Open flags of every read and lock: no link followed, no FIFO waited on.
const NO_FOLLOW: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

impl Fs for OsFs {
    fn kind(&self, path: &Path, follow: bool) -> io::Result<Kind> {
        let meta = if follow { fs::metadata(path)? } else { fs::symlink_metadata(path)? };
        Ok(Kind::of(meta.file_type()))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn write_new(&self, dir: &Path, prefix: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        let mut temp = new_temp(dir, prefix)?;
        // A failed write drops `temp`, which removes the file.
        temp.write_all(bytes)?;
        temp.into_temp_path().keep().map_err(|e| e.error)
    }

    fn create_temp(&self, dir: &Path, prefix: &str) -> io::Result<Option<(PathBuf, Box<dyn Write + Send>)>> {
        let (file, path) = new_temp(dir, prefix)?.keep().map_err(|e| e.error)?;
        Ok(Some((path, Box::new(file))))
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        OpenOptions::new().read(true).custom_flags(NO_FOLLOW).open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path, replace: bool) -> io::Result<()> {
        if replace {
            return fs::rename(from, to);
        }
        // `renameat2(RENAME_NOREPLACE)` where the kernel has it, as tempfile implements it;
        // the temporary path is kept whatever happens (the caller removes it).
        tempfile::TempPath::try_from_path(from)?.persist_noclobber(to).map_err(|e| {
            let _ = e.path.keep();
            e.error
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn open(&self, path: &Path) -> io::Result<Opened> {
        let file = match OpenOptions::new().read(true).custom_flags(NO_FOLLOW).open(path) {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Opened::Other(Kind::Symlink)),
            Err(e) => return Err(e),
        };
        match Kind::of(file.metadata()?.file_type()) {
            Kind::File => Ok(Opened::File(Box::new(file))),
            other => Ok(Opened::Other(other)),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(String, Kind)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            out.push((entry.file_name().to_string_lossy().into_owned(), Kind::of(entry.file_type()?)));
        }
        Ok(out)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn age(&self, path: &Path) -> io::Result<Duration> {
        let modified = fs::symlink_metadata(path)?.modified()?;
        Ok(SystemTime::now().duration_since(modified).unwrap_or(Duration::ZERO))
    }

    fn lock_file(&self, path: &Path) -> io::Result<File> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(NO_FOLLOW)
            .open(path)?;
        Ok(file)
    }
}

/// A new file under an unpredictable name, created exclusively (never through an existing name
/// or link).
fn new_temp(dir: &Path, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".tmp")
        .rand_bytes(16)
        .permissions(Permissions::from_mode(0o644))
        .tempfile_in(dir)
}

/// Reads an opened file to its end.
pub(crate) fn read_all(mut reader: Box<dyn Read + Send>) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    Ok(bytes)
}
