//! The pain.001 reader (`verify`'s) and the pre-publish scan on any bytes, in a currency of each
//! scale: each answers or refuses, never panics, and when both accept a file they agree on its
//! count and total. The scan fed in two pieces (split where the first byte says), as the encoder
//! feeds it block by block, accepts exactly what it accepts whole, with the same count and total.
#![no_main]

use clearhouse_domain::Currency;
use clearhouse_formats::pain001;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    for code in ["CNY", "JPY", "KWD"] {
        let currency = Currency::from_code(code).expect("a known currency");
        let read = pain001::read(bytes, currency);
        let checked = pain001::check(bytes, currency);
        if let (Ok(read), Ok(checked)) = (&read, &checked) {
            let records = read.payments.iter().map(|p| p.transfers.len() as u64).sum::<u64>();
            assert_eq!((records, read.total), (checked.records, checked.total), "reader and scan disagree");
        }
        let at = bytes.first().map_or(0, |&b| usize::from(b) * bytes.len() / 256);
        let mut scan = pain001::Scan::new(currency);
        let fed = scan.feed(&bytes[..at]).and_then(|()| scan.feed(&bytes[at..]));
        let pieces = fed.and_then(|()| scan.finish()).map(|(checked, _)| checked);
        assert_eq!(pieces.ok(), checked.ok(), "split at {at}");
    }
});
