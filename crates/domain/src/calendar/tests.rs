use super::*;
use jiff::SignedDuration;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn date(s: &str) -> Date {
    s.parse().expect("date")
}

fn shanghai_2300(holidays: Vec<Date>) -> Calendar {
    let schedule = Schedule::from_config(Some(&["23:00".to_owned()]), None).expect("schedule");
    Calendar::new("Asia/Shanghai", schedule, 1, holidays).expect("calendar")
}

#[test]
fn spec_example_window_id() {
    let cal = shanghai_2300(vec![]);
    let w = cal.window_of(ts("2026-11-21T10:00:00+08:00"));
    assert_eq!(w.id.to_string(), "20261121T1500Z");
    assert_eq!(cal.local_rfc3339(w.start), "2026-11-20T23:00:00+08:00");
    assert_eq!(cal.local_rfc3339(w.end), "2026-11-21T23:00:00+08:00");
    assert_eq!(cal.settlement_date(&w), date("2026-11-23"), "Saturday window end settles Monday");
}

#[test]
fn boundaries_are_half_open() {
    let cal = shanghai_2300(vec![]);
    assert_eq!(cal.window_of(ts("2026-11-21T14:59:59.999Z")).id.to_string(), "20261121T1500Z");
    assert_eq!(cal.window_of(ts("2026-11-21T15:00:00Z")).id.to_string(), "20261122T1500Z");
}

#[test]
fn friday_window_settles_monday_and_skips_holidays() {
    let cal = shanghai_2300(vec![date("2026-11-23")]);
    // Window ending Friday 2026-11-20 23:00 local.
    let w = cal.window_of(ts("2026-11-20T12:00:00+08:00"));
    assert_eq!(w.id.to_string(), "20261120T1500Z");
    assert_eq!(cal.settlement_date(&w), date("2026-11-24"), "Monday is a holiday");
}

#[test]
fn several_cutoffs_and_lag_zero() {
    let schedule = Schedule::from_config(Some(&["18:00".into(), "06:00".into()]), None).expect("schedule");
    let cal = Calendar::new("Europe/Berlin", schedule, 0, []).expect("calendar");
    let w = cal.window_of(ts("2026-11-21T07:00:00+01:00"));
    assert_eq!(w.id.to_string(), "20261121T1700Z");
    assert_eq!(cal.local_rfc3339(w.start), "2026-11-21T06:00:00+01:00");
    assert_eq!(cal.settlement_date(&w), date("2026-11-23"), "Saturday rolls to Monday with lag 0");
    let night = cal.window_of(ts("2026-11-21T20:00:00+01:00"));
    assert_eq!(night.id.to_string(), "20261122T0500Z");
}

#[test]
fn cutoffs_across_dst_change() {
    // Berlin leaves DST on 2026-10-25: the window that day is 25 hours long.
    let schedule = Schedule::from_config(Some(&["00:00".into()]), None).expect("schedule");
    let cal = Calendar::new("Europe/Berlin", schedule, 1, []).expect("calendar");
    let w = cal.window_of(ts("2026-10-25T12:00:00Z"));
    assert_eq!(w.end.as_second() - w.start.as_second(), 25 * 3600);
}

#[test]
fn interval_windows_align_to_epoch() {
    let schedule = Schedule::from_config(None, Some(900)).expect("schedule");
    let cal = Calendar::new("UTC", schedule, 1, []).expect("calendar");
    let w = cal.window_of(ts("2026-11-21T10:07:30Z"));
    assert_eq!(w.id.to_string(), "20261121T1015Z");
    assert_eq!(w.start, ts("2026-11-21T10:00:00Z"));
    assert_eq!(cal.window(w.id), w);
}

#[test]
fn window_ids_round_trip() {
    let id: WindowId = "20261121T1500Z".parse().expect("id");
    assert_eq!(id.to_string(), "20261121T1500Z");
    assert!("20261121T1500".parse::<WindowId>().is_err());
    assert!("2026112XT1500Z".parse::<WindowId>().is_err());
}

#[test]
fn bad_configuration_is_refused() {
    assert_eq!(Schedule::from_config(None, None), Err(CalendarError::Schedule));
    assert_eq!(Schedule::from_config(Some(&[]), None), Err(CalendarError::Schedule));
    assert_eq!(Schedule::from_config(None, Some(90)), Err(CalendarError::BadInterval(90)));
    assert_eq!(Schedule::from_config(Some(&["25:00".into()]), None), Err(CalendarError::BadCutoff("25:00".into())));
    assert!(matches!(
        Calendar::new("Mars/Olympus", Schedule::IntervalSecs(60), 1, []),
        Err(CalendarError::UnknownTimezone(_))
    ));
}

/// Samoa skipped 2011-12-30 (UTC-10 to UTC+14): the window around it runs from the 29th's
/// cutoff to the 31st's, one 23:00 cutoff apart, and every instant there has exactly one window.
#[test]
fn a_skipped_local_day_gives_one_long_window() {
    let schedule = Schedule::from_config(Some(&["23:00".to_owned()]), None).expect("schedule");
    let cal = Calendar::new("Pacific/Apia", schedule, 1, vec![]).expect("calendar");
    let w = cal.window_of(ts("2011-12-31T05:00:00+14:00"));
    assert_eq!(cal.local_rfc3339(w.start), "2011-12-29T23:00:00-10:00");
    assert_eq!(cal.local_rfc3339(w.end), "2011-12-31T23:00:00+14:00");
    let mut t = ts("2011-12-28T00:00:00Z");
    while t < ts("2012-01-03T00:00:00Z") {
        let w = cal.window_of(t);
        assert!(w.contains(t) && cal.window(w.id) == w, "{t}");
        t = t.checked_add(SignedDuration::from_mins(20)).expect("in range");
    }
}

proptest::proptest! {
    /// The field-by-field id is the strftime one, across the whole range of years 0-9999
    /// (and beyond it the strftime one is used).
    #[test]
    fn window_id_text_is_the_strftime_text(secs in -377_705_116_800i64..253_402_300_799i64) {
        let id = WindowId(secs);
        proptest::prop_assert_eq!(id.to_string(), id.end().strftime("%Y%m%dT%H%MZ").to_string());
    }
}
