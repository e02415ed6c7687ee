//! OpenTelemetry traces over OTLP/HTTP: the `tracing` spans of the `facade` crate become
//! OpenTelemetry spans (tracing-opentelemetry), batched by the SDK on its own thread and sent
//! with a blocking client there, so a slow or dead collector never holds a request (the batch
//! queue is bounded; spans beyond it are dropped). W3C `traceparent` is read from devices
//! (`http/`) and sent to backends (`backends/`). Off unless an endpoint is configured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::config::OtlpConfig;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The sampling ratio's bits (an `f64`).
static RATIO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// `[telemetry.otlp] trust_caller_sampling`.
static TRUST_CALLER: AtomicBool = AtomicBool::new(false);
/// `[telemetry.otlp] forward_tracestate`.
static FORWARD_TRACESTATE: AtomicBool = AtomicBool::new(false);

tokio::task_local! {
    /// Whether the request this task serves is traced (decided once, at its start).
    static TRACED: bool;
}

/// Whether traces are exported at all.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the current request is traced: its spans are made only then, so a request left
/// out by sampling costs what it costs with traces off.
pub fn traced() -> bool {
    enabled() && TRACED.try_with(|t| *t).unwrap_or(false)
}

/// The sampling decision for a request: the configured ratio; a caller's `traceparent`
/// decides by its sampled flag only with `trust_caller_sampling` (otherwise any device could
/// force every one of its requests to be traced, probe 2 L6).
pub fn decide(headers: &axum::http::HeaderMap) -> bool {
    if !enabled() {
        return false;
    }
    let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
    decide_with(headers, ratio, TRUST_CALLER.load(Ordering::Relaxed), fastrand::f64())
}

/// [`decide`] with its inputs given (`draw` in 0..1).
fn decide_with(headers: &axum::http::HeaderMap, ratio: f64, trust_caller: bool, draw: f64) -> bool {
    if trust_caller
        && let Some(flags) = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('-').next())
            .and_then(|f| u8::from_str_radix(f, 16).ok())
    {
        return flags & 1 == 1;
    }
    ratio >= 1.0 || draw < ratio
}

/// Runs `f` with the request's sampling decision.
pub async fn scope<F: std::future::Future>(traced: bool, f: F) -> F::Output {
    TRACED.scope(traced, f).await
}

/// `f` with the current task's sampling decision, for a task spawned on its behalf.
pub fn carry<F: std::future::Future>(f: F) -> impl std::future::Future<Output = F::Output> {
    TRACED.scope(TRACED.try_with(|t| *t).unwrap_or(false), f)
}

/// Flushes and stops the exporter when dropped (at shutdown).
pub struct TraceExport {
    provider: SdkTracerProvider,
    pub endpoint: String,
    pub ratio: f64,
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// The OTel layer and its guard, if traces are configured; `Err` names the bad setting.
#[allow(clippy::type_complexity)]
pub fn pipeline<S>(
    config: &OtlpConfig,
) -> Result<Option<(Box<dyn Layer<S> + Send + Sync>, TraceExport)>, String>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let from_env = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
    let endpoint = match (config.endpoint.trim(), from_env) {
        ("", None) => return Ok(None),
        ("", Some(env)) => env,
        (url, _) => {
            let url = url.trim_end_matches('/');
            if url.ends_with("/v1/traces") { url.to_owned() } else { format!("{url}/v1/traces") }
        }
    };
    if !(0.0..=1.0).contains(&config.sampling_ratio) {
        return Err(format!(
            "[telemetry.otlp] sampling_ratio must be 0.0 to 1.0, got {}",
            config.sampling_ratio
        ));
    }
    let mut exporter =
        opentelemetry_otlp::SpanExporter::builder().with_http().with_timeout(Duration::from_secs(5));
    let env_protocol = ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]
        .iter()
        .any(|k| std::env::var_os(k).is_some());
    match config.protocol.as_deref() {
        // Protobuf unless the environment says otherwise (with both encodings built in, the
        // library's own default would be JSON, several times dearer to encode).
        None if env_protocol => {}
        None => exporter = exporter.with_protocol(Protocol::HttpBinary),
        Some("http/protobuf") => exporter = exporter.with_protocol(Protocol::HttpBinary),
        Some("http/json") => exporter = exporter.with_protocol(Protocol::HttpJson),
        Some(other) => {
            return Err(format!(
                "[telemetry.otlp] protocol must be http/protobuf or http/json, got {other:?}"
            ));
        }
    }
    if !config.endpoint.trim().is_empty() {
        exporter = exporter.with_endpoint(endpoint.clone());
    }
    let exporter = exporter.build().map_err(|e| format!("the OTLP exporter: {e}"))?;
    // OTEL_SERVICE_NAME (read by the default resource) wins over the config's name.
    let resource = if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        opentelemetry_sdk::Resource::builder().build()
    } else {
        opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build()
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // Sampling is decided per request before any span is made (`decide`): a span that
        // exists is one to export.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let tracer = provider.tracer("facade");
    // Facade's own spans only (not every dependency's), whatever the log level.
    // Only the attributes we name: no source location, thread or target per span, and no
    // busy/idle timing (a clock read at every poll of every span).
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        // Contexts are read from the tracing span (`OpenTelemetrySpanExt`), not the active one.
        .with_context_activation(false)
        .with_filter(Targets::new().with_target("facade", tracing::Level::INFO))
        .boxed();
    RATIO.store(config.sampling_ratio.to_bits(), Ordering::Relaxed);
    TRUST_CALLER.store(config.trust_caller_sampling, Ordering::Relaxed);
    FORWARD_TRACESTATE.store(config.forward_tracestate, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((layer, TraceExport { provider, endpoint, ratio: config.sampling_ratio })))
}

/// Puts the current span's context in outgoing headers (`traceparent`), when traces are on.
pub fn inject(headers: &mut reqwest::header::HeaderMap) {
    if !traced() {
        return;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Injector<'a>(&'a mut reqwest::header::HeaderMap);
    impl opentelemetry::propagation::Injector for Injector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(k), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(key.as_bytes()),
                reqwest::header::HeaderValue::from_str(&value),
            ) {
                self.0.insert(k, v);
            }
        }
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut Injector(headers)));
}

/// Makes `span` a child of the caller's `traceparent`, when traces are on and it sent one.
pub fn adopt(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !enabled() || !headers.contains_key("traceparent") {
        return;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let extractor = Extractor { headers, tracestate: FORWARD_TRACESTATE.load(Ordering::Relaxed) };
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&extractor));
    let _ = span.set_parent(cx);
}

/// A caller's trace headers as the propagator reads them: its `tracestate` (vendor data the
/// caller chose, which would otherwise go to every backend) only with `forward_tracestate`.
struct Extractor<'a> {
    headers: &'a axum::http::HeaderMap,
    tracestate: bool,
}

impl opentelemetry::propagation::Extractor for Extractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case("tracestate") && !self.tracestate {
            return None;
        }
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.headers.keys().map(|k| k.as_str()).filter(|k| self.tracestate || *k != "tracestate").collect()
    }
}

/// The trace ID of the current span, when traces are on and it is sampled.
pub fn current_trace_id() -> Option<String> {
    if !traced() {
        return None;
    }
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let id = cx.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::Extractor as _;

    use super::*;

    fn with_parent(flags: &str) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        let parent = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
        h.insert("traceparent", parent.parse().unwrap());
        h.insert("tracestate", "vendor=secret".parse().unwrap());
        h
    }

    #[test]
    fn a_callers_sampled_flag_decides_only_where_trusted() {
        let sampled = with_parent("01");
        assert!(!decide_with(&sampled, 0.0, false, 0.5), "ratio 0: not traced, whatever the caller says");
        assert!(decide_with(&sampled, 0.0, true, 0.5), "trusted: the caller's flag");
        assert!(!decide_with(&with_parent("00"), 1.0, true, 0.5), "trusted: not sampled");
        assert!(decide_with(&with_parent("00"), 1.0, false, 0.5), "the ratio");
        assert!(decide_with(&axum::http::HeaderMap::new(), 0.3, false, 0.2));
        assert!(!decide_with(&axum::http::HeaderMap::new(), 0.3, false, 0.4));
    }

    #[test]
    fn a_callers_tracestate_is_read_only_where_configured() {
        let headers = with_parent("01");
        let kept = Extractor { headers: &headers, tracestate: false };
        assert_eq!(kept.get("tracestate"), None);
        assert!(!kept.keys().contains(&"tracestate"));
        assert!(kept.get("traceparent").is_some());
        let forwarded = Extractor { headers: &headers, tracestate: true };
        assert_eq!(forwarded.get("tracestate"), Some("vendor=secret"));
    }
}
