//! How a call reaches a backend: plain HTTP through hyper with one connection pool per serving
//! thread ([`Lanes`], [`use_lane`]), HTTPS and proxied backends through reqwest (no redirect
//! followed), and a body read up to its cap.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The HTTP method of a backend call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// How a backend is called.
pub(super) enum Transport {
    /// A plain-HTTP backend: hyper's pooled client, a request built straight from the path.
    /// reqwest's request building and URL parsing cost about 100,000 instructions per call
    /// (a long batch query string is percent-checked character by character), 11 % of a home
    /// query (docs/benchmarks-history.md §15).
    /// One pool per serving thread ([`Lanes`]).
    Plain(Box<Lanes>),
    /// HTTPS (TLS and its roots as reqwest sets them up), or any backend when a proxy is set in
    /// the environment (`HTTP_PROXY`, `ALL_PROXY`, which reqwest follows).
    Reqwest(reqwest::Client),
}

impl Transport {
    pub(super) fn for_url(url: &str) -> Result<Self, String> {
        let proxied = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|p| !p.is_empty()));
        if url.starts_with("http://") && !proxied {
            return Ok(Transport::Plain(Box::default()));
        }
        reqwest_client().map(Transport::Reqwest).map_err(|e| e.to_string())
    }
}

/// The client of HTTPS and proxied backends. It follows no redirect, as the plain transport
/// does not: a backend's 3xx is its answer (an error of that call), never a fetch of a URL
/// the backend chose (second security probe, M3).
pub(super) fn reqwest_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Why a backend's body was not read whole.
pub(super) enum ReadError {
    TooLarge,
    Failed(String),
}

/// Reads a body of at most `max` bytes: a larger declared length is refused before reading,
/// and a body that grows past it is dropped as soon as it does (nothing more is read or kept).
pub(super) async fn read_capped<B>(body: B, max: u64) -> Result<Bytes, ReadError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if body.size_hint().lower() > max {
        return Err(ReadError::TooLarge);
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Failed(chain(e.as_ref()))),
    }
}

/// How many connection pools a plain-HTTP backend keeps at most: one per serving thread, the
/// threads past this many sharing them in turn.
pub(super) const LANES: usize = 16;

thread_local! {
    /// The pool this thread's backend calls use (see [`Lanes`]).
    static LANE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes this thread's backend calls use pool `n` of each backend: each thread that serves
/// connections (`http::serve`) takes its own.
pub fn use_lane(n: usize) {
    LANE.with(|l| l.set(n % LANES));
}

/// A plain-HTTP backend's connection pools, one per serving thread, each made at its first
/// call. hyper runs a pooled connection in a task of the runtime that opened it; a shared pool
/// would hand a request on one serving thread a connection driven by another, and each call
/// would then wake that thread twice (request out, answer back).
#[derive(Default)]
pub(super) struct Lanes(pub(super) [std::sync::OnceLock<HyperClient<HttpConnector, Full<Bytes>>>; LANES]);

impl Lanes {
    /// This thread's pool.
    pub(super) fn client(&self) -> &HyperClient<HttpConnector, Full<Bytes>> {
        self.0[LANE.with(std::cell::Cell::get)].get_or_init(|| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            HyperClient::builder(TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .pool_timer(TokioTimer::new())
                .build(connector)
        })
    }
}

/// An error and its causes, as one line (hyper's top-level message alone says little).
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut at = e.source();
    while let Some(cause) = at {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        at = cause.source();
    }
    out
}

/// A backend's answer, whichever transport brought it.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Option<Bytes>,
}

/// Longest path shown in an error message or span; batch URLs can be long.
pub(super) const SHOWN_PATH: usize = 120;

pub(super) fn shown(path: &str) -> String {
    if path.len() <= SHOWN_PATH {
        return path.to_owned();
    }
    let mut end = SHOWN_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// A backend's `Retry-After` in seconds (the HTTP-date form is not honoured).
pub(super) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}
