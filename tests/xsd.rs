//! Every credit file validates against the official ISO 20022 pain.001.001.09 XSD (installed by
//! `scripts/setup.sh`; missing tools fail the test, they never skip it).

mod common;

use std::fs;
use std::io::Write;

use common::{assert_valid_pain001, clearhouse, net_command, net_sample, pain001_xsd, root};

#[test]
fn sample_credit_files_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    net_sample(&out).assert().success();
    let files = pain_files(&out);
    assert_eq!(files.len(), 5, "sample has five credit files");
    for file in files {
        assert_valid_pain001(&file);
    }
}

#[test]
fn generated_workload_with_registry_validates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("gen.jsonl");
    clearhouse()
        .args(["gen", "--count", "20000", "--seed", "7", "--merchants", "40", "--out"])
        .arg(&input)
        .assert()
        .success();
    let mut registry = fs::File::create(dir.path().join("merchants.csv")).expect("registry");
    writeln!(registry, "merchant_id,name,account,bank").expect("write");
    for m in 0..40 {
        let (account, bank) =
            if m % 2 == 0 { ("DE89370400440532013000", "COBADEFFXXX") } else { ("6222000011112222", "102100099996") };
        writeln!(registry, "M{m:05},Merchant & Sons <{m}>,{account},{bank}").expect("write");
    }
    let config = dir.path().join("clearhouse.toml");
    fs::write(&config, "[calendar]\ninterval_secs = 21600\n[registry]\npath = \"merchants.csv\"\n[debtor]\nname = \"Acquirer\"\naccount = \"DE89370400440532013000\"\nbank = \"COBADEFF\"\n").expect("config");
    let out = dir.path().join("out");
    net_command(&config, &input, &out).assert().success();
    let files = pain_files(&out);
    assert!(files.len() >= 12, "expected several windows of credit files, got {}", files.len());
    for file in files {
        assert_valid_pain001(&file);
    }
}

#[test]
fn the_validator_rejects_a_broken_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.xml");
    let golden = fs::read_to_string(root().join("tests/golden/sample/pain001-20261120T1500Z-CNY.xml")).expect("golden");
    fs::write(&broken, golden.replace("<BtchBookg>true</BtchBookg>", "<BtchBookg>yes</BtchBookg>")).expect("write");
    let status = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(pain001_xsd())
        .arg(&broken)
        .output()
        .expect("xmllint");
    assert!(!status.status.success(), "xmllint accepted an invalid file: the schema check would prove nothing");
}

fn pain_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("out")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pain001-")))
        .collect();
    files.sort();
    files
}
