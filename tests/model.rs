//! The engine against an independent reference model of the settlement rules.
//!
//! The model is deliberately naive: one pass, plain maps, no shards, written from the spec rather
//! than from the engine's code. It reuses only the schema parser and the calendar (both unit
//! tested on their own). Every manifest batch the real pipeline writes must equal the model's.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use clearhouse_domain::{parse, Body, Calendar, Parsed};
use clearhouse_gen::{generate, GenOptions};
use clearhouse_jobs::Config;
use common::net_in_memory;
use proptest::prelude::*;
use rust_decimal::Decimal;

/// Per (window, merchant, currency): the manifest figures the spec defines.
#[derive(Debug, Default, Clone, PartialEq)]
struct Batch {
    captures: Decimal,
    refunds: Decimal,
    recoveries: Decimal,
    fees: Decimal,
    counts: [u64; 3],
    carried_in: Decimal,
    net: Decimal,
    payout: Decimal,
    carried_out: Decimal,
}

struct Refund {
    merchant: String,
    currency: String,
    amount: Decimal,
    time: jiff::Timestamp,
    window: String,
    original: String,
    reversed: bool,
}

type Key = (String, String, String);

#[derive(Default)]
struct Model {
    seen: HashMap<String, Vec<u128>>,
    originals: HashMap<(String, String), (Decimal, String, Decimal)>,
    /// Accepted captures: currency, amount, event time.
    captures: HashMap<(String, String), (String, Decimal, jiff::Timestamp)>,
    refunds: HashMap<String, Refund>,
    batches: BTreeMap<Key, Batch>,
}

impl Model {
    fn apply(&mut self, line: &[u8], calendar: &Calendar) {
        let (ins, fp) = match parse(line) {
            Parsed::Valid { instruction, fingerprint } => (instruction, fingerprint),
            Parsed::Invalid { identity: Some(id), .. } => {
                self.seen.entry(id.id.to_string()).or_default().push(id.fingerprint);
                return;
            }
            Parsed::Invalid { identity: None, .. } => return,
        };
        let versions = self.seen.entry(ins.id.to_string()).or_default();
        let first_delivery = versions.is_empty();
        if !versions.contains(&fp) {
            versions.push(fp);
        }
        if !first_delivery {
            return; // duplicate or conflict: no effect either way
        }
        let (m, c) = (ins.merchant_id.to_string(), ins.currency.code().to_owned());
        let window = calendar.window_of(ins.event_time).id.to_string();
        let key = (window.clone(), m.clone(), c.clone());
        match &ins.body {
            Body::Capture => {
                self.captures.insert((m.clone(), ins.id.to_string()), (c.clone(), ins.amount, ins.event_time));
                let b = self.batches.entry(key).or_default();
                b.captures += ins.amount;
                b.fees += ins.fee;
                b.counts[0] += 1;
            }
            Body::Refund(r) => {
                let orig = r.original_transaction_id.to_string();
                // A refund of a capture the engine accepted is held to that capture.
                let capture = self.captures.get(&(m.clone(), orig.clone()));
                if capture.is_some_and(|(cc, amount, _)| *cc != c || *amount != r.original_amount) {
                    return;
                }
                let original_time = capture.map_or(r.original_time, |(_, _, time)| *time);
                let days = ins.event_time.duration_since(original_time).as_secs();
                if ins.event_time < original_time || days > 365 * 86_400 {
                    return;
                }
                let state = self.originals.entry((m.clone(), orig.clone())).or_insert((
                    r.original_amount,
                    c.clone(),
                    Decimal::ZERO,
                ));
                if state.0 != r.original_amount || state.1 != c || state.2 + ins.amount > state.0 {
                    return;
                }
                state.2 += ins.amount;
                let refund = Refund {
                    merchant: m,
                    currency: c,
                    amount: ins.amount,
                    time: ins.event_time,
                    window,
                    original: orig,
                    reversed: false,
                };
                self.refunds.insert(ins.id.to_string(), refund);
                let b = self.batches.entry(key).or_default();
                b.refunds += ins.amount;
                b.fees += ins.fee;
                b.counts[1] += 1;
            }
            Body::RefundReversal { reverses } => {
                let Some(r) = self.refunds.get_mut(reverses.as_str()) else { return };
                if r.merchant != m || r.reversed || r.currency != c || r.amount != ins.amount || ins.event_time < r.time
                {
                    return;
                }
                r.reversed = true;
                self.originals.get_mut(&(m.clone(), r.original.clone())).expect("original").2 -= r.amount;
                let same_window = r.window == window;
                let b = self.batches.entry(key).or_default();
                if same_window {
                    b.refunds -= ins.amount;
                } else {
                    b.recoveries += ins.amount;
                }
                b.fees += ins.fee;
                b.counts[2] += 1;
            }
        }
    }

    /// Carried debt per merchant and currency, window by window.
    fn settle(mut self) -> BTreeMap<Key, Batch> {
        let mut debt: HashMap<(String, String), Decimal> = HashMap::new();
        for ((_, m, c), b) in self.batches.iter_mut() {
            b.carried_in = debt.remove(&(m.clone(), c.clone())).unwrap_or_default();
            b.net = b.captures - b.refunds + b.recoveries - b.fees + b.carried_in;
            b.payout = b.net.max(Decimal::ZERO);
            b.carried_out = b.net.min(Decimal::ZERO);
            if b.carried_out < Decimal::ZERO {
                debt.insert((m.clone(), c.clone()), b.carried_out);
            }
        }
        self.batches
    }
}

fn engine_batches(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<Key, Batch> {
    let d = |v: &serde_json::Value| Decimal::from_str(v.as_str().expect("amount")).expect("decimal");
    let mut out = BTreeMap::new();
    for (name, bytes) in files.iter().filter(|(n, _)| n.starts_with("manifest-")) {
        let manifest: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        for b in manifest["batches"].as_array().expect("batches") {
            let key = (
                manifest["window_id"].as_str().expect("id").to_owned(),
                b["merchant_id"].as_str().expect("m").to_owned(),
                b["currency"].as_str().expect("c").to_owned(),
            );
            let n = |k: &str| b["counts"][k].as_u64().expect("count");
            let batch = Batch {
                captures: d(&b["captures"]),
                refunds: d(&b["refunds"]),
                recoveries: d(&b["recoveries"]),
                fees: d(&b["fees"]),
                counts: [n("captures"), n("refunds"), n("reversals")],
                carried_in: d(&b["carried_in"]),
                net: d(&b["net"]),
                payout: d(&b["payout"]),
                carried_out: d(&b["carried_out"]),
            };
            out.insert(key, batch);
        }
    }
    out
}

/// Makes some refunds of generated captures (`C…`) state an inflated original amount, and others
/// an original time ten years early, so the model and the engine must both hold those refunds to
/// the capture they name rather than to what they declare.
fn lie_about_captures(input: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(input).expect("generated input is UTF-8");
    let mut out = String::with_capacity(text.len() + 1024);
    for (i, line) in text.lines().enumerate() {
        let mut line = line.to_owned();
        if line.contains(r#""original_transaction_id":"C"#) {
            if i % 5 == 0 {
                line = line.replacen(r#""original_amount":""#, r#""original_amount":"9"#, 1);
            }
            if i % 7 == 0 {
                line = line.replacen(r#""original_time":"202"#, r#""original_time":"201"#, 1);
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_the_reference_model(seed in 0u64..100_000, count in 200u64..3000, merchants in 1u32..25, interval_hours in 1i64..30) {
        let options = GenOptions { seed, count, merchants, days: 2, reversal_permille: 100, bad_permille: 20, duplicate_permille: 30, ..GenOptions::default() };
        let mut input = Vec::new();
        generate(&options, &mut input).expect("generate");
        let input = lie_about_captures(&input);
        let mut config = Config::default();
        config.calendar.interval_secs = Some(interval_hours * 3600);
        let calendar = config.calendar().expect("calendar");
        let mut model = Model::default();
        for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            model.apply(line, &calendar);
        }
        let expected = model.settle();
        let files = net_in_memory(&config, &input, 3);
        common::assert_valid_pain001_in(&files);
        let got = engine_batches(&files);
        prop_assert_eq!(got.len(), expected.len());
        for (key, want) in &expected {
            prop_assert_eq!(got.get(key), Some(want), "batch {:?}", key);
        }
    }
}
