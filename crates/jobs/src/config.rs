//! `clearhouse.toml`. Every field has a default, so an empty file (or none) is the embedded
//! default configuration; unknown keys are errors, so a typo never silently falls back to a
//! default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clearhouse_domain::{Calendar, Currency, Payee, Policy, RefundLimits, Schedule};
use clearhouse_engine::EngineConfig;
use jiff::civil::Date;
use jiff::SignedDuration;
use serde::Deserialize;

use crate::registry;
use crate::ConfigError;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Settlement windows and business days.
    pub calendar: CalendarConfig,
    /// Refund rules.
    pub refunds: RefundsConfig,
    /// Optional per-merchant refund limits.
    pub limits: LimitsConfig,
    /// The acquirer's settlement account, debited by every credit transfer.
    pub debtor: DebtorConfig,
    /// Optional merchant registry (settlement accounts). Without it no payout credit is emitted.
    pub registry: Option<RegistryConfig>,
    /// Engine sizing.
    pub engine: EngineSection,
    /// Brokers and librdkafka properties (`clearhouse run`, `gen --topic`).
    pub kafka: Option<clearhouse_kafka::KafkaOptions>,
    /// The daemon (`clearhouse run`).
    pub daemon: crate::daemon::DaemonSection,
    /// Directory of the config file, for resolving relative paths (not a TOML key).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Settlement windows and business days.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {
    /// IANA timezone of cutoffs and settlement dates.
    pub timezone: String,
    /// Daily local cutoff times `HH:MM`. Mutually exclusive with `interval_secs`.
    pub cutoffs: Option<Vec<String>>,
    /// Fixed window length in seconds (multiple of 60), aligned to the Unix epoch.
    pub interval_secs: Option<i64>,
    /// Business days between the local date of a window's end and its settlement date.
    pub settlement_lag_days: u32,
    /// Non-business days besides Saturday and Sunday (`YYYY-MM-DD`).
    pub holidays: Vec<Date>,
    /// How far an instruction's event time may lead its Kafka message's timestamp (or the
    /// `--now` given to `net`) before it is rejected `event_time_in_future`.
    pub max_event_time_skew_secs: u32,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        CalendarConfig {
            timezone: "Asia/Shanghai".to_owned(),
            cutoffs: None,
            interval_secs: None,
            settlement_lag_days: 1,
            holidays: Vec::new(),
            max_event_time_skew_secs: 3600,
        }
    }
}

/// Refund rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefundsConfig {
    /// Days after the original transaction during which a refund is accepted.
    pub refund_period_days: u32,
}

impl Default for RefundsConfig {
    fn default() -> Self {
        RefundsConfig { refund_period_days: 365 }
    }
}

/// Refund limits per merchant, window and currency (a risk signal).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most refunds per merchant, window and currency (unset: unlimited).
    pub max_refund_count_per_window: Option<u32>,
    /// Largest refund total per merchant and window, by currency code (amounts as strings).
    pub max_refund_amount_per_window: BTreeMap<String, String>,
    /// Overrides for single merchants (replace the defaults above for that merchant).
    pub merchants: BTreeMap<String, MerchantLimitsConfig>,
}

/// Limits of one merchant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MerchantLimitsConfig {
    /// Most refunds per window and currency.
    pub max_refund_count_per_window: Option<u32>,
    /// Largest refund total per window, by currency code.
    pub max_refund_amount_per_window: BTreeMap<String, String>,
}

/// The acquirer's settlement account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebtorConfig {
    /// Account holder name (≤ 140 characters).
    pub name: String,
    /// IBAN or domestic account number.
    pub account: String,
    /// BIC or domestic bank code.
    pub bank: String,
}

impl Default for DebtorConfig {
    fn default() -> Self {
        DebtorConfig {
            name: "Clearhouse Sample Acquirer (configure [debtor])".to_owned(),
            account: "000000000000".to_owned(),
            bank: "CLRHCNSHXXX".to_owned(),
        }
    }
}

/// Where the merchant registry is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// CSV (`merchant_id,name,account,bank`) or JSON array file; relative to the config file.
    pub path: PathBuf,
}

/// Engine sizing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Netting shards (0: one per core).
    pub shards: usize,
    /// Parse threads (0: one per core).
    pub parse_threads: usize,
    /// Queue capacity per stage, in input blocks.
    pub queue_blocks: usize,
    /// Input block size in bytes.
    pub block_bytes: usize,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection { shards: 0, parse_threads: 0, queue_blocks: 4, block_bytes: 1 << 20 }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::from_toml(&text, path)
    }

    /// A configuration from the text of the file at `path` (named in errors; relative paths in
    /// it are taken from its directory), with every range and Kafka setting checked.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: crate::limits::toml_error(text, &e) })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let checked = crate::limits::check_ranges(&config).and_then(|()| match &config.kafka {
            Some(kafka) => kafka.check().map_err(|e| ConfigError::Invalid(e.to_string())),
            None => Ok(()),
        });
        checked.map_err(|e| match e {
            ConfigError::Invalid(message) => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })?;
        Ok(config)
    }

    /// The settlement calendar.
    pub fn calendar(&self) -> Result<Calendar, ConfigError> {
        let c = &self.calendar;
        let cutoffs = match (&c.cutoffs, c.interval_secs) {
            (None, None) => Some(vec!["23:00".to_owned()]),
            (cutoffs, _) => cutoffs.clone(),
        };
        let schedule = Schedule::from_config(cutoffs.as_deref(), c.interval_secs)
            .map_err(|e| ConfigError::Invalid(format!("[calendar] {e}")))?;
        Calendar::new(&c.timezone, schedule, c.settlement_lag_days, c.holidays.iter().copied())
            .map_err(|e| ConfigError::Invalid(format!("[calendar] {e}")))
    }

    /// The netting policy (loads the registry when configured).
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let registry = match &self.registry {
            Some(r) => Some(registry::load(&self.base_dir.join(&r.path))?),
            None => None,
        };
        let limits = |count, amounts: &BTreeMap<String, String>| -> Result<RefundLimits, ConfigError> {
            let mut max_amount = BTreeMap::new();
            for (code, text) in amounts {
                let currency = Currency::from_code(code)
                    .ok_or_else(|| ConfigError::Invalid(format!("[limits] unknown currency {code}")))?;
                let amount = clearhouse_domain::money::parse_amount(text, currency, true)
                    .map_err(|e| ConfigError::Invalid(format!("[limits] {code} amount {text:?}: {e:?}")))?;
                max_amount.insert(currency, amount);
            }
            Ok(RefundLimits { max_count: count, max_amount })
        };
        let mut merchant_limits = BTreeMap::new();
        for (merchant, l) in &self.limits.merchants {
            merchant_limits.insert(
                merchant.as_str().into(),
                limits(l.max_refund_count_per_window, &l.max_refund_amount_per_window)?,
            );
        }
        Ok(Policy {
            refund_period: SignedDuration::from_hours(i64::from(self.refunds.refund_period_days) * 24),
            max_event_time_skew: SignedDuration::from_secs(i64::from(self.calendar.max_event_time_skew_secs)),
            registry,
            default_limits: limits(self.limits.max_refund_count_per_window, &self.limits.max_refund_amount_per_window)?,
            merchant_limits,
        })
    }

    /// The debtor account, validated like a payee.
    pub fn debtor(&self) -> Result<Payee, ConfigError> {
        registry::validate_account(&self.debtor.name, &self.debtor.account, &self.debtor.bank)
            .map_err(|e| ConfigError::Invalid(format!("[debtor] {e}")))
    }

    /// True when `[debtor]` was left at its placeholder default.
    pub fn debtor_is_placeholder(&self) -> bool {
        self.debtor.account == DebtorConfig::default().account
    }

    /// Engine sizing, with `shards_override` from the command line.
    pub fn engine(&self, shards_override: Option<usize>) -> EngineConfig {
        let defaults = EngineConfig::default();
        let pick = |v: usize, d: usize| if v == 0 { d } else { v };
        EngineConfig {
            shards: shards_override.unwrap_or_else(|| pick(self.engine.shards, defaults.shards)),
            parse_threads: pick(self.engine.parse_threads, defaults.parse_threads),
            queue_batches: pick(self.engine.queue_blocks, defaults.queue_batches),
            now: None,
            input_bytes: None,
        }
    }
}
