//! Tracing setup: an env filter (`RUST_LOG` wins over the configured filter) and text or
//! JSON lines on stderr, and, when an OTLP endpoint is configured, the same spans exported as
//! OpenTelemetry traces (`otel.rs`). Spans: one per HTTP request (in `http/`), per GraphQL
//! execution and per fetch step (in the engine), per backend call (in `backends/`) and per
//! script call (in `scripts/`).

pub mod metrics;
pub mod otel;
pub mod window;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// Installs the global subscriber; a second call (as in tests) keeps the first. With traces
/// on, the returned guard flushes them when dropped.
pub fn init(config: &LogConfig, telemetry: &TelemetryConfig) -> Option<otel::TraceExport> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match config.format {
        // Colour codes only on a terminal: a log file or a collector gets plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
        }
    };
    // Each layer has its own filter: the log level never hides spans from the traces.
    let (otel_layer, guard) = match otel::pipeline(&telemetry.otlp) {
        Ok(Some((layer, guard))) => (Some(layer), Some(guard)),
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("traces are off: {e}");
            (None, None)
        }
    };
    let installed = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel_layer).try_init();
    if installed.is_err() {
        return None;
    }
    if let Some(g) = &guard {
        tracing::info!(endpoint = %g.endpoint, sampling = g.ratio, "exporting traces over OTLP");
    }
    guard
}
