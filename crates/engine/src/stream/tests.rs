use super::*;
use clearhouse_domain::Schedule;

/// One hour of grace; history kept for the refund period plus a day.
const HORIZONS: Horizons =
    Horizons { grace: SignedDuration::from_hours(1), history_margin: SignedDuration::from_hours(24) };

/// Hourly windows (UTC), one hour of grace.
fn partition(state: PartitionState) -> Partition {
    let schedule = Schedule::from_config(None, Some(3600)).expect("schedule");
    let calendar = Calendar::new("UTC", schedule, 1, []).expect("calendar");
    Partition::new(Arc::new(calendar), Arc::new(Policy::default()), HORIZONS, state)
}

fn capture(id: &str, time: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"capture","merchant_id":"M1","amount":"10.00","currency":"EUR","event_time":"{time}"}}"#
    )
    .into_bytes()
}

/// A message keyed by its merchant (M1), without a record timestamp.
fn msg(offset: u64, payload: &[u8]) -> Message<'_> {
    Message { offset, key: Some(b"M1"), timestamp: None, payload }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn window(s: &str) -> WindowId {
    s.parse().expect("window id")
}

#[test]
fn seals_when_event_time_passes_end_plus_grace_and_places_late_data_in_the_earliest_open_window() {
    let mut p = partition(PartitionState::default());
    assert_eq!(p.apply(msg(0, &capture("a", "2026-11-21T10:10:00Z"))), Some(Outcome::Accepted { late: false }));
    // 11:59 is not yet 11:00 + 1 h of grace: the 10:00 window stays open.
    assert_eq!(p.apply(msg(1, &capture("b", "2026-11-21T11:59:00Z"))), Some(Outcome::Accepted { late: false }));
    assert!(!p.has_sealed());
    assert_eq!(p.apply(msg(2, &capture("c", "2026-11-21T10:30:00Z"))), Some(Outcome::Accepted { late: false }));
    assert_eq!(p.apply(msg(3, &capture("d", "2026-11-21T12:00:00Z"))), Some(Outcome::Accepted { late: false }));
    let sealed = p.take_sealed();
    assert_eq!(sealed.len(), 1);
    assert_eq!((sealed[0].window, sealed[0].fence), (window("20261121T1100Z"), 4));
    assert_eq!(sealed[0].batches[0].details.len(), 2, "a and c");
    // A 10:45 instruction now is late: netted into the 11:00-12:00 window, flagged.
    assert_eq!(p.apply(msg(4, &capture("e", "2026-11-21T10:45:00Z"))), Some(Outcome::Accepted { late: true }));
    assert_eq!(p.seals().last(), Some(&Seal { closed_before: ts("2026-11-21T11:00:00Z"), fence: 4 }));
    p.idle(ts("2026-11-21T13:00:00Z"));
    let sealed = p.take_sealed();
    assert_eq!(sealed[0].window, window("20261121T1200Z"));
    let batch = &sealed[0].batches[0];
    assert_eq!((batch.counts.captures, batch.counts.late), (2, 1), "b and the late e");
    assert_eq!(batch.details.to_vec()[1].late_from, Some(window("20261121T1100Z")));
    assert_eq!(p.stats().accepted, 5);
}

#[test]
fn offsets_already_applied_are_ignored_and_duplicates_counted() {
    let mut p = partition(PartitionState::default());
    assert!(p.apply(msg(5, &capture("a", "2026-11-21T10:10:00Z"))).is_some());
    assert_eq!(p.apply(msg(5, &capture("a", "2026-11-21T10:10:00Z"))), None, "re-delivered offset");
    assert_eq!(p.apply(msg(3, &capture("z", "2026-11-21T10:10:00Z"))), None, "older offset");
    let dup = p.apply(msg(9, &capture("a", "2026-11-21T10:10:00Z")));
    assert!(matches!(dup, Some(Outcome::Duplicate(DuplicateRecord { first_position: 5, .. }))));
    let bad = p.apply(msg(10, b"{not json"));
    assert!(matches!(bad, Some(Outcome::Rejected(_))));
    let stats = p.stats();
    assert_eq!((stats.input, stats.accepted, stats.duplicates, stats.rejected_total()), (3, 1, 1, 1));
    assert_eq!(p.next_offset(), 11);
}

#[test]
fn a_restored_checkpoint_continues_exactly_like_an_uninterrupted_partition() {
    let messages: Vec<Vec<u8>> = (0..40)
        .map(|i| capture(&format!("m{i}"), &format!("2026-11-21T{:02}:{:02}:00Z", 8 + i / 6, (i * 7) % 60)))
        .collect();
    let run = |cut: usize| {
        let mut p = partition(PartitionState::default());
        let mut parts = Vec::new();
        for (offset, m) in messages.iter().enumerate().take(cut) {
            p.apply(msg(offset as u64, m));
            parts.extend(p.take_sealed());
        }
        let bytes = postcard::to_stdvec(&p.checkpoint()).expect("serialize");
        let state: PartitionState = postcard::from_bytes(&bytes).expect("deserialize");
        let mut p = partition(state);
        // Re-delivery from an older committed offset is harmless.
        for (offset, m) in messages.iter().enumerate().skip(cut.saturating_sub(3)) {
            p.apply(msg(offset as u64, m));
            parts.extend(p.take_sealed());
        }
        p.idle(ts("2026-11-22T00:00:00Z"));
        parts.extend(p.take_sealed());
        (parts, p.stats().clone())
    };
    let whole = run(0);
    assert!(whole.0.len() >= 5, "several windows sealed");
    for cut in [1, 7, 20, 39] {
        assert_eq!(run(cut), whole, "restored at {cut}");
    }
}

/// The issue-10 reproduction: one instruction stamped years ahead of its message used to move
/// the watermark there, so every later instruction was netted "late" into a window that never
/// closed. It is rejected instead; a mis-keyed message never reaches the netting state.
#[test]
fn a_future_dated_or_mis_keyed_instruction_is_rejected_and_holds_nothing_open() {
    let mut p = partition(PartitionState::default());
    fn at<'a>(offset: u64, payload: &'a [u8], key: &'a [u8]) -> Message<'a> {
        Message { offset, key: Some(key), timestamp: Some(ts("2026-11-21T10:00:00Z")), payload }
    }
    let future = capture("f", "2031-01-01T00:00:00Z");
    let Some(Outcome::Rejected(r)) = p.apply(at(0, &future, b"M1")) else { panic!("accepted a future instruction") };
    assert_eq!(r.reject.reason, RejectReason::EventTimeInFuture);
    let other_key = capture("k", "2026-11-21T10:05:00Z");
    let Some(Outcome::Rejected(r)) = p.apply(at(1, &other_key, b"M2")) else { panic!("accepted under another key") };
    assert_eq!(r.reject.reason, RejectReason::PartitionKeyMismatch);
    assert_eq!(p.open_instructions(), 0, "neither reached the netting state");
    let in_skew = capture("a", "2026-11-21T10:59:00Z");
    assert_eq!(p.apply(at(2, &in_skew, b"M1")), Some(Outcome::Accepted { late: false }));
    assert_eq!(p.apply(at(3, &capture("b", "2026-11-21T10:01:00Z"), b"M1")), Some(Outcome::Accepted { late: false }));
    let horizon = p.seals().last().map(|s| s.closed_before);
    assert_eq!(horizon, Some(ts("2026-11-21T09:00:00Z")), "sealed by the accepted 10:59, not by 2031");
}

/// A partition whose refund period is two days, so the history horizon (plus the one-day
/// margin of `HORIZONS`) is three days behind its latest event time.
fn short_memory() -> Partition {
    let schedule = Schedule::from_config(None, Some(3600)).expect("schedule");
    let calendar = Calendar::new("UTC", schedule, 1, []).expect("calendar");
    let policy = Policy { refund_period: SignedDuration::from_hours(48), ..Policy::default() };
    Partition::new(Arc::new(calendar), Arc::new(policy), HORIZONS, PartitionState::default())
}

fn reason_of(outcome: Option<Outcome>) -> RejectReason {
    match outcome {
        Some(Outcome::Rejected(record)) => record.reject.reason,
        other => panic!("not rejected: {other:?}"),
    }
}

#[test]
fn history_older_than_the_horizon_is_forgotten_and_instructions_that_old_are_refused() {
    let mut p = short_memory();
    let (c1, c2) = (capture("c1", "2026-11-01T00:00:00Z"), capture("c2", "2026-11-02T00:00:00Z"));
    assert_eq!(p.apply(msg(0, &c1)), Some(Outcome::Accepted { late: false }));
    assert_eq!(p.apply(msg(1, &c2)), Some(Outcome::Accepted { late: false }));
    assert_eq!(p.history_len(), 4, "two ids, two captures");
    assert_eq!(p.apply(msg(2, &capture("c3", "2026-11-05T00:00:00Z"))), Some(Outcome::Accepted { late: false }));
    assert_eq!(p.history_horizon(), Some(ts("2026-11-02T00:00:00Z")));
    assert_eq!(p.history_len(), 4, "c1 forgotten; c2 (at the horizon) and c3 kept");
    // c1 again would be new to the index now: it is refused for its age, never netted twice.
    assert_eq!(reason_of(p.apply(msg(3, &c1))), RejectReason::HistoryExpired);
    assert!(matches!(p.apply(msg(4, &c2)), Some(Outcome::Duplicate(_))), "c2 is still remembered");
    let stats = p.stats();
    assert_eq!((stats.input, stats.accepted, stats.duplicates, stats.rejected_total()), (5, 3, 1, 1));
}

#[test]
fn a_partition_that_runs_for_months_remembers_a_bounded_history() {
    let mut p = short_memory();
    let start = ts("2026-01-01T00:00:00Z");
    let mut most = 0;
    for i in 0..24 * 90 {
        let time = start + SignedDuration::from_hours(i);
        assert_eq!(
            p.apply(msg(i as u64, &capture(&format!("c{i}"), &time.to_string()))),
            Some(Outcome::Accepted { late: false })
        );
        p.take_sealed();
        most = most.max(p.history_len());
    }
    // Three days of horizon plus at most one day between forgets, one capture an hour, each
    // remembered twice (id and capture): at most 2 × 24 × 4 entries, against 4,320 without it.
    assert!(most <= 2 * 24 * 4 + 2, "{most} entries remembered");
}

#[test]
fn a_refund_outlives_its_forgotten_original_and_can_still_be_reversed() {
    let mut p = short_memory();
    let refund = br#"{"id":"r1","type":"refund","merchant_id":"M1","amount":"5.00","currency":"EUR","event_time":"2026-11-03T00:00:00Z","original_transaction_id":"t1","original_amount":"10.00","original_time":"2026-11-01T00:00:00Z","payee":{"name":"N","account":"1234","bank":"BANKCODE"}}"#;
    assert_eq!(p.apply(msg(0, refund)), Some(Outcome::Accepted { late: false }));
    // The horizon passes the original (11-01) but not the refund (11-03).
    assert_eq!(p.apply(msg(1, &capture("c1", "2026-11-05T00:00:00Z"))), Some(Outcome::Accepted { late: false }));
    assert_eq!(p.history_horizon(), Some(ts("2026-11-02T00:00:00Z")));
    let reversal = br#"{"id":"v1","type":"refund_reversal","merchant_id":"M1","amount":"5.00","currency":"EUR","event_time":"2026-11-05T00:00:00Z","reverses":"r1"}"#;
    assert_eq!(p.apply(msg(2, reversal)), Some(Outcome::Accepted { late: false }), "a recovery in a later window");
}
