//! Publishing windows exactly once without Kafka transactions: per window and topic, a start
//! marker (the topic's end offsets before the first message) and a done marker; a publication
//! interrupted between them reads the topic back from its start and sends only what is missing.

use std::collections::{BTreeMap, HashMap, HashSet};

use clearhouse_domain::WindowId;
use clearhouse_formats::OutputStore;

use super::{Assembly, AssemblyState, Message, ReadBack, Ready, Sent, Topics};
use crate::DaemonError;

impl<S: AssemblyState, T: Topics, O: OutputStore> Assembly<S, T, O> {
    /// Publishes a round of windows exactly once: every window's credits, then (once they are
    /// all acknowledged) every window's event; returns what each window's publication sent.
    /// A window whose event is already on the windows topic but that this state directory
    /// never began was published by an earlier one (lost, or replaced by a restore): it is
    /// marked done and nothing of it is sent, or its payees would be paid twice.
    pub fn publish(&mut self, round: &[&Ready], read_back: ReadBack) -> Result<Vec<Sent>, DaemonError> {
        for ready in round {
            self.state.settle_markers(ready.window)?;
        }
        let published_before = self.published_before_this_state(round)?;
        let todo: Vec<&Ready> = round.iter().copied().filter(|r| !published_before.contains(&r.window)).collect();
        let credits: Vec<_> = todo.iter().map(|r| (r.window, r.credits.as_slice())).collect();
        let credits_topic = self.settings.credits_topic.clone();
        let credits_sent = self.publish_once("credits", &credits_topic, &credits, read_back)?;
        let events: Vec<_> = todo.iter().map(|r| (r.window, std::slice::from_ref(&r.event))).collect();
        let windows_topic = self.settings.windows_topic.clone();
        let events_sent = self.publish_once("window", &windows_topic, &events, read_back)?;
        let mut sent: HashMap<WindowId, Sent> = HashMap::new();
        for (i, ready) in todo.iter().enumerate() {
            sent.insert(ready.window, Sent { credits: credits_sent[i], event: events_sent[i] > 0 });
        }
        Ok(round.iter().map(|r| sent.get(&r.window).copied().unwrap_or_default()).collect())
    }

    /// The windows of `round` this state directory never began publishing whose event is on
    /// the windows topic: each is marked done here. The windows topic holds one message per
    /// window, so reading it once per round is cheap.
    fn published_before_this_state(&mut self, round: &[&Ready]) -> Result<HashSet<WindowId>, DaemonError> {
        let mut unstarted = HashSet::new();
        for ready in round {
            let window = ready.window;
            if self.state.marker(window, "credits.start")?.is_none()
                && self.state.marker(window, "window.done")?.is_none()
            {
                unstarted.insert(window);
            }
        }
        if unstarted.is_empty() {
            return Ok(unstarted);
        }
        let windows_topic = self.settings.windows_topic.clone();
        let events = self.topics.messages_since(&windows_topic, &BTreeMap::new())?;
        let on_topic: HashSet<String> = events.into_iter().map(|(key, _)| key).collect();
        unstarted.retain(|window| on_topic.contains(&window.to_string()));
        for &window in &unstarted {
            tracing::warn!(%window, "already on the windows topic, published before this state directory: not publishing again");
            self.state.mark(window, "credits.done", b"")?;
            self.state.mark(window, "window.done", b"")?;
            self.sealed_at.remove(&window);
        }
        Ok(unstarted)
    }

    /// Publishes each window's `messages` to `topic` once; returns how many of each window's
    /// were sent by this call.
    ///
    /// Per window, `<name>.start` records the topic's end offsets before its first message is
    /// sent and `<name>.done` that every message was acknowledged. A window started but not done
    /// (a crash in between) has its messages read back from its recorded start, and only those
    /// not on the topic are sent (with [`ReadBack::All`], a window not started is read back
    /// from the beginning of the topic). One round shares one end-offset fetch (the offsets
    /// before any message of the round), one read-back (from the earliest start of its resumed
    /// windows; keys are unique per window, so reading more finds nothing wrong) and one flush.
    fn publish_once(
        &mut self,
        name: &str,
        topic: &str,
        windows: &[(WindowId, &[Message])],
        read_back: ReadBack,
    ) -> Result<Vec<usize>, DaemonError> {
        let (done, start_name) = (format!("{name}.done"), format!("{name}.start"));
        let mut todo = Vec::new();
        let mut resumed: Vec<BTreeMap<i32, i64>> = Vec::new();
        for (i, (window, _)) in windows.iter().enumerate() {
            if self.state.marker(*window, &done)?.is_some() {
                continue;
            }
            let start: Option<BTreeMap<i32, i64>> = match self.state.marker(*window, &start_name)? {
                Some(bytes) => Some(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| DaemonError::State(format!("emitted/{window}/{start_name}: {e}")))?,
                ),
                None => None,
            };
            match (&start, read_back) {
                (Some(start), _) => resumed.push(start.clone()),
                (None, ReadBack::All) => resumed.push(BTreeMap::new()),
                (None, ReadBack::Started) => {}
            }
            todo.push((i, start.is_none()));
        }
        let mut sent = vec![0; windows.len()];
        if todo.is_empty() {
            return Ok(sent);
        }
        let present: HashSet<String> = match earliest(&resumed) {
            Some(from) => self.topics.messages_since(topic, &from)?.into_iter().map(|(key, _)| key).collect(),
            None => HashSet::new(),
        };
        if todo.iter().any(|(_, fresh)| *fresh) {
            let start = serde_json::to_vec(&self.topics.end_offsets(topic)?).expect("offsets");
            for (i, _) in todo.iter().filter(|(_, fresh)| *fresh) {
                self.state.mark(windows[*i].0, &start_name, &start)?;
            }
        }
        let sending = self.send_missing(topic, windows, &todo, &present, &mut sent);
        // Flushed even when a send failed: what was queued is acknowledged or purged before the
        // next pass reads the topic back, never delivered behind its back.
        let flushed = self.topics.flush();
        sending?;
        flushed?;
        for (i, _) in &todo {
            self.state.mark(windows[*i].0, &done, b"")?;
        }
        Ok(sent)
    }

    /// Queues the messages of the `todo` windows that are not `present` on `topic`, counting
    /// them in `sent`.
    fn send_missing(
        &mut self,
        topic: &str,
        windows: &[(WindowId, &[Message])],
        todo: &[(usize, bool)],
        present: &HashSet<String>,
        sent: &mut [usize],
    ) -> Result<(), DaemonError> {
        for (i, _) in todo {
            let (window, messages) = windows[*i];
            for (key, payload) in messages.iter().filter(|(key, _)| !present.contains(key)) {
                self.topics.send(topic, key, payload)?;
                sent[*i] += 1;
            }
            if sent[*i] < messages.len() {
                let already = messages.len() - sent[*i];
                tracing::warn!(%window, topic, already, sent = sent[*i], "resumed an interrupted publication");
            }
        }
        Ok(())
    }
}

/// Per partition, the earliest of the recorded start offsets (a partition one of them does not
/// name is read from the beginning); `None` when there are none.
fn earliest(starts: &[BTreeMap<i32, i64>]) -> Option<BTreeMap<i32, i64>> {
    let partitions: std::collections::BTreeSet<i32> = starts.iter().flat_map(|s| s.keys().copied()).collect();
    (!starts.is_empty()).then(|| {
        partitions
            .into_iter()
            .map(|p| (p, starts.iter().map(|s| s.get(&p).copied().unwrap_or(0)).min().unwrap_or(0)))
            .collect()
    })
}
