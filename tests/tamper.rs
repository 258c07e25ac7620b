//! `verify` vouches for every byte: the sample run's output is tampered with one byte at a time,
//! at every position of every file, and each file is deleted in turn; every change must be
//! reported. The CLI tests pin the messages of the classes the hostile-user review found passing.

mod common;

use std::collections::BTreeMap;
use std::fs;

use clearhouse_formats::verify::verify;
use clearhouse_formats::MemStore;
use common::{clearhouse, net_in_memory, net_sample, root, sample_config};
use predicates::prelude::*;

fn sample_files() -> BTreeMap<String, Vec<u8>> {
    let input = fs::read(root().join("examples/instructions.jsonl")).expect("sample input");
    net_in_memory(&sample_config(), &input, 2)
}

fn problems(files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let store = MemStore::default();
    for (name, bytes) in files {
        clearhouse_formats::OutputStore::put(&store, name, bytes).expect("put");
    }
    verify(&store).expect("verify reads memory").problems
}

/// A different byte that keeps digits digits (so JSON and numbers stay well-formed and only the
/// value changes), and changes anything else in its lowest bit.
fn tampered(b: u8) -> u8 {
    if b.is_ascii_digit() {
        b'0' + (b - b'0' + 1) % 10
    } else {
        b ^ 1
    }
}

#[test]
fn every_single_byte_change_in_every_file_is_reported() {
    let files = sample_files();
    assert_eq!(problems(&files), Vec::<String>::new(), "the untouched output verifies");
    let mut positions = 0;
    for (name, bytes) in &files {
        for (i, &from) in bytes.iter().enumerate() {
            let mut changed = files.clone();
            let to = tampered(from);
            changed.get_mut(name).expect("file")[i] = to;
            let found = problems(&changed);
            assert!(!found.is_empty(), "{name} byte {i} ({:?} -> {:?}) passed verify", from as char, to as char);
            positions += 1;
        }
    }
    assert!(positions > 10_000, "covered {positions} positions");
}

#[test]
fn every_missing_or_extra_file_is_reported() {
    let files = sample_files();
    for name in files.keys() {
        let mut fewer = files.clone();
        fewer.remove(name);
        let found = problems(&fewer);
        assert!(
            found.iter().any(|p| p.starts_with(name.as_str()) || p.contains(name.as_str())),
            "{name} deleted: {found:?}"
        );
    }
    let mut more = files.clone();
    more.insert("clearing-20261122T1500Z-CNY.txt".to_owned(), b"extra\n".to_vec());
    assert_eq!(problems(&more), ["clearing-20261122T1500Z-CNY.txt: not sealed in summary.json: not part of the run"]);
}

/// The classes the hostile-user review found passing, through the binary, with their messages.
#[test]
fn tampered_or_incomplete_output_fails_verify_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    net_sample(&out).assert().success();
    let verify_out = || {
        let mut cmd = clearhouse();
        cmd.arg("verify").arg(&out);
        cmd
    };
    let edit = |name: &str, from: &str, to: &str| {
        let text = fs::read_to_string(out.join(name)).expect("read");
        assert!(text.contains(from), "{name} has {from:?}");
        fs::write(out.join(name), text.replacen(from, to, 1)).expect("write");
        text
    };
    let cases: [(&str, &str, &str, &str); 4] = [
        ("manifest-20261120T1500Z.json", "\"timezone\": \"Asia/Shanghai\"", "\"timezone\": \"Asia/Shanghaj\"", "manifest-20261120T1500Z.json: SHA-256 is"),
        ("manifest-20261120T1500Z.json", "\"end\": \"2026-11-20T23:00:00+08:00", "\"end\": \"2026-11-20T23:00:00+09:00", "manifest-20261120T1500Z.json: end is 2026-11-20T23:00:00+09:00, but window 20261120T1500Z ends at 2026-11-20T23:00:00+08:00 in Asia/Shanghai"),
        ("summary.json", "\"malformed\": 1", "\"malformed\": 2", "summary.json: rejected_by_reason"),
        ("rejected.jsonl", "\"reason\":\"malformed\"", "\"reason\":\"too_large\"", "rejected.jsonl: SHA-256 is"),
    ];
    for (name, from, to, message) in cases {
        let original = edit(name, from, to);
        verify_out().assert().code(1).stderr(predicate::str::contains(message));
        fs::write(out.join(name), original).expect("restore");
    }
    verify_out().assert().success();
    for name in ["summary.json", "rejected.jsonl", "duplicates.jsonl"] {
        let original = fs::read(out.join(name)).expect("read");
        fs::remove_file(out.join(name)).expect("remove");
        let expected = if name == "summary.json" {
            "summary.json: missing: the run did not finish (or the file was removed), so its output cannot be vouched for".to_owned()
        } else {
            format!("{name}: sealed in summary.json but missing")
        };
        verify_out().assert().code(1).stderr(predicate::str::contains(expected));
        fs::write(out.join(name), original).expect("restore");
    }
}

#[test]
fn verify_never_reads_a_path_a_manifest_makes_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    net_sample(&out).assert().success();
    fs::write(dir.path().join("victim.txt"), "secret\n").expect("victim");
    let name = "manifest-20261120T1500Z.json";
    let text = fs::read_to_string(out.join(name)).expect("manifest");
    for outside in ["../victim.txt", "/etc/passwd"] {
        fs::write(out.join(name), text.replacen("clearing-20261120T1500Z-CNY.txt", outside, 1)).expect("write");
        clearhouse()
            .arg("verify")
            .arg(&out)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!(
                "{name}: lists {outside:?}, which is not a file name of window 20261120T1500Z"
            )))
            .stderr(predicate::str::contains("secret").not());
    }
}

#[test]
fn a_file_listed_twice_is_named_and_read_once() {
    let mut files = sample_files();
    let name = "manifest-20261120T1500Z.json";
    let text = String::from_utf8(files[name].clone()).expect("manifest text");
    let twice = text.replacen("\"pain001-20261120T1500Z-CNY.xml\"", "\"clearing-20261120T1500Z-CNY.txt\"", 1);
    assert_ne!(twice, text, "the sample's window pays in CNY");
    files.insert(name.to_owned(), twice.into_bytes());
    let found = problems(&files);
    let expected = format!("{name}: lists \"clearing-20261120T1500Z-CNY.txt\" more than once");
    assert!(found.contains(&expected), "{found:#?}");
    let unlisted = format!("{name}: CNY has refund credits but no pain.001 file");
    assert!(found.contains(&unlisted), "the credit file it no longer lists: {found:#?}");
}
