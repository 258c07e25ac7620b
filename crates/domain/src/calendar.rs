//! Settlement windows and settlement dates.
//!
//! A window is identified by its end instant in UTC, so ids sort chronologically and are the
//! same whatever timezone the reader is in. Cutoffs are local wall-clock times (DST gaps resolve
//! to the later instant); intervals are aligned to the Unix epoch. The timezone database is
//! compiled in (jiff `tzdb-bundle-always`), so two machines with different system tzdata still
//! produce the same windows.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Errors in calendar configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    /// The IANA name is not in the bundled database.
    #[error("unknown timezone {0:?}")]
    UnknownTimezone(String),
    /// A cutoff is not `HH:MM`.
    #[error("cutoff {0:?} is not a HH:MM time")]
    BadCutoff(String),
    /// Neither or both of cutoffs and interval were given, or the list is empty.
    #[error("configure either daily cutoffs or a fixed interval, not both or neither")]
    Schedule,
    /// Interval must be a positive whole number of minutes.
    #[error("interval of {0} seconds is not a positive multiple of 60")]
    BadInterval(i64),
}

/// How the day is cut into windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Daily local cutoff times, sorted and de-duplicated.
    Cutoffs(Vec<Time>),
    /// Fixed-length windows aligned to the Unix epoch.
    IntervalSecs(i64),
}

impl Schedule {
    /// Builds a schedule from config values (exactly one of the two must be set).
    pub fn from_config(cutoffs: Option<&[String]>, interval_secs: Option<i64>) -> Result<Schedule, CalendarError> {
        match (cutoffs, interval_secs) {
            (Some(list), None) if !list.is_empty() => {
                let mut times = list.iter().map(|c| parse_cutoff(c)).collect::<Result<Vec<_>, _>>()?;
                times.sort();
                times.dedup();
                Ok(Schedule::Cutoffs(times))
            }
            (None, Some(secs)) if secs > 0 && secs % 60 == 0 => Ok(Schedule::IntervalSecs(secs)),
            (None, Some(secs)) => Err(CalendarError::BadInterval(secs)),
            _ => Err(CalendarError::Schedule),
        }
    }
}

fn parse_cutoff(text: &str) -> Result<Time, CalendarError> {
    let bad = || CalendarError::BadCutoff(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let hour: i8 = h.parse().map_err(|_| bad())?;
    let minute: i8 = m.parse().map_err(|_| bad())?;
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

/// A window id: the window's end instant (UTC), shown as `YYYYMMDDTHHMMZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct WindowId(i64);

impl WindowId {
    /// The end instant.
    pub fn end(self) -> Timestamp {
        Timestamp::from_second(self.0).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Seconds since the epoch of the end instant.
    pub fn as_second(self) -> i64 {
        self.0
    }

    /// The id whose [`WindowId::as_second`] is `second` (stored ids read back).
    pub(crate) fn from_second(second: i64) -> WindowId {
        WindowId(second)
    }
}

impl fmt::Display for WindowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written field by field: ids are formatted for every credit and file name, and the
        // general strftime costs more than the rest of an EndToEndId.
        let t = jiff::tz::Offset::UTC.to_datetime(self.end());
        if (0..=9999).contains(&t.year()) {
            let (y, mo, d, h, mi) = (t.year(), t.month(), t.day(), t.hour(), t.minute());
            return write!(f, "{y:04}{mo:02}{d:02}T{h:02}{mi:02}Z");
        }
        write!(f, "{}", self.end().strftime("%Y%m%dT%H%MZ"))
    }
}

impl FromStr for WindowId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok =
            b.len() == 14 && b[8] == b'T' && b[13] == b'Z' && b[..8].iter().chain(&b[9..13]).all(u8::is_ascii_digit);
        if !ok {
            return Err(format!("{s:?} is not a window id (YYYYMMDDTHHMMZ)"));
        }
        let iso = format!("{}-{}-{}T{}:{}:00Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13]);
        iso.parse::<Timestamp>().map(|t| WindowId(t.as_second())).map_err(|e| format!("{s:?}: {e}"))
    }
}

/// A half-open window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Id (derived from `end`).
    pub id: WindowId,
    /// First instant included.
    pub start: Timestamp,
    /// First instant not included.
    pub end: Timestamp,
}

impl Window {
    /// True when `t` falls inside the window.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

/// Timezone, window schedule and business-day rules.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: TimeZone,
    tz_name: String,
    schedule: Schedule,
    lag_days: u32,
    holidays: BTreeSet<Date>,
}

impl Calendar {
    /// Builds a calendar; `tz_name` is an IANA name such as `Asia/Shanghai`.
    pub fn new(
        tz_name: &str,
        schedule: Schedule,
        lag_days: u32,
        holidays: impl IntoIterator<Item = Date>,
    ) -> Result<Calendar, CalendarError> {
        let tz = TimeZone::get(tz_name).map_err(|_| CalendarError::UnknownTimezone(tz_name.to_owned()))?;
        Ok(Calendar { tz, tz_name: tz_name.to_owned(), schedule, lag_days, holidays: holidays.into_iter().collect() })
    }

    /// The IANA timezone name.
    pub fn timezone_name(&self) -> &str {
        &self.tz_name
    }

    /// The window containing instant `t`.
    pub fn window_of(&self, t: Timestamp) -> Window {
        match &self.schedule {
            Schedule::IntervalSecs(len) => {
                let start = t.as_second().div_euclid(*len) * len;
                self.make(start, start + len)
            }
            Schedule::Cutoffs(times) => {
                let day = t.to_zoned(self.tz.clone()).date();
                let mut start = i64::MIN;
                let mut end = i64::MAX;
                // Two days back: a zone may skip a whole local day (Pacific/Apia skipped
                // 2011-12-30), and the cutoff before `t` is then two local dates earlier.
                for offset in -2..=1_i64 {
                    let Ok(d) = day.checked_add(offset.days()) else {
                        continue;
                    };
                    for time in times {
                        let Ok(instant) = d.to_datetime(*time).to_zoned(self.tz.clone()) else {
                            continue;
                        };
                        let secs = instant.timestamp().as_second();
                        if instant.timestamp() <= t {
                            start = start.max(secs);
                        } else {
                            end = end.min(secs);
                        }
                    }
                }
                assert!(start < end && start != i64::MIN && end != i64::MAX, "no cutoff around {t}");
                self.make(start, end)
            }
        }
    }

    /// The window with id `id`.
    pub fn window(&self, id: WindowId) -> Window {
        let last_instant = id.end() - 1.nanosecond();
        let window = self.window_of(last_instant);
        assert_eq!(window.id, id, "{id} is not a window end on this calendar");
        window
    }

    fn make(&self, start: i64, end: i64) -> Window {
        let ts = |s| Timestamp::from_second(s).expect("window bound in range");
        Window { id: WindowId(end), start: ts(start), end: ts(end) }
    }

    /// The settlement (value) date of a window: the lag-th business day after the local date of
    /// its end (lag 0: that date itself, or the next business day).
    pub fn settlement_date(&self, window: &Window) -> Date {
        let mut date = window.end.to_zoned(self.tz.clone()).date();
        if self.lag_days == 0 {
            while !self.is_business_day(date) {
                date = date.tomorrow().expect("date in range");
            }
            return date;
        }
        let mut remaining = self.lag_days;
        while remaining > 0 {
            date = date.tomorrow().expect("date in range");
            if self.is_business_day(date) {
                remaining -= 1;
            }
        }
        date
    }

    /// Monday to Friday, minus configured holidays.
    pub fn is_business_day(&self, date: Date) -> bool {
        !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) && !self.holidays.contains(&date)
    }

    /// `t` in this calendar's timezone as RFC 3339 with its UTC offset.
    pub fn local_rfc3339(&self, t: Timestamp) -> String {
        t.to_zoned(self.tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

#[cfg(test)]
mod tests;
