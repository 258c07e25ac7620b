//! The configuration loader on any text: a configuration or an error, never a panic, and then
//! every part the jobs build from it (calendar, policy, debtor, engine and daemon settings)
//! either builds or errors.
#![no_main]

use std::path::Path;

use clearhouse_jobs::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(config) = Config::from_toml(text, Path::new("fuzz/clearhouse.toml")) else { return };
    let _ = config.calendar();
    let _ = config.policy();
    let _ = config.debtor();
    let _ = config.engine(None);
    let _ = config.daemon_settings();
});
