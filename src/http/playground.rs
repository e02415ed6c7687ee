//! `/playground`: the browser playground (sources in `playground/`, built with npm into
//! `playground/dist`, which is committed and embedded at build time by memory-serve). Static
//! files only: the page talks to this server's `/graphql` and `/admin/v1` with the token the
//! user signs in with, kept in the tab's session storage.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;

/// Nothing but this origin: scripts, styles, fetches; CodeMirror injects its styles, hence
/// `'unsafe-inline'` for styles only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The assets' router, made once per process (memory-serve leaks what it decompresses).
fn assets() -> Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER
        .get_or_init(|| {
            memory_serve::load!()
                .index_file(Some("/index.html"))
                .html_cache_control(memory_serve::CacheControl::NoCache)
                // Vite names every asset by its content hash.
                .cache_control(memory_serve::CacheControl::Long)
                .into_router()
        })
        .clone()
}

async fn headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    response
}

/// The playground under `/playground` (and `/playground/`).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().nest_service("/playground", assets().layer(axum::middleware::map_response(headers)))
}
