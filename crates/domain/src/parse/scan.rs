//! The fast decoder: one pass over the borrowed bytes of a message of the common shape, with no
//! tree, no allocation per field and the fingerprint hashed from the same slices.
//!
//! The common shape is what every producer sends: one object whose keys are schema fields, each
//! value a string without escapes, and `payee` an object of `name`, `account` and `bank`. Anything
//! else (an escape, an unknown or repeated key, a number, a nested value, malformed JSON) makes
//! [`scan`] answer `None`, and the message goes to the reference tree parser (`json.rs`), which
//! is the definition of what a message means. So the fast path only has to agree with the tree
//! on the messages it takes, and the differential tests (a proptest in `tests.rs`, the
//! `parse_differential` fuzz target) check that it does, field by field and fingerprint by
//! fingerprint.

use xxhash_rust::xxh3::xxh3_128;

use super::json::{canonical_bytes, slot, KEYS};

/// The top-level schema fields a flat message may hold (every slot before the payee's own).
const TOP: usize = 12;
/// The slot of `payee`, and of its first part (`name`, then `account`, `bank`).
const PAYEE: usize = 10;
const PAYEE_PARTS: usize = 12;

/// A message of the common shape: each schema field's string, and the payee's parts.
#[derive(Debug, Default)]
pub(super) struct Flat<'a> {
    fields: [Option<&'a str>; TOP],
    payee: Option<[Option<&'a str>; 3]>,
}

impl<'a> Flat<'a> {
    /// The string in top-level slot `i`; `None` when absent (or the payee's slot).
    pub(super) fn str_slot(&self, i: usize) -> Option<&'a str> {
        self.fields.get(i).copied().flatten()
    }

    /// The payee's parts, when there is a payee object.
    pub(super) fn payee(&self) -> Option<&[Option<&'a str>; 3]> {
        self.payee.as_ref()
    }

    /// The same fingerprint the tree gives the same message: its canonical encoding hashed.
    pub(super) fn fingerprint(&self, len_hint: usize) -> u128 {
        // One buffer per thread, reused: an allocation and a free per message showed in
        // profiles of the parse workers. It keeps the size of the longest message seen.
        thread_local! {
            static CANONICAL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        CANONICAL.with_borrow_mut(|out| {
            out.clear();
            out.reserve(len_hint + 16 * KEYS.len());
            self.canonical(out);
            xxh3_128(out)
        })
    }

    /// The canonical encoding of the message (`json.rs`), appended to `out`. Each key's part
    /// of it is the same in every message, so it is copied from [`KEY_PARTS`].
    fn canonical(&self, out: &mut Vec<u8>) {
        let keys = &*KEY_PARTS;
        out.push(b'o');
        for (i, key) in keys.iter().enumerate().take(TOP) {
            if i == PAYEE {
                if let Some(parts) = &self.payee {
                    out.extend_from_slice(key);
                    out.push(b'o');
                    for (part, name) in parts.iter().zip(&keys[PAYEE_PARTS..]) {
                        if let Some(value) = part {
                            out.extend_from_slice(name);
                            canonical_bytes(out, b's', value.as_bytes());
                        }
                    }
                    out.push(b'e');
                }
            } else if let Some(value) = self.fields[i] {
                out.extend_from_slice(key);
                canonical_bytes(out, b's', value.as_bytes());
            }
        }
        out.push(b'e');
    }
}

/// Each schema key as a canonical encoding holds it (`canonical_bytes` with tag `k`).
static KEY_PARTS: std::sync::LazyLock<[Vec<u8>; KEYS.len()]> = std::sync::LazyLock::new(|| {
    KEYS.map(|key| {
        let mut part = Vec::with_capacity(5 + key.len());
        canonical_bytes(&mut part, b'k', key.as_bytes());
        part
    })
});

/// Scans `bytes` as a message of the common shape; `None` for anything else.
pub(super) fn scan(bytes: &[u8]) -> Option<Flat<'_>> {
    // One UTF-8 check for the whole message (invalid UTF-8 is the tree's to report).
    let text = std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner { text, bytes, at: 0 };
    let mut flat = Flat::default();
    s.skip_ws();
    s.object(|s, key| {
        match slot(key)? {
            PAYEE if flat.payee.is_none() => flat.payee = Some(s.payee()?),
            i if i < TOP && i != PAYEE && flat.fields[i].is_none() => flat.fields[i] = Some(s.string()?),
            _ => return None,
        }
        Some(())
    })?;
    s.skip_ws();
    (s.at == bytes.len()).then_some(flat)
}

/// Bytes of `word` (eight, first in the low byte) that end a plain string: a quote, a
/// backslash or a control character, each flagged by its high bit. Only the lowest flag is
/// sure (a borrow from a flagged byte can flag the bytes above it), and only it is used.
fn stops(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\'))) | below_space
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn next(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON's four whitespace bytes.
    fn skip_ws(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string with no escape and no control character. Schema strings are short, so a loop
    /// over eight bytes at a time (`stops`) beats a vectorised search per string; the last few
    /// bytes, and the byte a word stopped at, go through the plain loop. The quotes are ASCII,
    /// so the slice between them is on character boundaries of the (already checked) UTF-8 text.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        while let Some(word) = self.bytes.get(self.at..self.at + 8) {
            let stops = stops(u64::from_le_bytes(word.try_into().unwrap_or([b'"'; 8])));
            if stops != 0 {
                self.at += stops.trailing_zeros() as usize / 8;
                break;
            }
            self.at += 8;
        }
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => break,
                b'\\' | 0..0x20 => return None,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        self.text.get(start..self.at - 1)
    }

    /// The payee object: `name`, `account` and `bank`, each at most once, strings only.
    fn payee(&mut self) -> Option<[Option<&'a str>; 3]> {
        let mut parts = [None; 3];
        self.object(|s, key| {
            let i = slot(key)?.checked_sub(PAYEE_PARTS)?;
            if parts.get(i)?.is_some() {
                return None;
            }
            parts[i] = Some(s.string()?);
            Some(())
        })?;
        Some(parts)
    }

    /// A non-empty object whose members `member` reads: it is called with each key, the scanner
    /// at the value, and answers `None` to give up on the message.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.skip_ws();
        loop {
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            member(self, key)?;
            self.skip_ws();
            match self.next()? {
                b',' => self.skip_ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stops;
    use proptest::prelude::*;

    proptest! {
        /// The lowest flag of `stops` is the first quote, backslash or control byte, whatever
        /// the other bytes (control bytes, quotes and bytes above 0x7f made common).
        #[test]
        fn the_lowest_stop_is_the_first_special_byte(
            word in proptest::array::uniform8(prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..0x80, 0x80u8..=0xff]),
        ) {
            let first = word.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let found = stops(u64::from_le_bytes(word));
            prop_assert_eq!((found != 0).then(|| found.trailing_zeros() as usize / 8), first);
        }
    }
}
