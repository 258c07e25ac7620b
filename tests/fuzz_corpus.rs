//! Every committed input of the reader and config fuzz targets (`fuzz/corpus/`), replayed
//! through the same calls as the targets: seeds, inputs the fuzzer found new coverage with, and
//! any input that once failed. A reader or loader that panics on one of them fails here, in the
//! ordinary test run, not only in the bounded fuzz run. (The instruction parser's corpus is
//! replayed by `clearhouse-domain`'s own test.)

use std::path::{Path, PathBuf};

use clearhouse_domain::Currency;
use clearhouse_formats::{clearing, pain001};
use clearhouse_jobs::Config;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "{target}: the corpus is there ({} files)", inputs.len());
    inputs
}

#[test]
fn the_clearing_reader_answers_every_corpus_input() {
    let mut accepted = 0;
    for (_, bytes) in corpus("clearing_reader") {
        accepted += usize::from(clearing::read(&bytes).is_ok());
    }
    assert!(accepted >= 5, "the golden clearing files in the corpus are read ({accepted})");
}

#[test]
fn the_pain001_reader_and_scan_answer_every_corpus_input_and_agree_when_both_accept() {
    let mut agreed = 0;
    for (path, bytes) in corpus("pain001_reader") {
        for code in ["CNY", "JPY", "KWD"] {
            let currency = Currency::from_code(code).expect("currency");
            if let (Ok(read), Ok(checked)) = (pain001::read(&bytes, currency), pain001::check(&bytes, currency)) {
                let records: u64 = read.payments.iter().map(|p| p.transfers.len() as u64).sum();
                assert_eq!((records, read.total), (checked.records, checked.total), "{}", path.display());
                agreed += 1;
            }
        }
    }
    assert!(agreed >= 5, "the golden credit files in the corpus pass both ({agreed})");
}

#[test]
fn the_config_loader_answers_every_corpus_input() {
    let mut loaded = 0;
    for (_, bytes) in corpus("config_loader") {
        let Ok(text) = std::str::from_utf8(&bytes) else { continue };
        let Ok(config) = Config::from_toml(text, Path::new("fuzz/clearhouse.toml")) else { continue };
        let _ = (config.calendar(), config.policy(), config.debtor(), config.engine(None));
        let _ = config.daemon_settings();
        loaded += 1;
    }
    assert!(loaded >= 2, "the example and deploy configurations load ({loaded})");
}

/// Split points spread over `len` bytes: near each end, inside lines, and every 97th byte.
fn splits(len: usize) -> Vec<usize> {
    let mut at: Vec<usize> = (0..len).step_by(97).chain([1, 2, len.saturating_sub(1)]).filter(|&i| i <= len).collect();
    at.dedup();
    at
}

#[test]
fn the_clearing_check_fed_in_pieces_answers_as_the_reader_of_the_whole_file() {
    let mut compared = 0;
    for (path, bytes) in corpus("clearing_reader") {
        let whole = clearing::read(&bytes);
        for at in splits(bytes.len()) {
            let mut check = clearing::Check::new();
            let fed = check.feed(&bytes[..at]).and_then(|()| check.feed(&bytes[at..]));
            let pieces = fed.and_then(|()| check.finish()).map(|(file, _)| file);
            assert_eq!(pieces, whole, "{} split at {at}", path.display());
            compared += 1;
        }
    }
    assert!(compared > 100, "{compared}");
}

#[test]
fn the_pain001_scan_fed_in_pieces_answers_as_the_scan_of_the_whole_file() {
    let cny = Currency::from_code("CNY").expect("CNY");
    let mut compared = 0;
    for (path, bytes) in corpus("pain001_reader") {
        let whole = pain001::check(&bytes, cny);
        for at in splits(bytes.len()) {
            let mut scan = pain001::Scan::new(cny);
            let fed = scan.feed(&bytes[..at]).and_then(|()| scan.feed(&bytes[at..]));
            let pieces = fed.and_then(|()| scan.finish()).map(|(checked, _)| checked);
            match (&pieces, &whole) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{} split at {at}", path.display()),
                (Err(_), Err(_)) => {}
                _ => panic!("{} split at {at}: {pieces:?} against {whole:?}", path.display()),
            }
            compared += 1;
        }
    }
    assert!(compared > 100, "{compared}");
}
