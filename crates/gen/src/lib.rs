//! A seeded workload generator. The same options always give the same bytes (ChaCha8 stream,
//! no clock, no hash-map iteration), so a benchmark or a failing test can be reproduced from
//! its seed alone.
//!
//! The stream looks like an acquirer's: captures, then partial and full refunds of them (or of
//! older transactions captured elsewhere), the occasional reversal, a skew towards a few hot
//! merchants, a sprinkle of bad input and network re-deliveries of earlier lines.

mod merchant;

use std::io::{self, Write};

use clearhouse_domain::Currency;
use jiff::{SignedDuration, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use merchant::MerchantState;

/// Workload shape. Ratios are per mille of emitted lines.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// RNG seed.
    pub seed: u64,
    /// Lines to emit.
    pub count: u64,
    /// Number of merchants.
    pub merchants: u32,
    /// Percent of traffic going to the hottest tenth of merchants.
    pub hot_percent: u32,
    /// First event time.
    pub start: Timestamp,
    /// Event times spread evenly over this many days.
    pub days: u32,
    /// Captures per mille.
    pub capture_permille: u32,
    /// Reversals per mille (when the merchant has a refund to reverse).
    pub reversal_permille: u32,
    /// Bad lines per mille (malformed, bad scale, unknown currency, missing field).
    pub bad_permille: u32,
    /// Re-deliveries of an earlier line per mille.
    pub duplicate_permille: u32,
    /// Out of order: each line's event time is moved back by a random 0 to this many seconds,
    /// so times no longer increase with the line (0: they do).
    pub disorder_secs: u32,
    /// Late lines per mille: their event time is moved back by a further `late_secs`, typically
    /// into a window already sealed.
    pub late_permille: u32,
    /// How far back a late line's event time goes, in seconds.
    pub late_secs: u32,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            seed: 1,
            count: 10_000,
            merchants: 1_000,
            hot_percent: 50,
            start: "2026-11-20T00:00:00+08:00".parse().expect("constant"),
            days: 3,
            capture_permille: 300,
            reversal_permille: 20,
            bad_permille: 5,
            duplicate_permille: 10,
            disorder_secs: 0,
            late_permille: 0,
            late_secs: 7_200,
        }
    }
}

/// What was emitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Lines written.
    pub lines: u64,
    /// Captures.
    pub captures: u64,
    /// Refunds.
    pub refunds: u64,
    /// Reversals.
    pub reversals: u64,
    /// Bad lines.
    pub bad: u64,
    /// Re-delivered lines.
    pub duplicates: u64,
}

/// Currencies merchants settle in, with weights out of 100.
const CURRENCIES: [(&str, u32); 4] = [("CNY", 80), ("JPY", 10), ("USD", 8), ("KWD", 2)];

/// Writes `options.count` JSONL lines to `out`.
pub fn generate<W: Write>(options: &GenOptions, out: W) -> io::Result<GenStats> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let stats = generate_each(options, |_, line| {
        out.write_all(line)?;
        out.write_all(b"\n")
    })?;
    out.flush()?;
    Ok(stats)
}

/// Hands each of the `options.count` messages (without a newline) to `sink` with its merchant id,
/// the Kafka key, in order.
pub fn generate_each<F>(options: &GenOptions, mut sink: F) -> io::Result<GenStats>
where
    F: FnMut(&str, &[u8]) -> io::Result<()>,
{
    assert!(options.merchants > 0 && options.days > 0, "need merchants and days");
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    // A stream of its own, so disorder and lateness change the times and nothing else.
    let mut time_rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x7173_0d15_07de_7000);
    let mut merchants: Vec<MerchantState> =
        (0..options.merchants).map(|m| MerchantState::new(m, pick_currency(m))).collect();
    let span_ms = i64::from(options.days) * 86_400_000;
    let step_ms = (span_ms / options.count.max(1) as i64).max(1);
    let hot = (options.merchants / 10).max(1);
    let mut recent: Vec<(u32, Vec<u8>)> = Vec::with_capacity(64);
    let mut stats = GenStats::default();
    let mut line = Vec::with_capacity(512);
    for i in 0..options.count {
        line.clear();
        let time = displaced(options, options.start + SignedDuration::from_millis(i as i64 * step_ms), &mut time_rng);
        let m = if rng.random_range(0..100) < options.hot_percent {
            rng.random_range(0..hot)
        } else {
            rng.random_range(0..options.merchants)
        };
        let roll = rng.random_range(0..1000);
        let mut key = m;
        if roll < options.bad_permille {
            merchants[m as usize].write_bad(&mut line, i, time, &mut rng)?;
            stats.bad += 1;
        } else if roll < options.bad_permille + options.duplicate_permille && !recent.is_empty() {
            let (merchant, earlier) = &recent[rng.random_range(0..recent.len())];
            line.extend_from_slice(earlier);
            key = *merchant;
            stats.duplicates += 1;
        } else {
            let merchant = &mut merchants[m as usize];
            let kind = rng.random_range(0..1000);
            if kind < options.capture_permille {
                merchant.write_capture(&mut line, i, time, &mut rng)?;
                stats.captures += 1;
            } else if kind < options.capture_permille + options.reversal_permille && merchant.has_refund() {
                merchant.write_reversal(&mut line, i, time)?;
                stats.reversals += 1;
            } else {
                let original = merchant.take_original(i, time, &mut rng);
                merchant.write_refund(&mut line, i, time, original, &mut rng)?;
                stats.refunds += 1;
            }
            if recent.len() < 64 {
                recent.push((m, line.clone()));
            } else {
                let slot = rng.random_range(0..64);
                recent[slot] = (m, line.clone());
            }
        }
        sink(merchants[key as usize].id(), &line)?;
        stats.lines += 1;
    }
    Ok(stats)
}

/// `time` moved back by the options' disorder and lateness (nothing when both are off).
fn displaced<R: Rng>(options: &GenOptions, time: Timestamp, rng: &mut R) -> Timestamp {
    let mut back = 0;
    if options.disorder_secs > 0 {
        back += i64::from(rng.random_range(0..=options.disorder_secs));
    }
    if options.late_permille > 0 && rng.random_range(0..1000) < options.late_permille {
        back += i64::from(options.late_secs);
    }
    time - SignedDuration::from_secs(back)
}

fn pick_currency(merchant: u32) -> Currency {
    let mut slot = merchant.wrapping_mul(2_654_435_761) % 100;
    for (code, weight) in CURRENCIES {
        if slot < weight {
            return Currency::from_code(code).expect("table currency");
        }
        slot -= weight;
    }
    Currency::from_code("CNY").expect("CNY")
}

/// `t` as RFC 3339 in UTC+08:00 (the acquirer's local time in the sample workload).
fn local_time(t: Timestamp) -> String {
    let shifted = t + SignedDuration::from_hours(8);
    format!("{}+08:00", shifted.strftime("%Y-%m-%dT%H:%M:%S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(options: &GenOptions) -> (Vec<u8>, GenStats) {
        let mut out = Vec::new();
        let stats = generate(options, &mut out).expect("generate");
        (out, stats)
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let options = GenOptions { count: 2_000, ..GenOptions::default() };
        let (a, stats) = run(&options);
        assert_eq!(a, run(&options).0);
        assert_ne!(a, run(&GenOptions { seed: 2, ..options.clone() }).0);
        assert_eq!(stats.lines, 2_000);
        assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 2_000);
        assert_eq!(stats.captures + stats.refunds + stats.reversals + stats.bad + stats.duplicates, 2_000);
        assert!(
            stats.refunds > 0 && stats.captures > 0 && stats.reversals > 0 && stats.bad > 0 && stats.duplicates > 0,
            "{stats:?}"
        );
    }

    /// The event times of `out`, in line order (lines without one skipped).
    fn times(out: &[u8]) -> Vec<Timestamp> {
        let text = std::str::from_utf8(out).expect("utf-8");
        let field = r#""event_time":""#;
        text.lines()
            .filter_map(|l| l.find(field).map(|at| &l[at + field.len()..]))
            .filter_map(|rest| rest.split('"').next()?.parse().ok())
            .collect()
    }

    #[test]
    fn disorder_and_lateness_move_event_times_back_within_their_bounds() {
        let plain = GenOptions { count: 5_000, duplicate_permille: 0, ..GenOptions::default() };
        let ordered = times(&run(&plain).0);
        assert!(ordered.windows(2).all(|p| p[0] <= p[1]), "the default workload is in time order");
        let options = GenOptions { disorder_secs: 600, late_permille: 50, late_secs: 7_200, ..plain.clone() };
        let (out, stats) = run(&options);
        assert_eq!(stats, run(&plain).1, "only times change: same mix, same ids");
        let moved = times(&out);
        assert_eq!(moved.len(), ordered.len());
        let backs: Vec<i64> = ordered.iter().zip(&moved).map(|(a, b)| a.duration_since(*b).as_secs()).collect();
        assert!(backs.iter().all(|&s| (0..=7_800).contains(&s)), "moved back, never forward or further");
        let late = backs.iter().filter(|&&s| s >= 7_200).count();
        assert!((150..=350).contains(&late), "about 5% late: {late}");
        assert!(moved.windows(2).filter(|p| p[0] > p[1]).count() > 1_000, "out of order");
    }
}
