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
