//! Checks of a parsed instruction against what its transport says about it: the message's own
//! timestamp (or the run's stated `now`) and, in Kafka, its key. They turn a valid parse into a
//! reject that still claims the id, exactly like a field error, so an identical re-delivery of
//! such a message is a duplicate and a corrected one a conflict.

use jiff::{SignedDuration, Timestamp};

use super::{Identity, Parsed};
use crate::reject::{Reject, RejectReason};

fn refuse(parsed: Parsed, reject: Reject) -> Parsed {
    match parsed {
        Parsed::Valid { instruction, fingerprint } => {
            Parsed::Invalid { identity: Some(Identity { id: instruction.id, fingerprint }), reject }
        }
        invalid => invalid,
    }
}

/// `event_time_in_future` when the instruction's event time is more than `skew` after
/// `reference` (named `what` in the message): the Kafka record's timestamp (so a replay decides the same), or in file mode the
/// `now` the run was given. One far-future instruction would otherwise move its partition's
/// event time there and hold every later window open.
pub fn guard_event_time(parsed: Parsed, reference: Timestamp, skew: SignedDuration, what: &str) -> Parsed {
    let Parsed::Valid { instruction, .. } = &parsed else { return parsed };
    let Some(limit) = reference.checked_add(skew).ok() else { return parsed };
    if instruction.event_time <= limit {
        return parsed;
    }
    let message =
        format!("event_time {} is more than {} s after {what} {reference}", instruction.event_time, skew.as_secs());
    let reject = Reject::field(RejectReason::EventTimeInFuture, "event_time", message);
    refuse(parsed, reject)
}

/// `partition_key_mismatch` when the Kafka message key is not the instruction's `merchant_id`:
/// the merchant's refund state and carried debt live on the partition its key chooses, so an
/// instruction under another key would be netted against the wrong state.
pub fn guard_key(parsed: Parsed, key: Option<&[u8]>) -> Parsed {
    let Parsed::Valid { instruction, .. } = &parsed else { return parsed };
    if key == Some(instruction.merchant_id.as_bytes()) {
        return parsed;
    }
    let shown = match key {
        None => "no key".to_owned(),
        Some(key) => {
            let text = String::from_utf8_lossy(&key[..key.len().min(64)]).into_owned();
            format!("key {text:?}")
        }
    };
    let message = format!("message has {shown}, not its merchant_id {}", instruction.merchant_id);
    refuse(parsed, Reject::field(RejectReason::PartitionKeyMismatch, "merchant_id", message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    const CAPTURE: &[u8] = br#"{"id":"C1","type":"capture","merchant_id":"M1","amount":"1.00","currency":"CNY","event_time":"2026-11-21T10:00:00Z"}"#;

    fn reason(parsed: &Parsed) -> Option<RejectReason> {
        match parsed {
            Parsed::Invalid { identity: Some(identity), reject } if identity.id == "C1" => Some(reject.reason),
            Parsed::Invalid { reject, .. } => panic!("lost the identity: {reject:?}"),
            Parsed::Valid { .. } => None,
        }
    }

    #[test]
    fn event_time_may_lead_the_reference_by_the_skew_and_no_more() {
        let skew = SignedDuration::from_secs(3600);
        let at = |t: &str| t.parse::<Timestamp>().expect("time");
        assert_eq!(
            reason(&guard_event_time(parse(CAPTURE), at("2026-11-21T09:00:00Z"), skew, "the message\'s timestamp")),
            None
        );
        let early = guard_event_time(parse(CAPTURE), at("2026-11-21T08:59:59Z"), skew, "the message\'s timestamp");
        assert_eq!(reason(&early), Some(RejectReason::EventTimeInFuture));
        let Parsed::Invalid { reject, .. } = early else { unreachable!("rejected above") };
        assert_eq!(
            reject.message,
            "event_time 2026-11-21T10:00:00Z is more than 3600 s after the message's timestamp 2026-11-21T08:59:59Z"
        );
    }

    #[test]
    fn the_key_must_be_the_merchant_id() {
        assert_eq!(reason(&guard_key(parse(CAPTURE), Some(b"M1"))), None);
        assert_eq!(reason(&guard_key(parse(CAPTURE), Some(b"M2"))), Some(RejectReason::PartitionKeyMismatch));
        assert_eq!(reason(&guard_key(parse(CAPTURE), None)), Some(RejectReason::PartitionKeyMismatch));
    }
}
