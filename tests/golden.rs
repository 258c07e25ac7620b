//! Golden files: the sample run's outputs, byte for byte. A format change shows up here as a
//! diff to review; regenerate deliberately with `CLEARHOUSE_UPDATE_GOLDEN=1 cargo test --test golden`.

mod common;

use std::fs;

use common::{net_sample, root};

#[test]
fn sample_outputs_match_the_golden_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    net_sample(&out).assert().success();
    let golden = root().join("tests/golden/sample");
    let mut produced: Vec<String> = fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    produced.sort();
    if std::env::var_os("CLEARHOUSE_UPDATE_GOLDEN").is_some() {
        let _ = fs::remove_dir_all(&golden);
        fs::create_dir_all(&golden).expect("golden dir");
        for name in &produced {
            fs::copy(out.join(name), golden.join(name)).expect("copy");
        }
    }
    for name in produced.iter().filter(|n| n.starts_with("pain001-")) {
        common::assert_valid_pain001(&out.join(name));
    }
    let mut expected: Vec<String> = fs::read_dir(&golden)
        .expect("golden dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(produced, expected, "set of output files changed");
    for name in &produced {
        let got = fs::read_to_string(out.join(name)).expect("produced");
        let want = fs::read_to_string(golden.join(name)).expect("golden");
        assert!(
            got == want,
            "{name} differs from tests/golden/sample/{name}:\n--- golden\n{want}\n--- produced\n{got}"
        );
    }
}
