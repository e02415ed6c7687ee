//! HTTP only: axum routes, request limits, content negotiation and error mapping. No
//! business logic; handlers call the engine and the demo backends and shape their answers.

mod demo;
mod error;
mod graphql;
mod ops;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use crate::demo::DemoBackends;
use crate::graphql::Engine;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Present in demo mode only.
    pub demo: Option<Arc<DemoBackends>>,
}

/// All routes, with the body limit and a tracing span per request.
pub fn router(state: AppState, body_limit: usize) -> Router {
    let mut router = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/healthz", get(ops::healthz))
        .route("/schema.graphql", get(ops::schema_sdl));
    if state.demo.is_some() {
        router = router
            .route("/demo/backends", get(demo::list))
            .route("/demo/backends/{name}/faults", post(demo::set_faults));
    }
    router.layer(DefaultBodyLimit::max(body_limit)).layer(TraceLayer::new_for_http()).with_state(state)
}
