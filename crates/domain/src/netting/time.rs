//! A point in time as the history records keep it: a `Timestamp` in 12 bytes, 4-byte aligned.
//!
//! Why: a shard remembers a capture, an original or a refund per accepted instruction, in
//! tables of millions of entries, and `jiff::Timestamp` takes 16 bytes (a 12-byte value padded
//! to its 8-byte alignment). Packed, the time fits beside a record's 4-byte fields, and a
//! capture's bucket takes 40 bytes instead of 48, an original's 48 instead of 64
//! (docs/benchmarks.md). It serializes as the `Timestamp` it stands for, so a checkpoint's
//! records encode as before, and a checkpoint written by an earlier build still reads.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `Timestamp`, packed.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub(super) struct Time {
    second: i64,
    nanosecond: i32,
}

impl Time {
    /// The `Timestamp` it stands for.
    pub(super) fn get(self) -> Timestamp {
        let (second, nanosecond) = (self.second, self.nanosecond);
        Timestamp::new(second, nanosecond).expect("made from a Timestamp")
    }
}

impl From<Timestamp> for Time {
    fn from(time: Timestamp) -> Time {
        Time { second: time.as_second(), nanosecond: time.subsec_nanosecond() }
    }
}

impl std::fmt::Debug for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.get(), f)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        Timestamp::deserialize(deserializer).map(Time::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stands_for_its_timestamp_and_serializes_as_one() {
        assert_eq!(std::mem::size_of::<Time>(), 12);
        for text in ["2026-11-21T10:00:00Z", "1969-12-31T23:59:59.5Z", "2026-11-21T10:00:00.000000001Z"] {
            let time: Timestamp = text.parse().expect("timestamp");
            assert_eq!(Time::from(time).get(), time);
            let packed = postcard::to_stdvec(&Time::from(time)).expect("encode");
            assert_eq!(packed, postcard::to_stdvec(&time).expect("encode"));
            assert_eq!(postcard::from_bytes::<Time>(&packed).expect("decode").get(), time);
        }
        assert_eq!(Timestamp::MIN, Time::from(Timestamp::MIN).get());
        assert_eq!(Timestamp::MAX, Time::from(Timestamp::MAX).get());
    }
}
