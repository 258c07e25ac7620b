//! The allowed range of every numeric configuration value, checked when the file is loaded, so a
//! value that would overflow calendar arithmetic, size a queue to the machine's memory or truncate
//! an offset is a clear error naming the key and its range, never a panic or a silent loss later.

use std::ops::RangeInclusive;

use crate::{Config, ConfigError};

/// Longest window (`[calendar] interval_secs`): a leap year.
pub const MAX_INTERVAL_SECS: i64 = 366 * 86_400;
/// Most threads of one kind (shards, parse threads).
pub const MAX_THREADS: usize = 256;

fn check<T: PartialOrd + std::fmt::Display>(key: &str, value: T, range: RangeInclusive<T>) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{key} = {value} is out of range: allowed {}..={}",
            range.start(),
            range.end()
        )))
    }
}

/// Every numeric value of `config` within its range.
pub fn check_ranges(config: &Config) -> Result<(), ConfigError> {
    let c = &config.calendar;
    if let Some(secs) = c.interval_secs {
        check("[calendar] interval_secs", secs, 60..=MAX_INTERVAL_SECS)?;
    }
    check("[calendar] settlement_lag_days", c.settlement_lag_days, 0..=60)?;
    check("[calendar] cutoffs (count)", c.cutoffs.as_ref().map_or(1, Vec::len), 1..=1440)?;
    check("[calendar] holidays (count)", c.holidays.len(), 0..=100_000)?;
    check("[calendar] max_event_time_skew_secs", c.max_event_time_skew_secs, 0..=366 * 86_400)?;
    check("[refunds] refund_period_days", config.refunds.refund_period_days, 1..=3_660)?;
    let e = &config.engine;
    check("[engine] shards", e.shards, 0..=MAX_THREADS)?;
    check("[engine] parse_threads", e.parse_threads, 0..=MAX_THREADS)?;
    check("[engine] queue_blocks", e.queue_blocks, 0..=1_024)?;
    check("[engine] block_bytes", e.block_bytes, 4_096..=clearhouse_ingest::MAX_BLOCK_BYTES)?;
    let d = &config.daemon;
    check("[daemon] grace_secs", d.grace_secs, 0..=7 * 86_400)?;
    check("[daemon] history_margin_days", d.history_margin_days, 1..=3660)?;
    check("[daemon] checkpoint_interval_ms", d.checkpoint_interval_ms, 100..=3_600_000)?;
    check("[daemon] idle_tick_ms", d.idle_tick_ms, 10..=3_600_000)?;
    check("[daemon] replication_factor", d.replication_factor, 1..=16)?;
    check("[daemon] shutdown_timeout_ms", d.shutdown_timeout_ms, 1_000..=600_000)?;
    check("[daemon] shards", d.shards, 0..=MAX_THREADS)?;
    check("[daemon] queue_batches", d.queue_batches, 1..=65_536)?;
    check("[daemon] batch_messages", d.batch_messages, 1..=1_000_000)?;
    Ok(())
}

/// A parser message without the value it quotes. serde's type errors name the value they
/// refused (`invalid type: integer `6222…`, expected a string`): in a configuration or registry
/// that value may be a password or an account number, so it is replaced by a note.
pub fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(at) = message.find(prefix) {
            let rest = &message[at + prefix.len()..];
            let kind = rest.split([' ', ',']).next().unwrap_or("");
            let tail = rest.find(", expected").map_or("", |i| &rest[i..]);
            return format!("{}{prefix}{kind} (value not shown){tail}", &message[..at]);
        }
    }
    message.to_owned()
}

/// A TOML error as `line L, column C: message`, without the source line toml quotes (it may
/// hold a secret) and without the value it refused.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().and_then(|span| text.get(..span.start)).map(|before| {
        let line = before.matches('\n').count() + 1;
        let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
        format!("line {line}, column {column}: ")
    });
    format!("{}{}", at.unwrap_or_default(), without_values(e.message().trim_end()))
}
