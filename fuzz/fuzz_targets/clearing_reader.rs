//! The clearing-file reader (`verify`'s, and the pre-publish check's) on any bytes: it answers
//! with the file read and checked, or an error naming the line; it never panics or loops. Fed
//! in two pieces (split where the first byte says), as the encoder feeds it block by block, it
//! gives the same answer as on the whole file.
#![no_main]

use clearhouse_formats::clearing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let whole = clearing::read(bytes);
    let at = bytes.first().map_or(0, |&b| usize::from(b) * bytes.len() / 256);
    let mut check = clearing::Check::new();
    let fed = check.feed(&bytes[..at]).and_then(|()| check.feed(&bytes[at..]));
    let pieces = fed.and_then(|()| check.finish()).map(|(file, _)| file);
    assert_eq!(pieces, whole, "split at {at}");
});
