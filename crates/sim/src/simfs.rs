//! One process's view of the simulated disk, as the `Fs` the daemon's `Dir` runs on: every
//! call is an I/O step the fault injector may crash before or after, or fail (a full disk on a
//! write, an I/O error on an fsync or a rename). A crash is a power loss one time in two, which
//! takes away what was not durable (`disk.rs`).

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clearhouse_daemon::state_dir::partition_of_dir;
use clearhouse_storage::{Fs, Kind, Opened};

use crate::world::{Fault, FsOp, SimIo, Site, Step, World};

/// Where the shared state directory is mounted.
pub const STATE_DIR: &str = "/state";
/// Where the output directory is mounted.
pub const OUTPUT_DIR: &str = "/out";

/// What kind of file a path is, for the coverage count.
fn site(path: &Path) -> Site {
    let text = path.to_string_lossy();
    if text.starts_with(OUTPUT_DIR) {
        Site::Output
    } else if text.contains("/parts") {
        Site::Part
    } else if text.contains("/emitted") {
        Site::Marker
    } else if path.components().any(|c| partition_of_dir(&c.as_os_str().to_string_lossy()).is_some()) {
        Site::Partition
    } else {
        Site::Tree
    }
}

fn fault_error(step: Step) -> io::Error {
    io::Error::other(format!("simulated fault at {step:?}"))
}

/// A process's file system: its I/O steps commit the shard's reports first, as the consumer
/// thread may at any instant.
#[derive(Debug, Clone)]
pub struct SimFs(pub SimIo);

impl SimFs {
    /// Takes one step: draws its fault, applies `apply` unless the process dies or the step
    /// fails before it lands, then lets a power loss that is due happen.
    fn step<T>(&self, op: FsOp, path: &Path, apply: impl FnOnce(&mut World) -> io::Result<T>) -> io::Result<T> {
        let mut world = self.0.step();
        let step = Step::Fs(op, site(path));
        let result = match world.fault(step) {
            None => apply(&mut world),
            Some(Fault::CrashAfter) => apply(&mut world).and_then(|_| Err(fault_error(step))),
            Some(_) => Err(fault_error(step)),
        };
        world.settle();
        result
    }
}

impl Fs for SimFs {
    fn kind(&self, path: &Path, _follow: bool) -> io::Result<Kind> {
        self.step(FsOp::Stat, path, |w| w.disk.kind(path))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.step(FsOp::Mkdir, path, |w| w.disk.create_dir(path))
    }

    fn write_new(&self, dir: &Path, prefix: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        self.step(FsOp::Write, dir, |w| w.disk.write_new(dir, prefix, bytes))
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.step(FsOp::SyncFile, path, |w| w.disk.sync_file(path))
    }

    fn rename(&self, from: &Path, to: &Path, replace: bool) -> io::Result<()> {
        self.step(FsOp::Rename, to, |w| {
            let bytes = w.disk.read(from)?.map(<[u8]>::to_vec).map_err(|_| io::Error::other("not a file"))?;
            let old = w.disk.read(to).ok().and_then(Result::ok).map(<[u8]>::to_vec);
            w.disk.rename(from, to, replace)?;
            w.renamed(to, old.as_deref(), &bytes);
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step(FsOp::Remove, path, |w| w.disk.remove_file(path))
    }

    fn open(&self, path: &Path) -> io::Result<Opened> {
        self.step(FsOp::Read, path, |w| {
            Ok(match w.disk.read(path)? {
                Ok(bytes) => Opened::File(Box::new(Cursor::new(bytes.to_vec()))),
                Err(kind) => Opened::Other(kind),
            })
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(String, Kind)>> {
        self.step(FsOp::List, dir, |w| w.disk.list(dir))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(FsOp::SyncDir, dir, |w| w.disk.sync_dir(dir))
    }

    fn age(&self, _path: &Path) -> io::Result<Duration> {
        // No simulated wall clock ages files: a temporary file another instance may still be
        // writing is never taken for a leftover.
        Ok(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use clearhouse_daemon::assemble::AssemblyState;
    use clearhouse_daemon::state_dir::StateDir;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::world::{lock, Shared};

    fn process(world: &Shared) -> StateDir {
        let (_, reports) = crossbeam_channel::unbounded();
        let fs: Arc<dyn Fs> = Arc::new(SimFs(SimIo { world: Arc::clone(world), reports }));
        StateDir::open_on(fs, Path::new(STATE_DIR), "topic").expect("state dir")
    }

    #[test]
    fn a_marker_another_process_left_unsynced_is_made_durable_before_it_is_acted_on() {
        let world: Shared = Arc::new(Mutex::new(World::new(ChaCha8Rng::seed_from_u64(1), (0, 0))));
        let window = "20261121T1000Z".parse().expect("id");
        let (a, b) = (process(&world), process(&world));
        assert_eq!(b.marker(window, "credits.start").expect("read"), None, "b has used the directory");
        // Process a renames the marker in and dies before fsyncing the directory.
        let dir = Path::new(STATE_DIR).join("topic/emitted").join(window.to_string());
        {
            let mut w = lock(&world);
            let temp = w.disk.write_new(&dir, ".t-", b"{}").expect("write");
            w.disk.sync_file(&temp).expect("fsync");
            w.disk.rename(&temp, &dir.join("credits.start"), true).expect("rename");
        }
        drop(a);
        let marker = dir.join("credits.start");
        assert_eq!(b.marker(window, "credits.start").expect("read").as_deref(), Some(&b"{}"[..]));
        assert_eq!(lock(&world).disk.durable(&marker), None, "seen, but a power loss would undo it");
        b.settle_markers(window).expect("settle");
        assert_eq!(lock(&world).disk.durable(&marker), Some(&b"{}"[..]));
    }
}
