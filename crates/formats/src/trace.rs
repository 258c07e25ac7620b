//! `clearhouse trace ID`: where an instruction went, read from the output directory alone.
//!
//! Every accepted instruction is a `D` record of exactly one clearing file, which names its
//! batch, its effect, the window it was late from and the EndToEndId of the credit that paid it;
//! rejects and re-deliveries are lines of `rejected.jsonl` and `duplicates.jsonl`. So the
//! output directory is its own index: trace reads those files and nothing else. A record is
//! matched by a byte search for `|ID|` before any parsing, which keeps a day's output (a few
//! hundred MB of clearing files) to a sequential scan at memory speed.

use crate::evidence::{DuplicateLine, RejectLine, DUPLICATES, REJECTED};
use crate::store::{OutputStore, StoreError};

/// One place the instruction shows up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sighting {
    /// Netted into a batch.
    Accepted {
        /// Clearing file and 1-based line of its `D` record.
        file: String,
        /// 1-based line.
        line: u64,
        /// Window it was netted into.
        window: String,
        /// `merchant/currency`.
        batch: String,
        /// `CAPTURED`, `REFUNDED`, `REVERSED`, `NETTED` or `RECOVERY`.
        effect: String,
        /// Its own window when it was netted late into a later one.
        late_from: Option<String>,
        /// The credit that paid it (refunds only).
        end_to_end_id: Option<String>,
        /// The whole record.
        record: String,
    },
    /// A line of `rejected.jsonl`.
    Rejected(RejectLine),
    /// A line of `duplicates.jsonl`.
    Duplicate(DuplicateLine),
}

fn field(value: &str) -> Option<String> {
    (value != "-").then(|| value.to_owned())
}

/// Every sighting of `id` in `store`, clearing files first (by name), then rejects and duplicates.
pub fn trace(store: &dyn OutputStore, id: &str) -> Result<Vec<Sighting>, StoreError> {
    let needle = format!("D|{id}|");
    let mut found = Vec::new();
    for name in store.list()?.into_iter().filter(|n| n.starts_with("clearing-") && n.ends_with(".txt")) {
        let Some(bytes) = store.get(&name)? else { continue };
        let text = String::from_utf8_lossy(&bytes);
        if !text.contains(&needle) {
            continue;
        }
        let window = crate::compare::window_of(&name).unwrap_or_default().to_owned();
        let mut batch = String::new();
        for (index, line) in text.lines().enumerate() {
            if let Some(b) = line.strip_prefix("B|") {
                batch = b.replace('|', "/");
            } else if line.starts_with(&needle) {
                let fields: Vec<&str> = line.split('|').collect();
                found.push(Sighting::Accepted {
                    file: name.clone(),
                    line: index as u64 + 1,
                    window: window.clone(),
                    batch: batch.clone(),
                    effect: fields.get(7).copied().unwrap_or_default().to_owned(),
                    late_from: fields.get(8).and_then(|v| field(v)),
                    end_to_end_id: fields.get(9).and_then(|v| field(v)),
                    record: line.to_owned(),
                });
            }
        }
    }
    let quoted = serde_json::to_string(id).unwrap_or_default();
    // In a JSONL line the payload's own quotes are escaped.
    let escaped = serde_json::to_string(&quoted).unwrap_or_default();
    let escaped = escaped.trim_matches('"');
    for (name, wrap) in [(REJECTED, true), (DUPLICATES, false)] {
        let Some(bytes) = store.get(name)? else { continue };
        for line in String::from_utf8_lossy(&bytes).lines().filter(|l| l.contains(&quoted) || l.contains(escaped)) {
            let sighting = if wrap {
                // A reject whose id could not be read (malformed JSON) is matched in its payload.
                let ours = |r: &RejectLine| reject_is_of(r.id.as_deref(), &r.payload, id);
                serde_json::from_str::<RejectLine>(line).ok().filter(ours).map(Sighting::Rejected)
            } else {
                serde_json::from_str::<DuplicateLine>(line).ok().filter(|d| d.id == id).map(Sighting::Duplicate)
            };
            found.extend(sighting);
        }
    }
    Ok(found)
}

/// Whether a reject (with the id it could read, and its raw payload) is one of instruction
/// `wanted`: by id, or, when the id could not be read (malformed JSON), by an `"id"` key in its
/// payload whose value is exactly `wanted`. Any other mention (an `original_transaction_id`, a
/// name, a longer id) is not a match.
pub fn reject_is_of(id: Option<&str>, payload: &str, wanted: &str) -> bool {
    match id {
        Some(id) => id == wanted,
        None => {
            let value = serde_json::to_string(wanted).unwrap_or_default();
            payload.match_indices("\"id\"").any(|(at, key)| {
                let rest = payload[at + key.len()..].trim_start();
                rest.strip_prefix(':').is_some_and(|rest| rest.trim_start().starts_with(&value))
            })
        }
    }
}

/// One line of text per sighting, for the CLI.
pub fn describe(id: &str, sighting: &Sighting) -> String {
    match sighting {
        Sighting::Accepted { file, line, window, batch, effect, late_from, end_to_end_id, record } => {
            let mut text = format!("{id}: accepted into window {window}, batch {batch}, effect {effect}");
            if let Some(own) = late_from {
                text.push_str(&format!(", late (its own window {own})"));
            }
            if let Some(e2e) = end_to_end_id {
                text.push_str(&format!(", paid by EndToEndId {e2e}"));
            }
            text + &format!("\n  {file} line {line}: {record}")
        }
        Sighting::Rejected(r) => {
            let field = r.field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default();
            format!(
                "{id}: rejected, reason {}{field}: {}\n  {} line {}",
                r.reason, r.message, r.source.file, r.source.line
            )
        }
        Sighting::Duplicate(d) => format!(
            "{id}: identical re-delivery, ignored\n  {} line {} repeats line {}",
            d.source.file, d.source.line, d.first_line
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn store() -> MemStore {
        let store = MemStore::default();
        let clearing = "H|x\nB|M1|CNY\nD|C1|capture|t|100.00|0.00|-|CAPTURED|-|-\n\
                        D|R1|refund|t|10.00|0.00|C1|REFUNDED|20261120T1500Z|E2E1\nC|M1\nT|end\n";
        store.put("clearing-20261121T1500Z-CNY.txt", clearing.as_bytes()).expect("put");
        let reject = r#"{"source":{"file":"in.jsonl","line":3},"id":null,"reason":"malformed","field":null,"message":"not valid JSON","payload":"{\"id\":\"X1\",","payload_encoding":"utf-8"}"#;
        store.put(REJECTED, format!("{reject}\n").as_bytes()).expect("put");
        let duplicate = r#"{"source":{"file":"in.jsonl","line":4},"id":"C1","first_line":1}"#;
        store.put(DUPLICATES, format!("{duplicate}\n").as_bytes()).expect("put");
        store
    }

    #[test]
    fn a_late_refund_is_found_with_its_batch_window_and_credit() {
        let found = trace(&store(), "R1").expect("trace");
        let [Sighting::Accepted { file, line, window, batch, effect, late_from, end_to_end_id, .. }] = &found[..]
        else {
            panic!("one sighting: {found:?}")
        };
        assert_eq!(
            (file.as_str(), *line, window.as_str(), batch.as_str()),
            ("clearing-20261121T1500Z-CNY.txt", 4, "20261121T1500Z", "M1/CNY")
        );
        assert_eq!(
            (effect.as_str(), late_from.as_deref(), end_to_end_id.as_deref()),
            ("REFUNDED", Some("20261120T1500Z"), Some("E2E1"))
        );
        assert!(describe("R1", &found[0]).contains("late (its own window 20261120T1500Z), paid by EndToEndId E2E1"));
    }

    #[test]
    fn an_accepted_instruction_and_its_re_delivery_are_both_shown() {
        let found = trace(&store(), "C1").expect("trace");
        assert_eq!(found.len(), 2);
        assert!(matches!(&found[0], Sighting::Accepted { late_from: None, end_to_end_id: None, .. }));
        assert!(matches!(&found[1], Sighting::Duplicate(d) if d.first_line == 1 && d.source.line == 4));
    }

    #[test]
    fn a_malformed_reject_is_found_by_its_payload_and_a_prefix_is_not_a_match() {
        let found = trace(&store(), "X1").expect("trace");
        assert!(matches!(&found[..], [Sighting::Rejected(r)] if r.reason == "malformed"));
        assert!(trace(&store(), "R").expect("trace").is_empty());
        assert!(trace(&store(), "C").expect("trace").is_empty());
    }

    #[test]
    fn a_malformed_line_that_only_mentions_the_id_is_not_a_match() {
        let mention = r#"{"id":"X2","original_transaction_id":"C1001","#;
        assert!(!reject_is_of(None, mention, "C1001"));
        assert!(reject_is_of(None, mention, "X2"));
        assert!(reject_is_of(None, r#"{ "type":"capture", "id" : "C1001", "amount":"#, "C1001"));
        assert!(!reject_is_of(None, r#"{"id":"C10011","#, "C1001"));
    }
}
