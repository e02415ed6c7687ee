//! One integration-test binary: each module starts real Facade servers on 127.0.0.1:0 with
//! the demo backends over real HTTP.

mod admin;
mod attack;
mod bench_smoke;
mod canary;
mod cli;
mod connections;
mod demo;
mod endpoints;
mod engine;
mod evolution;
mod federation;
mod generated;
mod graphql_http;
mod helpers;
mod ops;
mod outage;
mod persisted;
mod playground;
mod resilience;
mod schema_check;
mod scripts;
mod sharing;
mod tidy;
mod traces;
mod typescript;
mod workers;
