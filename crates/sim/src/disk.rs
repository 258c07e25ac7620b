//! A disk that forgets what was not durable when its machine loses power.
//!
//! The state directory and the output directory are the daemon's own code (`StateDir`,
//! `DirStore`, `clearhouse_storage::Dir`) running on this disk through the `Fs` interface
//! (`simfs.rs`), so the order of its writes, fsyncs and renames is what is under test. The model
//! is the one POSIX promises and no more:
//!
//! - a file's content is durable once the file is fsynced; at a power loss a file never fsynced
//!   keeps a random prefix of what was written to it (a torn write, possibly empty);
//! - a directory's entries (a file renamed in, replaced or removed, a subdirectory created) are
//!   durable once the directory is fsynced; at a power loss each directory keeps a random prefix
//!   of the changes made since its last fsync, in order, and a subdirectory whose entry is lost
//!   is lost with everything in it.
//!
//! A process crash without a power loss loses nothing: the kernel still has it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use clearhouse_storage::Kind;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// What a directory entry points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// A file: its index in `Disk::files`.
    File(usize),
    /// A subdirectory: its state is `Disk::dirs[path]`.
    Dir,
}

/// A file's content; written once (the daemon never writes a file twice, it replaces it).
#[derive(Debug, Clone)]
struct File {
    data: Vec<u8>,
    synced: bool,
}

/// A directory: its durable entries and the changes made since its last fsync.
#[derive(Debug, Clone, Default)]
struct Directory {
    durable: BTreeMap<String, Entry>,
    pending: Vec<(String, Option<Entry>)>,
    live: BTreeMap<String, Entry>,
}

impl Directory {
    fn set(&mut self, name: &str, entry: Option<Entry>) {
        match entry {
            Some(entry) => self.live.insert(name.to_owned(), entry),
            None => self.live.remove(name),
        };
        self.pending.push((name.to_owned(), entry));
    }
}

/// The disk: directories by path (the root `/` always exists) and files.
#[derive(Debug, Clone)]
pub struct Disk {
    dirs: BTreeMap<PathBuf, Directory>,
    files: Vec<File>,
    /// Temporary names handed out, so each is new.
    temps: u64,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

fn split(path: &Path) -> io::Result<(&Path, &str)> {
    let parent = path.parent().ok_or_else(|| not_found(path))?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| not_found(path))?;
    Ok((parent, name))
}

impl Disk {
    /// An empty disk with its root directory.
    pub fn new() -> Disk {
        Disk { dirs: BTreeMap::from([(PathBuf::from("/"), Directory::default())]), files: Vec::new(), temps: 0 }
    }

    fn dir(&self, path: &Path) -> io::Result<&Directory> {
        self.dirs.get(path).ok_or_else(|| not_found(path))
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Directory> {
        self.dirs.get_mut(path).ok_or_else(|| not_found(path))
    }

    fn entry(&self, path: &Path) -> io::Result<Entry> {
        if self.dirs.contains_key(path) {
            return Ok(Entry::Dir);
        }
        let (parent, name) = split(path)?;
        self.dir(parent)?.live.get(name).copied().ok_or_else(|| not_found(path))
    }

    /// What `path` is.
    pub fn kind(&self, path: &Path) -> io::Result<Kind> {
        Ok(match self.entry(path)? {
            Entry::File(_) => Kind::File,
            Entry::Dir => Kind::Directory,
        })
    }

    /// Creates a directory in an existing one.
    pub fn create_dir(&mut self, path: &Path) -> io::Result<()> {
        let exists = || io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display()));
        if self.dirs.contains_key(path) {
            return Err(exists());
        }
        let (parent, name) = split(path)?;
        let directory = self.dir_mut(parent)?;
        if directory.live.contains_key(name) {
            return Err(exists());
        }
        directory.set(name, Some(Entry::Dir));
        self.dirs.insert(path.to_owned(), Directory::default());
        Ok(())
    }

    /// A new file `<prefix><n>.tmp` in `dir` holding `bytes`, not synced.
    pub fn write_new(&mut self, dir: &Path, prefix: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        self.dir(dir)?;
        self.temps += 1;
        let name = format!("{prefix}{:016}.tmp", self.temps);
        self.files.push(File { data: bytes.to_vec(), synced: false });
        let file = self.files.len() - 1;
        self.dir_mut(dir)?.set(&name, Some(Entry::File(file)));
        Ok(dir.join(name))
    }

    /// Makes a file's content durable.
    pub fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        match self.entry(path)? {
            Entry::File(file) => {
                self.files[file].synced = true;
                Ok(())
            }
            Entry::Dir => Err(io::Error::other(format!("{} is a directory", path.display()))),
        }
    }

    /// Renames a file within its directory.
    pub fn rename(&mut self, from: &Path, to: &Path, replace: bool) -> io::Result<()> {
        let ((dir, old), (to_dir, new)) = (split(from)?, split(to)?);
        if dir != to_dir {
            return Err(io::Error::other("the simulated disk renames within a directory only"));
        }
        let directory = self.dir_mut(dir)?;
        let entry = directory.live.get(old).copied().ok_or_else(|| not_found(from))?;
        match directory.live.get(new) {
            Some(_) if !replace => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", to.display())))
            }
            Some(Entry::Dir) => return Err(io::Error::other(format!("{} is a directory", to.display()))),
            _ => {}
        }
        directory.set(old, None);
        directory.set(new, Some(entry));
        Ok(())
    }

    /// Removes a file.
    pub fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let directory = self.dir_mut(dir)?;
        match directory.live.get(name) {
            Some(Entry::File(_)) => {
                directory.set(name, None);
                Ok(())
            }
            Some(Entry::Dir) => Err(io::Error::other(format!("{} is a directory", path.display()))),
            None => Err(not_found(path)),
        }
    }

    /// A file's content as a process sees it.
    pub fn read(&self, path: &Path) -> io::Result<Result<&[u8], Kind>> {
        Ok(match self.entry(path)? {
            Entry::File(file) => Ok(&self.files[file].data),
            Entry::Dir => Err(Kind::Directory),
        })
    }

    /// A directory's entries as a process sees them.
    pub fn list(&self, dir: &Path) -> io::Result<Vec<(String, Kind)>> {
        let kind = |entry: &Entry| if *entry == Entry::Dir { Kind::Directory } else { Kind::File };
        Ok(self.dir(dir)?.live.iter().map(|(name, entry)| (name.clone(), kind(entry))).collect())
    }

    /// Makes a directory's entries durable.
    pub fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        let directory = self.dir_mut(dir)?;
        directory.durable = directory.live.clone();
        directory.pending.clear();
        Ok(())
    }

    /// The content `path` would have after a power loss now, if it surely has one: every
    /// directory on the way and the file itself durable.
    pub fn durable(&self, path: &Path) -> Option<&[u8]> {
        let (parent, name) = split(path).ok()?;
        let mut at = PathBuf::from("/");
        for component in parent.components().skip(1) {
            let name = component.as_os_str().to_str()?;
            if self.dirs.get(&at)?.durable.get(name) != Some(&Entry::Dir) {
                return None;
            }
            at.push(name);
        }
        match self.dirs.get(&at)?.durable.get(name)? {
            Entry::File(file) if self.files[*file].synced => Some(&self.files[*file].data),
            _ => None,
        }
    }

    /// The machine loses power. Each directory keeps a random prefix of its changes since its
    /// last fsync (`worst`: none of them) and every file never fsynced keeps a random prefix
    /// of its content (`worst`: nothing).
    pub fn power_loss(&mut self, rng: &mut ChaCha8Rng, worst: bool) {
        for directory in self.dirs.values_mut() {
            let kept = if worst { 0 } else { rng.random_range(0..=directory.pending.len()) };
            for (name, entry) in directory.pending.drain(..).take(kept) {
                match entry {
                    Some(entry) => directory.durable.insert(name, entry),
                    None => directory.durable.remove(&name),
                };
            }
            directory.live = directory.durable.clone();
        }
        for file in self.files.iter_mut().filter(|f| !f.synced) {
            let kept = if worst { 0 } else { rng.random_range(0..=file.data.len()) };
            file.data.truncate(kept);
            file.synced = true;
        }
        self.drop_unreachable();
    }

    /// Forgets directories whose entry in their parent was lost, and everything below them.
    fn drop_unreachable(&mut self) {
        let paths: Vec<PathBuf> = self.dirs.keys().cloned().collect();
        for path in paths {
            let reachable = match split(&path) {
                Err(_) => true,
                Ok((parent, name)) => self.dirs.get(parent).is_some_and(|p| p.live.get(name) == Some(&Entry::Dir)),
            };
            if !reachable {
                // `BTreeMap` order puts a parent before its children, so they go next.
                self.dirs.remove(&path);
            }
        }
    }
}

impl Default for Disk {
    fn default() -> Self {
        Disk::new()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn file(disk: &Disk, path: &str) -> Option<Vec<u8>> {
        disk.read(Path::new(path)).ok()?.ok().map(<[u8]>::to_vec)
    }

    #[test]
    fn a_power_loss_keeps_what_was_synced_and_drops_what_was_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut disk = Disk::new();
        disk.create_dir(Path::new("/s")).expect("mkdir");
        disk.sync_dir(Path::new("/")).expect("sync root");
        let temp = disk.write_new(Path::new("/s"), ".t-", b"durable").expect("write");
        disk.sync_file(&temp).expect("sync file");
        disk.rename(&temp, Path::new("/s/a"), false).expect("rename");
        disk.sync_dir(Path::new("/s")).expect("sync dir");
        assert_eq!(disk.durable(Path::new("/s/a")), Some(&b"durable"[..]));
        // Replaced without fsyncing the file nor the directory: either may be lost.
        let temp = disk.write_new(Path::new("/s"), ".t-", b"newer").expect("write");
        disk.rename(&temp, Path::new("/s/a"), true).expect("rename");
        disk.create_dir(Path::new("/s/sub")).expect("mkdir");
        assert_eq!(file(&disk, "/s/a").as_deref(), Some(&b"newer"[..]), "a process sees the rename");
        assert_eq!(disk.durable(Path::new("/s/a")), Some(&b"durable"[..]));
        disk.power_loss(&mut rng, true);
        assert_eq!(file(&disk, "/s/a").as_deref(), Some(&b"durable"[..]), "the rename is undone");
        assert!(disk.kind(Path::new("/s/sub")).is_err(), "the unsynced directory is gone");
        assert_eq!(disk.list(Path::new("/s")).expect("list").len(), 1, "and so is the temporary file");
    }

    #[test]
    fn an_unsynced_file_renamed_into_place_may_come_back_torn() {
        let torn = (0..64u64).any(|seed| {
            let mut disk = Disk::new();
            let temp = disk.write_new(Path::new("/"), ".t-", b"0123456789").expect("write");
            disk.rename(&temp, Path::new("/a"), false).expect("rename");
            disk.power_loss(&mut ChaCha8Rng::seed_from_u64(seed), false);
            file(&disk, "/a").is_some_and(|bytes| bytes.len() < 10)
        });
        assert!(torn, "some power loss keeps the rename but only part of the content");
    }

    #[test]
    fn a_lost_directory_entry_takes_the_subtree_with_it() {
        let mut disk = Disk::new();
        disk.create_dir(Path::new("/a")).expect("mkdir");
        disk.create_dir(Path::new("/a/b")).expect("mkdir");
        disk.sync_dir(Path::new("/a")).expect("sync /a, not /");
        disk.power_loss(&mut ChaCha8Rng::seed_from_u64(1), true);
        assert!(disk.kind(Path::new("/a")).is_err() && disk.kind(Path::new("/a/b")).is_err());
        disk.create_dir(Path::new("/a")).expect("the name is free again");
        assert_eq!(disk.list(Path::new("/a")).expect("list"), [], "and the new directory is empty");
    }
}
