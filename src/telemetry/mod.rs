//! Tracing setup: an env filter (`RUST_LOG` wins over the configured filter) and text or
//! JSON lines on stderr. Spans are opened per HTTP request (in `http/`), per GraphQL
//! execution (in the engine) and per backend fetch (in `backends/`).

pub mod metrics;
pub mod window;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; a second call (as in tests) keeps the first.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
