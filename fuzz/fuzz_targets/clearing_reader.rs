//! The clearing-file reader (`verify`'s, and the pre-publish check's) on any bytes: it answers
//! with the file read and checked, or an error naming the line; it never panics or loops.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = clearhouse_formats::clearing::read(bytes);
});
