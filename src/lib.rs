//! Facade: a GraphQL composition server for device APIs.
//!
//! Read the modules in this order:
//! - [`config`]: the typed configuration tree (`facade.toml`, `FACADE_*`), each default once,
//!   one start-up check; a leaf.
//! - [`errors`]: the catalogue of every `extensions.code` and the one GraphQL error body.
//! - [`app`]: wires everything together; `App::build` then `run_until(shutdown)`.
//! - [`http`]: axum routes; `/graphql` per GraphQL over HTTP, device calls by ID, admin API.
//! - [`registry`]: endpoints, versions, rollouts, the endpoint call (`registry::call`) and
//!   the schema's evolution, over SQLite or PostgreSQL.
//! - [`graphql`]: the engine — facade SDL with `@backend`/`@http` → checked model → an
//!   operation compiled once into a plan → steps run against the backends → response bytes.
//! - [`backends`]: the only outbound code: transports, the policy stack per backend,
//!   per-request batching, backend bodies read into tapes (`backends::json`).
//! - [`scripts`]: transforms and `@js` functions in worker processes a watchdog can stop.
//! - [`telemetry`]: logs, OpenTelemetry traces, Prometheus metrics, sliding windows.
//! - [`demo`]: Netflix-like demo backends with fault knobs.
//! - [`cli`]: the tool commands (migrate, tokens, schema check and diff, admin-API client).
//! - [`flight`]: identical work in flight done once (backend reads, opt-in identical requests).
//! - [`alloc`]: the binaries' global allocator (mimalloc).

pub mod alloc;
pub mod app;
pub mod backends;
pub mod cli;
pub mod config;
pub mod demo;
pub mod errors;
pub mod flight;
pub mod graphql;
pub mod http;
pub mod registry;
pub mod scripts;
pub mod telemetry;
