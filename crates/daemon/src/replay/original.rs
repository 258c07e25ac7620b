//! What the original run recorded about its seals, from its manifests or its window events:
//! per partition, each seal's fence and how far it closed windows. A replay applies exactly these.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clearhouse_domain::WindowId;
use clearhouse_formats::events::WindowMessage;
use clearhouse_formats::{DirStore, Manifest, OutputStore};
use jiff::Timestamp;
use rdkafka::consumer::BaseConsumer;

use super::TIMEOUT;
use crate::readback::messages_since;
use crate::{DaemonError, Settings};

/// Where the original fences and seals come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Original {
    /// The manifests of an output directory.
    Dir(PathBuf),
    /// The window-closed events on the windows topic (when the output directory is lost).
    WindowsTopic,
    /// None: every window is sealed by event time only.
    None,
}

/// Seals of the original run for one partition: (fence, closed_before), in order.
pub type OriginalSeals = BTreeSet<(u64, Timestamp)>;

/// What the original run recorded for each window: fences and seal instants per input.
pub type Recorded = BTreeMap<WindowId, (BTreeMap<String, u64>, BTreeMap<String, String>)>;

/// Per partition of the input topic, the seals `recorded` says the original run made.
pub fn original_seals(settings: &Settings, recorded: &Recorded, partitions: i32) -> Vec<OriginalSeals> {
    let mut seals = vec![OriginalSeals::new(); partitions as usize];
    for (window, (fences, sealed_before)) in recorded {
        for (p, seals) in seals.iter_mut().enumerate() {
            let input = format!("{}/{p}", settings.input_topic);
            let Some(&fence) = fences.get(&input) else { continue };
            // Older manifests have no seal instants: the seal closed at least this window.
            let closed = sealed_before.get(&input).and_then(|t| t.parse().ok()).unwrap_or(window.end());
            seals.insert((fence, closed));
        }
    }
    seals
}

fn window_id(name: &str, id: &str) -> Result<WindowId, DaemonError> {
    id.parse().map_err(|_| DaemonError::State(format!("{name}: bad window id {id:?}")))
}

/// What the manifests in `store` recorded.
pub fn recorded_in(store: &dyn OutputStore) -> Result<Recorded, DaemonError> {
    let mut recorded = Recorded::new();
    for name in store.list()?.into_iter().filter(|n| n.starts_with("manifest-") && n.ends_with(".json")) {
        let bytes = store.get(&name)?.unwrap_or_default();
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| DaemonError::State(format!("{name}: not a manifest: {e}")))?;
        recorded.insert(window_id(&name, &m.window_id)?, (m.fences, m.sealed_before));
    }
    Ok(recorded)
}

pub(super) fn recorded(
    settings: &Settings,
    original: &Original,
    client: &BaseConsumer,
) -> Result<Recorded, DaemonError> {
    let mut recorded = Recorded::new();
    match original {
        Original::None => {}
        Original::Dir(dir) => recorded = recorded_in(&DirStore::open(dir)?)?,
        Original::WindowsTopic => {
            let topic = &settings.windows_topic;
            for (_, payload) in messages_since(client, topic, &BTreeMap::new(), TIMEOUT)? {
                let m: WindowMessage = serde_json::from_slice(&payload)
                    .map_err(|e| DaemonError::State(format!("{topic}: not a window event: {e}")))?;
                recorded.insert(window_id(topic, &m.window_id)?, (m.fences, m.sealed_before));
            }
        }
    }
    Ok(recorded)
}
