//! Logging through `tracing`: human-readable by default, JSON lines with
//! `--log-format json`. Spans carry request ids and opaque subject ids only;
//! never an email, a token or a key.

use crate::config::{log_filter, ConfigError, LogConfig, LogFormat};
use std::io::IsTerminal;

/// Installs the global subscriber. Safe to call more than once (tests): later
/// calls are ignored. A bad `CUSTODIAN_LOG` is refused, not ignored.
pub fn init(config: &LogConfig) -> Result<(), ConfigError> {
    let filter = log_filter(config)?;
    // Colour codes only for a terminal: a log file or journald gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
    Ok(())
}
