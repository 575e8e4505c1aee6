//! Logging through `tracing`: human-readable by default, JSON lines with
//! `--log-format json`. Spans carry request ids and opaque subject ids only;
//! never an email, a token or a key.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (tests): later
/// calls are ignored.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_env("CUSTODIAN_LOG")
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
}
