//! HTTP only: axum routes, request limits, content negotiation and error mapping. Handlers
//! map HTTP to the domain (`registry::call` for a device call, the engine for `/graphql`, the
//! registry for the admin API) and its answers back to HTTP.

pub mod apq;
pub mod auth;
pub mod backends_admin;
mod debug;
mod demo;
mod device;
pub mod door;
mod error;
pub mod graphql;
mod ops;
pub mod ops_stream;
mod playground;
mod registry_admin;
mod schema_admin;
pub mod serve;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use crate::demo::DemoBackends;
use crate::registry::Registry;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub admin_tokens: auth::AdminTokens,
    /// Token answers from the store, kept briefly.
    pub tokens: Arc<auth::TokenCache>,
    /// Automatic persisted queries registered by clients (bounded).
    pub apq: Arc<apq::ApqCache>,
    /// Devices without a token may run only published documents.
    pub safelist: bool,
    /// Devices without a token may use introspection.
    pub introspection: bool,
    pub scripts: crate::scripts::ScriptPool,
    /// Request headers transforms may see.
    pub device_headers: Arc<Vec<String>>,
    /// Present in demo mode only.
    pub demo: Option<Arc<DemoBackends>>,
    /// Open `/ops/stream` connections, bounded.
    pub ops_streams: Arc<ops_stream::StreamSlots>,
    /// Identical queries in flight, run once (`[graphql] share_identical_requests`; `None`: off).
    pub shared_requests: Option<Arc<graphql::SharedRequests>>,
}

/// All routes, with the body limit, the request and body timeouts (408) and a tracing span
/// per request; device-facing routes pass the door's rate limits first.
pub fn router(
    state: AppState,
    body_limit: usize,
    door: Arc<door::Door>,
    timeouts: serve::Timeouts,
) -> Router {
    let devices = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/v1/{client}/{endpoint}", get(device::call).post(device::call))
        .layer(axum::middleware::from_fn_with_state(door, door::guard));
    let mut router = Router::new()
        .merge(devices)
        .merge(
            backends_admin::routes()
                .merge(registry_admin::routes())
                .merge(schema_admin::routes())
                .route("/ops/stream", get(ops_stream::stream))
                .route("/admin/v1/me", get(auth::me))
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate)),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/admin/v1/openapi.json", get(ops::openapi))
        .route("/schema.graphql", get(ops::schema_sdl))
        .merge(playground::routes());
    if state.demo.is_some() {
        router = router
            .route("/demo/backends", get(demo::list))
            .route("/demo/backends/{name}/faults", post(demo::set_faults));
    }
    let trace = TraceLayer::new_for_http().make_span_with(request_span).on_response(
        |response: &axum::http::Response<_>, _latency: std::time::Duration, span: &tracing::Span| {
            span.record("http.response.status_code", i64::from(response.status().as_u16()));
        },
    );
    // Around the whole router, once: `Router::layer` wraps every route in a boxed service of
    // its own, and each request cloned and boxed every one of them (32 allocations of a home
    // query's 491, docs/benchmarks-history.md §22). Outermost first.
    let layers = tower::ServiceBuilder::new()
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeouts.request,
        ))
        .layer(axum::middleware::from_fn(sampling))
        .layer(trace)
        .layer(DefaultBodyLimit::max(body_limit))
        // Innermost: it changes the body's type, which `from_fn` does not take.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(timeouts.body));
    Router::new().fallback_service(layers.service(router.with_state(state)))
}

/// Whether this request is traced: decided once, before its span is made, and kept for
/// everything that runs on its behalf.
#[derive(Clone, Copy)]
struct Traced(bool);

async fn sampling(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let traced = crate::telemetry::otel::decide(request.headers());
    request.extensions_mut().insert(Traced(traced));
    crate::telemetry::otel::scope(traced, next.run(request)).await
}

/// The span of one request: with traces on, an OpenTelemetry server span that continues the
/// caller's `traceparent`; otherwise tower-http's debug-level span for the logs.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    use tower_http::trace::MakeSpan;
    if !request.extensions().get::<Traced>().is_some_and(|t| t.0) {
        return tower_http::trace::DefaultMakeSpan::new().make_span(request);
    }
    let span = tracing::info_span!(
        "HTTP request",
        otel.kind = "server",
        otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::otel::adopt(&span, request.headers());
    span
}
