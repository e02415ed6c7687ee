//! The only outbound code. Rooms: `transport` (how a call reaches a backend: per-thread hyper
//! pools, reqwest for HTTPS and proxies, capped bodies), `backend` (one backend's policy stack
//! and live windows; every declared backend), `error` ([`FetchError`]), `batch` (the
//! per-request [`Batcher`] that coalesces keys and identical fetches), `share` (identical reads
//! in flight across requests made once), `json` (a body read
//! into a [`json::Tape`] keeping only the fields a request reads), `policy` and `breaker`.
//! Knows nothing of GraphQL types: it takes routes and keys and hands back tapes or a
//! [`FetchError`].

mod backend;
mod batch;
pub mod breaker;
mod error;
pub mod json;
pub mod policy;
mod share;
mod transport;

pub use backend::{Backend, BackendSettings, Backends, ClientError, Live};
pub use batch::{
    BatchOutcome, BatchRoute, Batcher, FetchLog, FetchRecord, Key, KeyText, Loaded, SingleRequest, Slot,
};
pub use error::FetchError;
pub use transport::{Method, use_lane};
