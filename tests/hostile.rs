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
                "original_amount 1000000.00 differs from 10.00, the amount of capture C1".to_owned()
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

#[test]
fn out_of_range_configuration_is_a_clear_error_naming_key_and_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("[refunds]\nrefund_period_days = 0", "[refunds] refund_period_days = 0 is out of range: allowed 1..=3660"),
        (
            "[calendar]\nsettlement_lag_days = 10000000",
            "[calendar] settlement_lag_days = 10000000 is out of range: allowed 0..=60",
        ),
        (
            "[calendar]\ninterval_secs = 999999999960",
            "[calendar] interval_secs = 999999999960 is out of range: allowed 60..=31622400",
        ),
        (
            "[engine]\nblock_bytes = 5000000000",
            "[engine] block_bytes = 5000000000 is out of range: allowed 4096..=268435456",
        ),
        ("[engine]\nshards = 100000", "[engine] shards = 100000 is out of range: allowed 0..=256"),
        (
            "[engine]\nqueue_blocks = 18446744073709551615",
            "[engine] queue_blocks = 18446744073709551615 is out of range: allowed 0..=1024",
        ),
        ("[daemon]\nqueue_batches = 0", "[daemon] queue_batches = 0 is out of range: allowed 1..=65536"),
    ];
    let config = dir.path().join("c.toml");
    for (text, message) in cases {
        fs::write(&config, text).expect("config");
        net_command(&config, &root().join("examples/instructions.jsonl"), &dir.path().join("out"))
            .assert()
            .code(1)
            .stderr(format!("error: invalid config {}: {message}\n", config.display()));
    }
    assert!(!dir.path().join("out").exists(), "nothing was written");
    common::net_sample(&dir.path().join("o"))
        .arg("--shards")
        .arg("0")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value '0' for '--shards <SHARDS>': 0 is not in 1..=256"));
}

#[test]
fn a_zone_that_skipped_a_day_nets_instead_of_panicking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("apia.toml");
    fs::write(&config, "[calendar]\ntimezone = \"Pacific/Apia\"\ncutoffs = [\"23:00\"]\n").expect("config");
    let input = dir.path().join("in.jsonl");
    fs::write(&input, CAPTURE_C1.replace("2026-11-21T09:00:00+08:00", "2011-12-31T05:00:00+14:00") + "\n").expect("in");
    let out = dir.path().join("out");
    net_command(&config, &input, &out)
        .assert()
        .success()
        .stdout(predicate::str::contains("windows 1 (20111231T0900Z)"));
    clearhouse().arg("verify").arg(&out).assert().success();
}

#[test]
fn a_huge_line_is_rejected_in_linear_time_with_a_bounded_payload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let mut bytes = format!("{CAPTURE_C1}\n{{\"id\":\"X\",\"pad\":\"").into_bytes();
    bytes.resize(bytes.len() + 64 * 1024 * 1024, b'x');
    bytes.extend_from_slice(b"\"}\n");
    let huge_len = bytes.len() - CAPTURE_C1.len() - 2;
    bytes.extend_from_slice(CAPTURE_C1.replace("C1", "C2").as_bytes());
    fs::write(&input, &bytes).expect("input");
    let out = dir.path().join("out");
    net_command(&root().join("examples/clearhouse.toml"), &input, &out)
        .assert()
        .success()
        .stdout(predicate::str::contains("accepted 2, rejected 1, duplicates 0"));
    let rejected = fs::read_to_string(out.join("rejected.jsonl")).expect("rejected");
    let reject: serde_json::Value = serde_json::from_str(rejected.trim_end()).expect("one reject");
    assert_eq!(reject["reason"], "too_large");
    assert_eq!(reject["source"]["line"], 2);
    assert_eq!(reject["payload"].as_str().expect("payload").len(), 1024, "a bounded prefix, not 64 MiB");
    let message = reject["message"].as_str().expect("message");
    assert!(message.starts_with(&format!("message is {huge_len} bytes; the limit is 65536 (SHA-256 ")), "{message}");
    clearhouse().arg("verify").arg(&out).assert().success();
}

#[test]
fn an_overflowing_amount_in_a_manifest_is_a_verify_problem_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    common::net_sample(&out).assert().success();
    let name = "manifest-20261120T1500Z.json";
    let text = fs::read_to_string(out.join(name)).expect("manifest");
    let at = text.find("\"captures\": \"").expect("captures") + "\"captures\": \"".len();
    let end = at + text[at..].find('"').expect("end of amount");
    fs::write(out.join(name), format!("{}79228162514264337593543950335{}", &text[..at], &text[end..])).expect("write");
    clearhouse()
        .arg("verify")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("\"79228162514264337593543950335\" is not an amount"));
}

#[test]
fn a_reader_that_goes_away_does_not_crash_net() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("clearhouse"))
        .args(["net", "--no-progress", "--config"])
        .arg(root().join("examples/clearhouse.toml"))
        .arg("--input")
        .arg(root().join("examples/instructions.jsonl"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    clearhouse().arg("verify").arg(dir.path().join("out")).assert().success();
}

/// Runs `net` with `config_text` and returns its stderr, asserting exit 1.
fn config_error(dir: &Path, config_text: &str) -> String {
    let config = dir.join("secret.toml");
    fs::write(&config, config_text).expect("config");
    let output =
        net_command(&config, &root().join("examples/instructions.jsonl"), &dir.join("out")).output().expect("run");
    assert_eq!(output.status.code(), Some(1));
    String::from_utf8(output.stderr).expect("utf-8")
}

#[test]
fn secrets_and_account_numbers_never_appear_in_error_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka = "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[kafka.properties]\n";
    let cases = [
        (format!("{kafka}\"sasl.password\" = \"S3CRET-pw"), "line 4, column 29: invalid basic string"),
        (
            format!("{kafka}\"sasl.passwrd\" = \"S3CRET-pw\""),
            "[kafka.properties] sasl.passwrd: No such configuration property: \"sasl.passwrd\"",
        ),
        (
            format!("{kafka}\"session.timeout.ms\" = \"S3CRET-pw\""),
            "[kafka.properties] session.timeout.ms: Invalid value for configuration property \"session.timeout.ms\"",
        ),
        (
            format!("{kafka}\"session.timeout.ms\" = 6222020200112233445"),
            "line 4, column 24: invalid type: integer (value not shown), expected a string",
        ),
        (
            "[debtor]\nname = \"A\"\naccount = 6222020200112233445\nbank = \"BKCHCNBJ\"\n".to_owned(),
            "line 3, column 11: invalid type: integer (value not shown), expected a string",
        ),
    ];
    for (text, message) in cases {
        let stderr = config_error(dir.path(), &text);
        assert!(stderr.contains(message), "{stderr}");
        assert!(!stderr.contains("S3CRET") && !stderr.contains("6222020200112233445"), "{stderr}");
    }
    let registry = dir.path().join("merchants.json");
    fs::write(&registry, r#"[{"merchant_id":"M001","name":"A","account":6222020200112233445,"bank":"BKCHCNBJ"}]"#)
        .expect("registry");
    let stderr = config_error(dir.path(), "[registry]\npath = \"merchants.json\"\n");
    assert!(stderr.contains("line 1: invalid type: integer (value not shown), expected a string"), "{stderr}");
    assert!(!stderr.contains("6222020200112233445"), "{stderr}");
}

#[test]
fn trace_matches_the_id_field_not_any_mention_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let mention = r#"{"id":"X2","type":"refund","original_transaction_id":"C1001","#;
    fs::write(&input, format!("{mention}\n{}\n", CAPTURE_C1.replace("\"C1\"", "\"C1001x\""))).expect("input");
    let out = dir.path().join("out");
    net_command(&root().join("examples/clearhouse.toml"), &input, &out).assert().success();
    clearhouse()
        .args(["trace", "C1001", "--out"])
        .arg(&out)
        .assert()
        .code(1)
        .stderr(format!("error: C1001 is not in {} (no clearing record, reject or duplicate)\n", out.display()));
    clearhouse()
        .args(["trace", "X2", "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::starts_with("X2: rejected, reason malformed"));
}

#[test]
fn net_with_now_rejects_event_times_beyond_the_skew_and_without_it_checks_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let far = CAPTURE_C1.replace("\"C1\"", "\"C9\"").replace("2026-11-21T09:00:00+08:00", "2031-01-01T00:00:00Z");
    fs::write(&input, format!("{CAPTURE_C1}\n{far}\n")).expect("input");
    let config = root().join("examples/clearhouse.toml");
    net_command(&config, &input, &dir.path().join("plain"))
        .assert()
        .success()
        .stdout(predicate::str::contains("accepted 2, rejected 0"));
    // 09:00+08:00 is 01:00Z: exactly the default hour of skew after --now, so still accepted.
    let out = dir.path().join("now");
    net_command(&config, &input, &out).args(["--now", "2026-11-21T00:00:00Z"]).assert().success();
    let rejected = fs::read_to_string(out.join("rejected.jsonl")).expect("rejected");
    let reject: serde_json::Value = serde_json::from_str(rejected.trim_end()).expect("one reject");
    assert_eq!(reject["reason"], "event_time_in_future");
    assert_eq!(
        reject["message"],
        "event_time 2031-01-01T00:00:00Z is more than 3600 s after the run's --now 2026-11-21T00:00:00Z"
    );
    clearhouse().arg("verify").arg(&out).assert().success();
}
