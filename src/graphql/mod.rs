//! The GraphQL engine. A facade schema is read from SDL (`sdl.rs`) into a checked model
//! (`model.rs`); `engine.rs` binds it to its backends and owns the one `run`; an operation is
//! prepared once (`operation.rs`: parse, bound, pick, validate, compile) into a plan
//! (`plan.rs`) that the executor (`exec.rs`, with `fetch.rs` for backend calls) runs and the
//! projection (`project.rs`) writes as the response. async-graphql's dynamic schema only
//! validates and answers introspection (`validate.rs`); it resolves nothing. Callers hand in
//! text and JSON and get bytes back; no async-graphql type crosses this module's edge except
//! the parsed document inside [`Prepared`].

pub mod answer;
pub mod compose;
pub mod diff;
pub mod document;
mod engine;
pub mod exec;
mod fetch;
pub mod input;
pub mod js;
pub mod limits;
pub mod model;
pub mod operation;
pub mod plan;
pub mod project;
pub mod route;
pub mod sdl;
pub mod typescript;
pub mod usage;
pub mod validate;

pub use answer::Answer;
pub use engine::{Engine, EngineError, EngineOptions, check_dir, check_js_functions, schema_hash};
pub use input::VarKind;
pub use operation::{GraphqlRequest, OperationKind, Parsed, Prepared};
pub use sdl::LoadError;
