//! Finds the bytes of two kinds (say `<` and `>`) in a buffer, from masks of 64 bytes at a time.
//!
//! Why: the credit file's check finds about 60 tag brackets in every 430-byte transfer, each
//! a few bytes after the one before. A `memchr` call per bracket paid its set-up 60 times a
//! transfer, and that set-up was most of the check's cost (18% of the criterion encoding
//! stage). Here each 64-byte chunk is compared once for both bytes, into two bit masks that
//! the compiler builds with vector compares, and every bracket in it is then a bit to count to.

/// Bytes in one chunk: one bit of a `u64` each.
const CHUNK: usize = 64;

/// The positions of two bytes in `bytes`, found in increasing order.
pub(crate) struct Marks<'a> {
    bytes: &'a [u8],
    pair: [u8; 2],
    /// Index of the chunk whose masks are in `masks`.
    chunk: usize,
    /// Bit `i` of `masks[k]`: byte `chunk * 64 + i` is `pair[k]`.
    masks: [u64; 2],
}

impl<'a> Marks<'a> {
    /// The marks of `first` and `second` in `bytes`.
    pub(crate) fn new(bytes: &'a [u8], first: u8, second: u8) -> Marks<'a> {
        let mut marks = Marks { bytes, pair: [first, second], chunk: 0, masks: [0; 2] };
        marks.load(0);
        marks
    }

    /// Position of the first `first` (`kind` 0) or `second` (`kind` 1) at or after `from`.
    /// Always inlined: it runs per bracket, and when a change to the pain.001 scan made LLVM
    /// stop inlining it, a `net` run took 2% more instructions (callgrind, docs/benchmarks.md).
    #[inline(always)]
    pub(crate) fn find(&mut self, kind: usize, from: usize) -> Option<usize> {
        let mut chunk = from / CHUNK;
        if chunk != self.chunk {
            self.load(chunk);
        }
        let mut mask = self.masks[kind] & (u64::MAX << (from % CHUNK));
        while mask == 0 {
            chunk += 1;
            if chunk * CHUNK >= self.bytes.len() {
                return None;
            }
            self.load(chunk);
            mask = self.masks[kind];
        }
        Some(chunk * CHUNK + mask.trailing_zeros() as usize)
    }

    fn load(&mut self, chunk: usize) {
        let start = (chunk * CHUNK).min(self.bytes.len());
        let bytes = &self.bytes[start..];
        self.chunk = chunk;
        self.masks = match bytes.first_chunk::<CHUNK>() {
            Some(whole) => masks(whole, self.pair),
            None => {
                let mut padded = [0u8; CHUNK];
                padded[..bytes.len()].copy_from_slice(bytes);
                let [a, b] = masks(&padded, self.pair);
                // The padding's zeros are not bytes of the buffer, even when a mark is zero.
                let real = u64::MAX.checked_shr(u32::try_from(CHUNK - bytes.len()).unwrap_or(64)).unwrap_or(0);
                [a & real, b & real]
            }
        };
    }
}

/// The masks of `pair[0]` and `pair[1]` in one chunk. The compares are one byte of 0 or 1 per
/// input byte, which the compiler does 16 at a time; each 8 of them, as a `u64`, are gathered
/// into 8 bits by one multiplication (byte `i`'s bit lands at bit `56 + i`, and no two
/// partial products meet there).
#[inline]
fn masks(chunk: &[u8; CHUNK], [a, b]: [u8; 2]) -> [u64; 2] {
    let first: [u8; CHUNK] = std::array::from_fn(|i| u8::from(chunk[i] == a));
    let second: [u8; CHUNK] = std::array::from_fn(|i| u8::from(chunk[i] == b));
    [gather(&first), gather(&second)]
}

/// The bits of 64 bytes that are each 0 or 1.
#[inline]
fn gather(ones: &[u8; CHUNK]) -> u64 {
    const SPREAD: u64 = 0x0102_0408_1020_4080;
    let mut bits = 0;
    for (k, eight) in ones.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(eight.try_into().unwrap_or_default());
        bits |= (word.wrapping_mul(SPREAD) >> 56) << (8 * k);
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `find` must give: the plain search.
    fn naive(bytes: &[u8], byte: u8, from: usize) -> Option<usize> {
        bytes.iter().enumerate().skip(from).find(|(_, &b)| b == byte).map(|(i, _)| i)
    }

    proptest! {
        #[test]
        fn finds_what_a_plain_search_finds(
            bytes in proptest::collection::vec(prop_oneof![Just(b'<'), Just(b'>'), Just(0u8), any::<u8>()], 0..300),
            steps in proptest::collection::vec((0usize..2, 0usize..80), 0..40),
        ) {
            let mut marks = Marks::new(&bytes, b'<', b'>');
            let mut from = 0;
            for (kind, skip) in steps {
                from += skip;
                let byte = [b'<', b'>'][kind];
                prop_assert_eq!(marks.find(kind, from), naive(&bytes, byte, from), "kind {} from {}", kind, from);
            }
        }

        #[test]
        fn finds_zero_bytes_but_never_in_the_padding(len in 0usize..200, from in 0usize..220) {
            let bytes = vec![0u8; len];
            let mut marks = Marks::new(&bytes, 0, 1);
            prop_assert_eq!(marks.find(0, from), naive(&bytes, 0, from));
            prop_assert_eq!(marks.find(1, from), None);
        }
    }

    #[test]
    fn gathers_each_byte_into_its_bit() {
        for pattern in [0u64, 1, 0x8000_0000_0000_0001, u64::MAX, 0x5555_5555_5555_5555, 0x0123_4567_89ab_cdef] {
            let ones: [u8; CHUNK] = std::array::from_fn(|i| u8::from(pattern >> i & 1 == 1));
            assert_eq!(gather(&ones), pattern, "{pattern:#x}");
        }
    }

    #[test]
    fn goes_back_when_asked() {
        let bytes = format!("{}<{}>", "x".repeat(100), "y".repeat(100));
        let mut marks = Marks::new(bytes.as_bytes(), b'<', b'>');
        assert_eq!(marks.find(1, 0), Some(201));
        assert_eq!(marks.find(0, 0), Some(100), "an earlier chunk is loaded again");
        assert_eq!(marks.find(0, 101), None);
    }
}
