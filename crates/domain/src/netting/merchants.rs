//! The merchants a shard has netted for, each given a small handle: batches, carried debt and
//! refund records are keyed by handle, so the hot path hashes and compares a merchant's id once
//! per instruction instead of once per map it touches. Handles never reach an output (batches
//! are sorted by id when a window closes), so they may differ between runs and shard counts.
//!
//! The daemon runs for years, so a merchant nothing refers to any more is forgotten with the
//! history that expires (`Netter::expire`), and its handle is reused: the table is bounded by
//! the merchants with open batches, debt or recent refunds, not by every merchant ever seen.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::Map;

/// A merchant as the state keys it: its index in [`Merchants`].
pub(super) type MerchantHandle = u32;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Merchants {
    /// By handle; `None` for a forgotten merchant's handle, free for reuse.
    ids: Vec<Option<CompactString>>,
    #[serde(skip)]
    handles: Map<CompactString, MerchantHandle>,
    #[serde(skip)]
    free: Vec<MerchantHandle>,
}

impl Merchants {
    /// Rebuilds the index of a state restored from a checkpoint, which keeps only the ids.
    pub(super) fn reindex(&mut self) {
        self.handles = self.live().map(|(h, id)| (id.clone(), h)).collect();
        assert_eq!(self.handles.len(), self.live().count(), "a merchant twice in a checkpoint");
        self.free = (0..self.ids.len()).rev().filter(|&h| self.ids[h].is_none()).map(|h| h as MerchantHandle).collect();
    }

    fn live(&self) -> impl Iterator<Item = (MerchantHandle, &CompactString)> + '_ {
        self.ids.iter().enumerate().filter_map(|(h, id)| Some((h as MerchantHandle, id.as_ref()?)))
    }

    pub(super) fn get(&self, id: &str) -> Option<MerchantHandle> {
        self.handles.get(id).copied()
    }

    pub(super) fn intern(&mut self, id: &CompactString) -> MerchantHandle {
        if let Some(handle) = self.get(id) {
            return handle;
        }
        let handle = match self.free.pop() {
            Some(handle) => {
                self.ids[handle as usize] = Some(id.clone());
                handle
            }
            None => {
                let handle = MerchantHandle::try_from(self.ids.len()).expect("fewer than 2^32 merchants per shard");
                self.ids.push(Some(id.clone()));
                handle
            }
        };
        self.handles.insert(id.clone(), handle);
        handle
    }

    pub(super) fn id(&self, handle: MerchantHandle) -> &CompactString {
        self.ids[handle as usize].as_ref().expect("a handle in use names a merchant")
    }

    /// Forgets every merchant whose handle is not in `live`.
    pub(super) fn retain(&mut self, live: &std::collections::HashSet<MerchantHandle>) {
        for handle in 0..self.ids.len() as MerchantHandle {
            if live.contains(&handle) {
                continue;
            }
            if let Some(id) = self.ids[handle as usize].take() {
                self.handles.remove(&id);
                self.free.push(handle);
            }
        }
        // Lowest handle reused first, as after `reindex`.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Merchants remembered.
    pub(super) fn len(&self) -> usize {
        self.handles.len()
    }
}
