//! What the state and output directories hold, as the invariants read them: the checkpoints
//! and parts the daemon's codec wrote, the output files, the durable checkpoint a commit is
//! held to, and the rule that a part never changes once a durable checkpoint recorded its seal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clearhouse_daemon::state_dir::{
    decode_checkpoint, decode_progress, partition_of_dir, partition_of_part, StateError,
};
use clearhouse_domain::WindowId;
use clearhouse_engine::stream::{seal_of, PartitionState};

use crate::simfs::OUTPUT_DIR;
use crate::world::World;

impl World {
    /// The checkpoints, decoded: every one must load.
    pub fn checkpoints(&self) -> Result<BTreeMap<i32, PartitionState>, StateError> {
        let mut out = BTreeMap::new();
        for (name, _) in self.disk.list(&self.state_root).unwrap_or_default() {
            let Some(p) = partition_of_dir(&name) else { continue };
            let path = self.state_root.join(&name).join("checkpoint.bin");
            if let Ok(Ok(bytes)) = self.disk.read(&path) {
                out.insert(p, decode_checkpoint(bytes, &path)?);
            }
        }
        Ok(out)
    }

    /// The next offset of the partition's durable checkpoint, if it has one.
    pub fn checkpoint_offset(&self, partition: i32) -> Option<u64> {
        let bytes = self.disk.durable(&self.checkpoint_path(partition))?;
        decode_progress(bytes, "sim").ok().map(|progress| progress.next_offset)
    }

    fn checkpoint_path(&self, partition: i32) -> PathBuf {
        self.state_root.join(format!("p{partition}")).join("checkpoint.bin")
    }

    /// The window parts on the disk, by window and partition.
    pub fn parts(&self) -> BTreeMap<(WindowId, i32), Vec<u8>> {
        let mut out = BTreeMap::new();
        let root = self.state_root.join("parts");
        for (window, _) in self.disk.list(&root).unwrap_or_default() {
            let Ok(id) = window.parse::<WindowId>() else { continue };
            for (name, _) in self.disk.list(&root.join(&window)).unwrap_or_default() {
                let Some(p) = partition_of_part(&name) else { continue };
                if let Ok(Ok(bytes)) = self.disk.read(&root.join(&window).join(&name)) {
                    out.insert((id, p), bytes.to_vec());
                }
            }
        }
        out
    }

    /// The output directory: every file by name.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let dir = Path::new(OUTPUT_DIR);
        let listed = self.disk.list(dir).unwrap_or_default().into_iter();
        let read = |name: String| Some((name.clone(), self.disk.read(&dir.join(&name)).ok()?.ok()?.to_vec()));
        listed.filter_map(|(name, _)| read(name)).collect()
    }

    /// A file holding `bytes` was renamed to `to`, which held `old`. A part may be rewritten with other bytes
    /// while no durable checkpoint records the seal that made it (the seal was lost with a
    /// crash, and the restarted owner sealed the window at another offset); once one does, the
    /// assembler may have used it, so it must never change again.
    pub(crate) fn renamed(&mut self, to: &Path, old: Option<&[u8]>, bytes: &[u8]) {
        let Ok(relative) = to.strip_prefix(self.state_root.join("parts")) else { return };
        let mut names = relative.iter().map(|c| c.to_string_lossy());
        let window = names.next().and_then(|w| w.parse::<WindowId>().ok());
        let partition = names.next().and_then(|n| partition_of_part(&n));
        let (Some(window), Some(partition)) = (window, partition) else { return };
        let changed = old.is_some_and(|old| old != bytes);
        let progress = self.disk.durable(&self.checkpoint_path(partition)).and_then(|c| decode_progress(c, "sim").ok());
        if changed && progress.is_some_and(|pr| seal_of(&pr.seals, window).is_some()) {
            self.rewritten_parts.push((window, partition));
        }
    }
}
