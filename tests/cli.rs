//! End-to-end tests through the built `clearhouse` binary: the quick start, verification,
//! idempotent re-runs, and every kind of bad input with its exact message and exit code.

mod common;

use std::fs;

use common::{clearhouse, net_command, net_sample, root};
use predicates::prelude::*;

#[test]
fn quick_start_nets_the_sample_and_verify_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    net_sample(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("clearhouse net: 19 instructions"))
        .stdout(predicate::str::contains("accepted 12, rejected 6, duplicates 1"))
        .stdout(predicate::str::contains("windows 2 (20261120T1500Z, 20261121T1500Z), batches 6"))
        .stdout(predicate::str::contains("files: 15 written, 0 already identical"));
    clearhouse()
        .arg("verify")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::starts_with("verify OK: 2 windows, 15 files, 6 batches, 12 accepted instructions"));
    let rejected = fs::read_to_string(out.join("rejected.jsonl")).expect("rejected.jsonl");
    let reasons: Vec<String> = rejected
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["reason"].as_str().expect("reason").to_owned()
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "malformed",
            "amount_scale",
            "refund_exceeds_original",
            "unknown_merchant",
            "duplicate_conflict",
            "unsupported_currency"
        ]
    );
}

#[test]
fn rerun_is_idempotent_and_a_different_input_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    net_sample(&out).assert().success();
    net_sample(&out).assert().success().stdout(predicate::str::contains("files: 0 written, 15 already identical"));
    let changed = dir.path().join("instructions.jsonl");
    let original = fs::read_to_string(root().join("examples/instructions.jsonl")).expect("sample");
    fs::write(
        &changed,
        original.replace(
            "\"500.00\",\"currency\":\"CNY\",\"event_time\":\"2026-11-20T09:00:00+08:00\",\"fee\":\"1.50\"",
            "\"501.00\",\"currency\":\"CNY\",\"event_time\":\"2026-11-20T09:00:00+08:00\",\"fee\":\"1.50\"",
        ),
    )
    .expect("write");
    net_command(&root().join("examples/clearhouse.toml"), &changed, &out).assert().failure().code(1).stderr(
        predicate::str::contains("error: refusing to overwrite")
            .and(predicate::str::contains("clearing-20261120T1500Z-CNY.txt with different content")),
    );
}

#[test]
fn verify_catches_a_tampered_amount_and_a_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    net_sample(&out).assert().success();
    let file = out.join("clearing-20261120T1500Z-CNY.txt");
    let text = fs::read_to_string(&file).expect("clearing file");
    fs::write(&file, text.replace("|120.00|0.50|C1001|", "|121.00|0.50|C1001|")).expect("tamper");
    clearhouse()
        .arg("verify")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("verify: clearing-20261120T1500Z-CNY.txt: SHA-256 is"))
        .stderr(predicate::str::contains(
            "verify: clearing-20261120T1500Z-CNY.txt: line 9: control refunds 245.60 but the details sum to 246.60",
        ))
        .stderr(predicate::str::contains("verify FAILED"));
    fs::remove_file(out.join("pain001-20261121T1500Z-JPY.xml")).expect("remove");
    clearhouse().arg("verify").arg(&out).assert().code(1).stderr(predicate::str::contains(
        "pain001-20261121T1500Z-JPY.xml: listed in manifest-20261121T1500Z.json but missing",
    ));
}

#[test]
fn verify_catches_a_pain001_amount_change_and_a_summary_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    net_sample(&out).assert().success();
    let pain = out.join("pain001-20261120T1500Z-CNY.xml");
    let xml = fs::read_to_string(&pain).expect("pain");
    fs::write(&pain, xml.replacen(">200.00<", ">210.00<", 1)).expect("tamper");
    fs::write(out.join("duplicates.jsonl"), "").expect("truncate");
    let rejected = fs::read_to_string(out.join("rejected.jsonl")).expect("rejected");
    fs::write(out.join("rejected.jsonl"), rejected.replacen("\"reason\":\"malformed\"", "\"reason\":\"garbled\"", 1))
        .expect("tamper");
    clearhouse()
        .arg("verify")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("pain001-20261120T1500Z-CNY.xml: PmtInf 20261120T1500Z-CNY-00001: CtrlSum says 498.00 but the transfers give 508.00").or(predicate::str::contains("GrpHdr: CtrlSum says 498.00 but the transfers give 508.00")))
        .stderr(predicate::str::contains("summary.json: says 1 duplicates, duplicates.jsonl has 0 lines"))
        .stderr(predicate::str::contains("rejected.jsonl: line 1: unknown reason code \"garbled\""));
}

#[test]
fn missing_input_file_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    clearhouse()
        .args(["net", "--input", "no/such/file.jsonl", "--out"])
        .arg(dir.path().join("out"))
        .assert()
        .code(1)
        .stderr("error: cannot open input no/such/file.jsonl: No such file or directory (os error 2)\n");
}

#[test]
fn unreadable_and_invalid_configs_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = root().join("examples/instructions.jsonl");
    clearhouse()
        .args(["net", "--config", "missing.toml", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr("error: cannot read missing.toml: No such file or directory (os error 2)\n");
    let bad = dir.path().join("bad.toml");
    fs::write(&bad, "[calendar]\ntimezone = \"Asia/Shanghai\"\ncutof = [\"23:00\"]\n").expect("write");
    net_command(&bad, &input, &dir.path().join("out")).assert().code(1).stderr(predicate::str::contains(
        "bad.toml: line 3, column 1: unknown field `cutof`, expected one of `timezone`",
    ));
    fs::write(&bad, "[calendar]\ntimezone = \"Mars/Olympus\"\n").expect("write");
    net_command(&bad, &input, &dir.path().join("out"))
        .assert()
        .code(1)
        .stderr("error: invalid config: [calendar] unknown timezone \"Mars/Olympus\"\n");
}

#[test]
fn corrupt_lines_non_utf8_and_oversized_lines_are_rejected_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("bad.jsonl");
    let good = r#"{"id":"C1","type":"capture","merchant_id":"M1","amount":"10.00","currency":"CNY","event_time":"2026-11-20T09:00:00+08:00"}"#;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(good.as_bytes());
    bytes.extend_from_slice(b"\n{\"id\":\"C2\",\"type\":\"capt\n");
    bytes.extend_from_slice(b"{\"id\":\"C3\",\"merchant_id\":\"M\xff\xfe\"}\n");
    bytes.extend_from_slice(format!("{{\"id\":\"C4\",\"pad\":\"{}\"}}\n", "x".repeat(70 * 1024)).as_bytes());
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(
        good.replace("C1", "C6").replace("2026-11-20T09:00:00+08:00", "9500-01-01T00:00:00Z").as_bytes(),
    );
    bytes.extend_from_slice(b"\n");
    fs::write(&input, &bytes).expect("write");
    let out = dir.path().join("out");
    clearhouse()
        .args(["net", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("accepted 1, rejected 5, duplicates 0"))
        .stdout(predicate::str::contains("rejected by reason: malformed 3, too_large 1, invalid_field 1"));
    let lines: Vec<serde_json::Value> = fs::read_to_string(out.join("rejected.jsonl"))
        .expect("rejected")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let summary: Vec<(u64, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["source"]["line"].as_u64().expect("line"),
                l["reason"].as_str().expect("reason"),
                l["payload_encoding"].as_str().expect("enc"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (2, "malformed", "utf-8"),
            (3, "malformed", "base64"),
            (4, "too_large", "utf-8"),
            (5, "malformed", "utf-8"),
            (6, "invalid_field", "utf-8")
        ]
    );
    assert_eq!(lines[3]["message"], "not valid JSON: EOF while parsing a value at line 1 column 0");
    assert_eq!(lines[4]["message"], "event_time 9500-01-01T00:00:00Z is outside 1970-01-01 to 9000-01-01");
    assert!(lines[2]["message"].as_str().expect("message").starts_with("message is 71700 bytes; the limit is 65536"));
    clearhouse().arg("verify").arg(&out).assert().success();
}

#[test]
fn gen_is_deterministic_and_its_output_nets_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    for path in [&a, &b] {
        clearhouse()
            .args(["gen", "--count", "5000", "--seed", "42", "--merchants", "50", "--out"])
            .arg(path)
            .assert()
            .success()
            .stdout(predicate::str::starts_with("clearhouse gen: 5000 lines"));
    }
    assert_eq!(fs::read(&a).expect("a"), fs::read(&b).expect("b"));
    let out = dir.path().join("out");
    clearhouse().args(["net", "--shards", "3", "--input"]).arg(&a).arg("--out").arg(&out).assert().success();
    clearhouse().arg("verify").arg(&out).assert().success();
}

#[test]
fn usage_errors_exit_2() {
    clearhouse().arg("net").assert().code(2).stderr(predicate::str::contains("--input <INPUT>"));
    clearhouse()
        .arg("verify")
        .arg("/definitely/not/here")
        .assert()
        .code(1)
        .stderr("error: /definitely/not/here is not a directory\n");
}

#[test]
fn verify_against_gives_the_verdict_per_window_file_and_batch_and_in_its_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, replay) = (dir.path().join("original"), dir.path().join("replay"));
    net_sample(&original).assert().success();
    net_sample(&replay).assert().success();
    let verify = || {
        let mut cmd = clearhouse();
        cmd.arg("verify").arg("--against").arg(&original).arg(&replay);
        cmd
    };
    verify()
        .assert()
        .code(0)
        .stdout(predicate::str::contains("window 20261120T1500Z: files 5 identical; batches 2 identical"))
        .stdout(predicate::str::ends_with("verify --against: IDENTICAL (2 windows; files 15 identical)\n"));

    fs::remove_file(replay.join("pain001-20261121T1500Z-CNY.xml")).expect("remove");
    verify()
        .assert()
        .code(4)
        .stdout(predicate::str::contains("  missing   pain001-20261121T1500Z-CNY.xml\n"))
        .stdout(predicate::str::contains("verify --against: INCOMPLETE"));

    // One capture's amount changed in the first clearing file: a tampered file.
    let clearing = replay.join("clearing-20261120T1500Z-CNY.txt");
    let text = fs::read_to_string(&clearing).expect("clearing");
    fs::write(
        &clearing,
        text.replacen("|capture|2026-11-20T01:00:00Z|500.00|", "|capture|2026-11-20T01:00:00Z|900.00|", 1),
    )
    .expect("tamper");
    verify()
        .assert()
        .code(3)
        .stdout(predicate::str::contains("  different clearing-20261120T1500Z-CNY.txt\n"))
        .stdout(predicate::str::contains("first difference at line 3 (batch M001/CNY)"))
        .stdout(predicate::str::contains("original: D|C1001|capture|2026-11-20T01:00:00Z|500.00|"))
        .stdout(predicate::str::contains("replay:   D|C1001|capture|2026-11-20T01:00:00Z|900.00|"))
        .stdout(predicate::str::contains("verify --against: DIFFERENT"));
}

#[test]
fn trace_tells_where_an_accepted_rejected_or_duplicate_instruction_went() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    net_sample(&out).assert().success();
    let trace = |id: &str| {
        let mut cmd = clearhouse();
        cmd.args(["trace", id, "--out"]).arg(&out);
        cmd
    };
    // R2001 was delivered twice: its clearing record and the credit that paid it, then the
    // re-delivery.
    let clearing = fs::read_to_string(out.join("clearing-20261120T1500Z-CNY.txt")).expect("clearing");
    let (line, record) = clearing.lines().enumerate().find(|(_, l)| l.starts_with("D|R2001|")).expect("R2001 record");
    let e2e = record.rsplit('|').next().expect("EndToEndId");
    let pain = fs::read_to_string(out.join("pain001-20261120T1500Z-CNY.xml")).expect("pain.001");
    assert!(pain.contains(&format!("<EndToEndId>{e2e}</EndToEndId>")), "the credit is in the bank file");
    trace("R2001").assert().success().stdout(format!(
        "R2001: accepted into window 20261120T1500Z, batch M001/CNY, effect REFUNDED, paid by EndToEndId {e2e}\n  \
         clearing-20261120T1500Z-CNY.txt line {}: {record}\n\
         R2001: identical re-delivery, ignored\n  instructions.jsonl line 7 repeats line 2\n",
        line + 1
    ));
    trace("C1003").assert().success().stdout(
        "C1003: rejected, reason amount_scale (field amount): amount 10.001 has more than 2 fraction digits for CNY\n  \
         instructions.jsonl line 13\n",
    );
    trace("NOPE").assert().code(1).stderr(predicate::str::contains("NOPE is not in"));
}

#[test]
fn replay_of_a_jsonl_file_reproduces_net_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, replayed) = (dir.path().join("original"), dir.path().join("replayed"));
    net_sample(&original).assert().success();
    let r = root();
    clearhouse()
        .args(["replay", "--config"])
        .arg(r.join("examples/clearhouse.toml"))
        .arg("--input")
        .arg(r.join("examples/instructions.jsonl"))
        .arg("--out")
        .arg(&replayed)
        .assert()
        .success()
        .stdout(predicate::str::contains("accepted 12, rejected 6, duplicates 1"));
    clearhouse().arg("verify").arg("--against").arg(&original).arg(&replayed).assert().code(0);
    clearhouse()
        .args(["replay", "--config", "x.toml", "--out", "o", "--to-offset", "1:2,x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("\"x\" is not PARTITION:OFFSET"));
}
