//! The fast instruction decoder against the reference tree parser: any input on which they give
//! different answers (accept or reject, reason, message, fields, fingerprint) is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Err(difference) = clearhouse_domain::parse::differential_line(bytes) {
        panic!("the fast decoder and the reference parser disagree on {difference}");
    }
});
