//! A file written as it is produced, published once complete.
//!
//! Output files can be large (a window's credit file at five million instructions is hundreds of
//! megabytes), and building one in memory before writing it costs the memory twice over and the
//! time of touching it twice. A [`Draft`] is a temporary file, created exclusively under a random
//! name like every other Clearhouse temporary, that the encoder writes into as it goes;
//! [`Dir::publish_draft`](crate::Dir::publish_draft) then applies the same rules as
//! [`Dir::publish`](crate::Dir::publish): fsync, no-clobber rename, and a name that already
//! exists accepted only when it holds the same bytes (compared by streaming both files).
//!
//! On a file system that cannot hand out an open temporary file ([`Fs::create_temp`] returns
//! `None`, as the simulator's disk does), a draft is a buffer in memory, published as before.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{Fs, Opened};

/// A temporary file being written, or the bytes of one on a file system that keeps them in
/// memory. Dropped unpublished, its temporary file is removed.
pub struct Draft {
    inner: Inner,
}

enum Inner {
    Memory(Vec<u8>),
    File { path: PathBuf, file: Box<dyn Write + Send>, fs: Arc<dyn Fs>, published: bool },
}

impl std::fmt::Debug for Draft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Memory(bytes) => write!(f, "Draft::Memory({} bytes)", bytes.len()),
            Inner::File { path, .. } => write!(f, "Draft::File({})", path.display()),
        }
    }
}

impl Draft {
    /// A draft kept in memory (stores without a file system).
    pub fn memory() -> Draft {
        Draft { inner: Inner::Memory(Vec::new()) }
    }

    pub(crate) fn file(fs: Arc<dyn Fs>, path: PathBuf, file: Box<dyn Write + Send>) -> Draft {
        Draft { inner: Inner::File { path, file, fs, published: false } }
    }

    /// The bytes of a draft kept in memory; `None` for one written to a file.
    pub fn into_bytes(mut self) -> Option<Vec<u8>> {
        match &mut self.inner {
            Inner::Memory(bytes) => Some(std::mem::take(bytes)),
            Inner::File { .. } => None,
        }
    }

    /// The temporary file's path, flushed, and marked as taken over by the caller (it is no
    /// longer removed on drop); `Err(bytes)` for a draft kept in memory.
    pub(crate) fn finish(mut self) -> io::Result<Result<PathBuf, Vec<u8>>> {
        match &mut self.inner {
            Inner::Memory(bytes) => Ok(Err(std::mem::take(bytes))),
            Inner::File { path, file, published, .. } => {
                file.flush()?;
                *published = true;
                Ok(Ok(path.clone()))
            }
        }
    }
}

impl Write for Draft {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Memory(bytes) => bytes.write(buf),
            Inner::File { file, .. } => file.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::Memory(bytes) => bytes.write_all(buf),
            Inner::File { file, .. } => file.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Memory(_) => Ok(()),
            Inner::File { file, .. } => file.flush(),
        }
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        if let Inner::File { path, fs, published: false, .. } = &self.inner {
            let _ = fs.remove_file(path);
        }
    }
}

/// Whether the regular files `a` and `b` on `fs` hold the same bytes, read in blocks (neither
/// is held in memory whole). `a` must be a regular file; `b` is what was found under a name.
pub(crate) fn same_content(fs: &dyn Fs, a: &Path, b: Box<dyn Read + Send>) -> io::Result<bool> {
    let Opened::File(a) = fs.open(a)? else {
        return Err(io::Error::other("a draft is no longer a regular file"));
    };
    let (mut a, mut b) = (a, b);
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut a, &mut x)?;
        let m = read_full(&mut b, &mut y)?;
        if x[..n] != y[..m] {
            return Ok(false);
        }
        if n < x.len() {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the end; returns how much was read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
