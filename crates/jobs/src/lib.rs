//! Glue: configuration, the merchant registry, and the jobs that connect a source, the engine
//! and the outputs. The libraries underneath do the work; this crate decides what runs where.

pub mod config;
pub mod daemon;
pub mod limits;
mod memory;
pub mod net;
pub mod registry;
pub mod topics;

use std::path::PathBuf;

pub use config::Config;
pub use net::{net_reader, run_net, NetError, NetOptions, NetReport};

/// A configuration problem. Messages name the file (and line when known).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is invalid (the message carries line and column).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// A registry row is wrong.
    #[error("invalid merchant registry {path} line {line}: {problem}")]
    Registry {
        /// The registry file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        problem: String,
    },
}
