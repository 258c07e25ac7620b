use super::*;
use crate::manifest::{ManifestCounts, FORMAT};
use crate::store::MemStore;

fn batch(merchant: &str, payout: &str) -> ManifestBatch {
    ManifestBatch {
        merchant_id: merchant.to_owned(),
        currency: "CNY".to_owned(),
        captures: "100.00".to_owned(),
        refunds: "10.00".to_owned(),
        recoveries: "0.00".to_owned(),
        fees: "0.00".to_owned(),
        carried_in: "0.00".to_owned(),
        net: "90.00".to_owned(),
        payout: payout.to_owned(),
        carried_out: "0.00".to_owned(),
        refund_credits: "10.00".to_owned(),
        refund_credit_count: 1,
        counts: ManifestCounts { captures: 1, refunds: 1, reversals: 0, late: 0 },
    }
}

fn manifest(payout_of_m2: &str) -> Vec<u8> {
    let m = Manifest {
        format: FORMAT.to_owned(),
        window_id: "20261121T1500Z".to_owned(),
        start: "2026-11-20T23:00:00+08:00".to_owned(),
        end: "2026-11-21T23:00:00+08:00".to_owned(),
        timezone: "Asia/Shanghai".to_owned(),
        settlement_date: "2026-11-23".to_owned(),
        fences: BTreeMap::new(),
        sealed_before: BTreeMap::new(),
        batches: vec![batch("M1", "90.00"), batch("M2", payout_of_m2)],
        files: Vec::new(),
    };
    serde_json::to_vec_pretty(&m).expect("manifest json")
}

const CLEARING: &str = "H|x\nB|M1|CNY\nD|r1|refund|10.00\nC|M1\nB|M2|CNY\nD|r2|refund|10.00\nC|M2\nT|end\n";

fn original() -> MemStore {
    let store = MemStore::default();
    store.put("manifest-20261121T1500Z.json", &manifest("90.00")).expect("put");
    store.put("clearing-20261121T1500Z-CNY.txt", CLEARING.as_bytes()).expect("put");
    store.put("pain001-20261121T1500Z-CNY.xml", b"<Document/>\n").expect("put");
    store.put("summary.json", b"{}\n").expect("put");
    store
}

/// The original's files, changed by `edit`.
fn edited(edit: impl FnOnce(&mut BTreeMap<String, Vec<u8>>)) -> MemStore {
    let mut files = original().into_files();
    edit(&mut files);
    let store = MemStore::default();
    for (name, bytes) in &files {
        store.put(name, bytes).expect("put");
    }
    store
}

#[test]
fn identical_outputs_are_identical_per_file_and_batch() {
    let c = compare(&original(), &original()).expect("compare");
    assert_eq!(c.verdict(), Verdict::Identical);
    assert_eq!(c.windows.iter().map(|w| w.window.as_str()).collect::<Vec<_>>(), ["20261121T1500Z", "run"]);
    assert_eq!(c.windows[0].files.len(), 3);
    assert!(c.windows[0].batches.values().all(|s| *s == Status::Identical));
    assert_eq!(c.windows[0].batches.len(), 2);
}

#[test]
fn a_changed_record_is_shown_with_its_line_and_batch() {
    let tampered = CLEARING.replace("D|r2|refund|10.00", "D|r2|refund|10.01");
    let replay = edited(|files| {
        files.insert("clearing-20261121T1500Z-CNY.txt".to_owned(), tampered.into_bytes());
    });
    let c = compare(&original(), &replay).expect("compare");
    assert_eq!(c.verdict(), Verdict::Different);
    let expected = Difference {
        at: "line 6".to_owned(),
        batch: Some("M2/CNY".to_owned()),
        original: "D|r2|refund|10.00".to_owned(),
        replay: "D|r2|refund|10.01".to_owned(),
    };
    assert_eq!(c.windows[0].files["clearing-20261121T1500Z-CNY.txt"], Status::Different(expected));
    assert_eq!(c.windows[0].files["pain001-20261121T1500Z-CNY.xml"], Status::Identical);
}

#[test]
fn a_batch_that_differs_is_named_with_its_first_field() {
    let replay = MemStore::default();
    replay.put("manifest-20261121T1500Z.json", &manifest("80.00")).expect("put");
    let c = compare(&original(), &replay).expect("compare");
    assert_eq!(c.verdict(), Verdict::Different);
    let w = &c.windows[0];
    assert_eq!(w.batches["M1/CNY"], Status::Identical);
    let Status::Different(d) = &w.batches["M2/CNY"] else { panic!("M2 differs: {:?}", w.batches) };
    assert_eq!((d.at.as_str(), d.original.as_str(), d.replay.as_str()), ("payout", "\"90.00\"", "\"80.00\""));
    assert_eq!(w.files["clearing-20261121T1500Z-CNY.txt"], Status::Missing);
}

#[test]
fn missing_and_extra_files_without_a_difference_are_incomplete() {
    let replay = edited(|files| {
        files.remove("pain001-20261121T1500Z-CNY.xml");
        files.insert("clearing-20261122T1500Z-CNY.txt".to_owned(), b"H\n".to_vec());
    });
    let c = compare(&original(), &replay).expect("compare");
    assert_eq!(c.verdict(), Verdict::Incomplete);
    assert_eq!(c.windows[0].files["pain001-20261121T1500Z-CNY.xml"], Status::Missing);
    assert_eq!(c.windows[1].window, "20261122T1500Z");
    assert_eq!(c.windows[1].files["clearing-20261122T1500Z-CNY.txt"], Status::Extra);
}

#[test]
fn window_ids_come_from_file_names() {
    assert_eq!(window_of("manifest-20261121T1500Z.json"), Some("20261121T1500Z"));
    assert_eq!(window_of("clearing-20261121T1500Z-KWD.txt"), Some("20261121T1500Z"));
    assert_eq!(window_of("pain001-20261121T1500Z-JPY.xml"), Some("20261121T1500Z"));
    assert_eq!(window_of("rejected.jsonl"), None);
}
