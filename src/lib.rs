//! Facade: a GraphQL composition server for device APIs.
//!
//! Read the modules in this order:
//! - [`config`]: the typed configuration tree (`facade.toml`, `FACADE_*`).
//! - [`app`]: wires everything together; `App::build` then `run_until(shutdown)`.
//! - [`http`]: axum routes; `/graphql` per GraphQL over HTTP.
//! - [`graphql`]: the engine — facade SDL with `@backend`/`@http` → checked model →
//!   `async_graphql::dynamic::Schema`.
//! - [`backends`]: the only outbound code: HTTP clients and per-request batching.
//! - [`registry`]: endpoints, versions, rollouts and the schema's evolution, in SQL.
//! - [`scripts`]: transforms and `@js` functions in worker processes a watchdog can stop.
//! - [`demo`]: Netflix-like demo backends with fault knobs.
//! - [`telemetry`]: tracing setup.

pub mod alloc;
pub mod app;
pub mod backends;
pub mod cli;
pub mod config;
pub mod demo;
pub mod errors;
pub mod graphql;
pub mod http;
pub mod registry;
pub mod scripts;
pub mod telemetry;
