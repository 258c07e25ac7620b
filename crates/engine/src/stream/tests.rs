use super::*;
use clearhouse_domain::Schedule;

/// Hourly windows (UTC), one hour of grace.
fn partition(state: PartitionState) -> Partition {
    let schedule = Schedule::from_config(None, Some(3600)).expect("schedule");
    let calendar = Calendar::new("UTC", schedule, 1, []).expect("calendar");
    Partition::new(Arc::new(calendar), Arc::new(Policy::default()), SignedDuration::from_hours(1), state)
}

fn capture(id: &str, time: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"capture","merchant_id":"M1","amount":"10.00","currency":"EUR","event_time":"{time}"}}"#
    )
    .into_bytes()
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
    assert_eq!(p.apply(0, &capture("a", "2026-11-21T10:10:00Z")), Some(Outcome::Accepted { late: false }));
    // 11:59 is not yet 11:00 + 1 h of grace: the 10:00 window stays open.
    assert_eq!(p.apply(1, &capture("b", "2026-11-21T11:59:00Z")), Some(Outcome::Accepted { late: false }));
    assert!(!p.has_sealed());
    assert_eq!(p.apply(2, &capture("c", "2026-11-21T10:30:00Z")), Some(Outcome::Accepted { late: false }));
    assert_eq!(p.apply(3, &capture("d", "2026-11-21T12:00:00Z")), Some(Outcome::Accepted { late: false }));
    let sealed = p.take_sealed();
    assert_eq!(sealed.len(), 1);
    assert_eq!((sealed[0].window, sealed[0].fence), (window("20261121T1100Z"), 4));
    assert_eq!(sealed[0].batches[0].details.len(), 2, "a and c");
    // A 10:45 instruction now is late: netted into the 11:00-12:00 window, flagged.
    assert_eq!(p.apply(4, &capture("e", "2026-11-21T10:45:00Z")), Some(Outcome::Accepted { late: true }));
    assert_eq!(p.seals().last(), Some(&Seal { closed_before: ts("2026-11-21T11:00:00Z"), fence: 4 }));
    p.idle(ts("2026-11-21T13:00:00Z"));
    let sealed = p.take_sealed();
    assert_eq!(sealed[0].window, window("20261121T1200Z"));
    let batch = &sealed[0].batches[0];
    assert_eq!((batch.counts.captures, batch.counts.late), (2, 1), "b and the late e");
    assert_eq!(batch.details[1].late_from, Some(window("20261121T1100Z")));
    assert_eq!(p.stats().accepted, 5);
}

#[test]
fn offsets_already_applied_are_ignored_and_duplicates_counted() {
    let mut p = partition(PartitionState::default());
    assert!(p.apply(5, &capture("a", "2026-11-21T10:10:00Z")).is_some());
    assert_eq!(p.apply(5, &capture("a", "2026-11-21T10:10:00Z")), None, "re-delivered offset");
    assert_eq!(p.apply(3, &capture("z", "2026-11-21T10:10:00Z")), None, "older offset");
    let dup = p.apply(9, &capture("a", "2026-11-21T10:10:00Z"));
    assert!(matches!(dup, Some(Outcome::Duplicate(DuplicateRecord { first_position: 5, .. }))));
    let bad = p.apply(10, b"{not json");
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
            p.apply(offset as u64, m);
            parts.extend(p.take_sealed());
        }
        let bytes = postcard::to_stdvec(&p.checkpoint()).expect("serialize");
        let state: PartitionState = postcard::from_bytes(&bytes).expect("deserialize");
        let mut p = partition(state);
        // Re-delivery from an older committed offset is harmless.
        for (offset, m) in messages.iter().enumerate().skip(cut.saturating_sub(3)) {
            p.apply(offset as u64, m);
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
