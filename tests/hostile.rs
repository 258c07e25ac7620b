//! Hostile input, configuration and output directories, through the real binary: each test is a
//! reproduction from the hostile-user review (issue 9) and pins the exact reject, message or exit
//! code that replaced a wrong result, a panic or a hang.

mod common;

use std::fs;
use std::path::Path;

use common::{clearhouse, net_command, root};
use predicates::prelude::*;

/// Runs `net` on `lines` with the sample configuration; returns the output directory's rejects
/// as `(reason, message)`.
fn net_rejects(dir: &Path, lines: &[&str]) -> Vec<(String, String)> {
    let input = dir.join("in.jsonl");
    fs::write(&input, lines.join("\n") + "\n").expect("write input");
    let out = dir.join("out");
    net_command(&root().join("examples/clearhouse.toml"), &input, &out).assert().success();
    let rejected = fs::read_to_string(out.join("rejected.jsonl")).expect("rejected.jsonl");
    rejected
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("reject line");
            (v["reason"].as_str().expect("reason").to_owned(), v["message"].as_str().expect("message").to_owned())
        })
        .collect()
}

const CAPTURE_C1: &str = r#"{"id":"C1","type":"capture","merchant_id":"M001","amount":"10.00","currency":"CNY","event_time":"2026-11-21T09:00:00+08:00"}"#;

fn refund_of_c1(id: &str, amount: &str, stated: &str, event: &str, stated_time: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"refund","merchant_id":"M001","amount":"{amount}","currency":"CNY","event_time":"{event}","original_transaction_id":"C1","original_amount":"{stated}","original_time":"{stated_time}","payee":{{"name":"Card Holder","account":"6222000011112222","bank":"BKCHCNBJ"}}}}"#
    )
}

#[test]
fn a_refund_cannot_exceed_or_predate_the_capture_it_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inflated =
        refund_of_c1("R1", "1000000.00", "1000000.00", "2026-11-21T10:00:00+08:00", "2026-11-20T09:00:00+08:00");
    let early = refund_of_c1("R2", "1.00", "10.00", "2026-11-21T08:00:00+08:00", "2026-11-20T09:00:00+08:00");
    let rejects = net_rejects(dir.path(), &[CAPTURE_C1, &inflated, &early]);
    assert_eq!(
        rejects,
        [
            (
                "original_amount_mismatch".to_owned(),
                "original_amount 1000000.00 differs from the amount 10.00 of capture C1".to_owned()
            ),
            (
                "refund_before_original".to_owned(),
                "refund at 2026-11-21T00:00:00Z is before its original at 2026-11-21T01:00:00Z".to_owned()
            ),
        ]
    );
    clearhouse().arg("verify").arg(dir.path().join("out")).assert().success();
}

/// The sample's first output file name, where an attacker with write access plants things.
const FIRST_OUTPUT: &str = "clearing-20261120T1500Z-CNY.txt";

#[test]
fn a_symlink_planted_under_an_output_name_is_refused_and_never_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, victim) = (dir.path().join("out"), dir.path().join("victim.txt"));
    fs::create_dir(&out).expect("out");
    fs::write(&victim, "precious\n").expect("victim");
    std::os::unix::fs::symlink(&victim, out.join(FIRST_OUTPUT)).expect("symlink");
    common::net_sample(&out).assert().code(1).stderr(format!(
        "error: {} is a symbolic link, not a regular file: refusing to use it\n",
        out.join(FIRST_OUTPUT).display()
    ));
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n", "the file outside was not written");
    let leftovers: Vec<_> = fs::read_dir(&out).expect("out").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(leftovers, [std::ffi::OsString::from(FIRST_OUTPUT)], "no temporary file left behind");
}

#[test]
fn a_fifo_under_an_output_name_is_an_error_for_net_verify_and_trace_never_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    common::net_sample(&out).assert().success();
    fs::remove_file(out.join(FIRST_OUTPUT)).expect("remove");
    let status = std::process::Command::new("mkfifo").arg(out.join(FIRST_OUTPUT)).status().expect("mkfifo");
    assert!(status.success());
    let fifo_error = format!("{} is a FIFO, not a regular file: refusing to use it", out.join(FIRST_OUTPUT).display());
    let timeout = std::time::Duration::from_secs(20);
    common::net_sample(&out).timeout(timeout).assert().code(1).stderr(format!("error: {fifo_error}\n"));
    clearhouse()
        .arg("verify")
        .arg(&out)
        .timeout(timeout)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("verify: {FIRST_OUTPUT}: {fifo_error}\n")));
    clearhouse()
        .args(["trace", "R1001", "--out"])
        .arg(&out)
        .timeout(timeout)
        .assert()
        .code(1)
        .stderr(predicate::str::ends_with(format!("{fifo_error}\n")));
}

#[test]
fn temporary_files_of_a_killed_run_are_removed_by_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    fs::create_dir(&out).expect("out");
    fs::write(out.join(".clearhouse-AbCdEfGhIjKlMnOp.tmp"), "half a file").expect("leftover");
    common::net_sample(&out).assert().success();
    assert!(!out.join(".clearhouse-AbCdEfGhIjKlMnOp.tmp").exists());
    clearhouse().arg("verify").arg(&out).assert().success();
}

/// The sample configuration without refund limits, with the registry at an absolute path.
fn unlimited_config(dir: &Path) -> std::path::PathBuf {
    let text = fs::read_to_string(root().join("examples/clearhouse.toml")).expect("sample config");
    let start = text.find("[limits]").expect("limits section");
    let end = text.find("[debtor]").expect("debtor section");
    let registry = root().join("examples/merchants.csv");
    let text = format!("{}{}", &text[..start], &text[end..])
        .replace("path = \"merchants.csv\"", &format!("path = {:?}", registry.display().to_string()));
    let path = dir.join("unlimited.toml");
    fs::write(&path, text).expect("config");
    path
}

#[test]
fn totals_beyond_eighteen_digits_are_split_into_valid_bank_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = Vec::new();
    for i in 0..10_000 {
        lines.push(format!(
            r#"{{"id":"C{i}","type":"capture","merchant_id":"M001","amount":"1000000000000.00","currency":"CNY","event_time":"2026-11-21T09:00:00+08:00"}}"#
        ));
    }
    for i in 0..1_001 {
        lines.push(format!(
            r#"{{"id":"K{i}","type":"refund","merchant_id":"M003","amount":"1000000000000.000","currency":"KWD","event_time":"2026-11-21T09:00:00+08:00","original_transaction_id":"T{i}","original_amount":"1000000000000.000","original_time":"2026-11-20T09:00:00+08:00","payee":{{"name":"Big Buyer","account":"KW81CBKU0000000000001234560101","bank":"CBKUKWKW"}}}}"#
        ));
    }
    let input = dir.path().join("in.jsonl");
    fs::write(&input, lines.join("\n") + "\n").expect("input");
    let out = dir.path().join("out");
    net_command(&unlimited_config(dir.path()), &input, &out).assert().success();
    clearhouse().arg("verify").arg(&out).assert().success();
    let mut pain: Vec<String> = fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pain001-"))
        .collect();
    pain.sort();
    assert_eq!(
        pain,
        [
            "pain001-20261121T1500Z-CNY-2.xml",
            "pain001-20261121T1500Z-CNY.xml",
            "pain001-20261121T1500Z-KWD-2.xml",
            "pain001-20261121T1500Z-KWD.xml"
        ],
        "10^16 CNY of payout and 1.001 x 10^15 KWD of refunds each pass 18 digits: two files each"
    );
    for name in &pain {
        common::assert_valid_pain001(&out.join(name));
    }
    let cny = fs::read_to_string(out.join("pain001-20261121T1500Z-CNY.xml")).expect("cny");
    assert!(cny.contains("<InstdAmt Ccy=\"CNY\">9999999999999999.99</InstdAmt>"), "{cny}");
    let cny2 = fs::read_to_string(out.join("pain001-20261121T1500Z-CNY-2.xml")).expect("cny 2");
    assert!(cny2.contains("<MsgId>CH-20261121T1500Z-CNY-2</MsgId>") && cny2.contains(">0.01</InstdAmt>"), "{cny2}");
    let kwd = fs::read_to_string(out.join("pain001-20261121T1500Z-KWD.xml")).expect("kwd");
    assert!(kwd.contains("<InstdAmt Ccy=\"KWD\">999000000000000.000</InstdAmt>"), "999 refunds in the first credit");
    let kwd2 = fs::read_to_string(out.join("pain001-20261121T1500Z-KWD-2.xml")).expect("kwd 2");
    assert!(kwd2.contains("<InstdAmt Ccy=\"KWD\">2000000000000.000</InstdAmt>"), "the other 2 in a second part");
    assert!(kwd2.contains("<PmtInfId>20261121T1500Z-KWD-00002</PmtInfId>"), "payment block ids stay unique");
}

#[test]
fn names_that_xml_cannot_carry_are_rejected_at_input_and_in_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refund = refund_of_c1("R1", "1.00", "10.00", "2026-11-21T10:00:00+08:00", "2026-11-20T09:00:00+08:00")
        .replace("Card Holder", "Card\u{FFFF}Holder");
    let rejects = net_rejects(dir.path(), &[CAPTURE_C1, &refund]);
    assert_eq!(
        rejects,
        [(
            "invalid_field".to_owned(),
            "payee.name: name must be 1-140 printable characters that XML can carry (no control characters, U+FFFE or U+FFFF)".to_owned()
        )]
    );
    let config = dir.path().join("bad-debtor.toml");
    let text = fs::read_to_string(unlimited_config(dir.path())).expect("config");
    fs::write(&config, text.replace("Clearhouse Demo Acquirer Settlement", "Acquirer\u{FFFE}")).expect("write");
    let input = dir.path().join("in.jsonl");
    net_command(&config, &input, &dir.path().join("out2"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("name must be 1-140 printable characters that XML can carry"));
}
