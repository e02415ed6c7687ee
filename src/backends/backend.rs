//! One backend and its policy stack (rate limit, bulkhead, breaker, timeout, retries within a
//! budget: the order is `Backend::call`'s comment), its live windows for the ops views, and
//! [`Backends`], every declared backend by index.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use super::breaker::{self, Breaker, Outcome, TokioClock};
use super::error::FetchError;
use super::json::{self, Tape};
use super::policy::{self, Limiter, Resilience, RetryBudget};
use super::share::{Call, CallKey, InFlight, MAX_IN_FLIGHT};
use super::transport::{Method, ReadError, Reply, Transport, chain, read_capped, retry_after, shown};
use crate::flight::Ticket;
use crate::telemetry::metrics as m;

/// Settings of one backend client.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSettings {
    pub name: String,
    pub url: String,
    pub resilience: Resilience,
}

pub struct Backend {
    name: Arc<str>,
    base: String,
    transport: Transport,
    breaker: Breaker,
    /// Swapped whole when an operator changes the numbers; each call works on one snapshot.
    policy: ArcSwap<Policy>,
    /// What the schema and config declared; a schema reload that declares the same keeps
    /// this backend (its breaker, its numbers changed at runtime) instead of making a new one.
    declared: BackendSettings,
    /// The last minute, live (the ops stream): attempts that reached the backend, and calls
    /// refused before it by reason.
    live: Live,
    /// How much of its answers' bodies their tapes keep (their next tapes are reserved by it).
    tape_share: json::TapeShare,
    /// Its per-call metrics, registered once.
    metered: Metered,
    /// Its reads in flight that an identical read may join (`share.rs`).
    in_flight: Arc<InFlight>,
}

/// A backend's metric handles for what every call records, registered when the backend is
/// made: the `counter!` and `histogram!` macros look the labelled series up in the recorder
/// each time (the name copied into a key, its labels hashed, a lock taken: 12 allocations for
/// a call's two series). Rarer series (errors, retries, refusals) still go through the macros.
/// Made before the recorder is installed, the handles record nothing: the server installs it
/// first (`App::build`).
struct Metered {
    ok: metrics::Counter,
    latency: metrics::Histogram,
    shared: metrics::Counter,
}

impl Metered {
    fn new(backend: &str) -> Self {
        Self {
            ok: metrics::counter!(m::BACKEND_CALLS, "backend" => backend.to_owned(), "outcome" => "ok"),
            latency: metrics::histogram!(m::BACKEND_LATENCY, "backend" => backend.to_owned()),
            shared: metrics::counter!(m::SHARED_CALLS, "backend" => backend.to_owned()),
        }
    }
}

/// A backend's last minute.
#[derive(Default)]
pub struct Live {
    pub calls: crate::telemetry::window::Window,
    pub circuit_open: crate::telemetry::window::Window,
    pub rate_limited: crate::telemetry::window::Window,
    pub bulkhead_full: crate::telemetry::window::Window,
    /// Reads answered by an identical read another request had in flight (no call made).
    pub shared: crate::telemetry::window::Window,
}

/// The policy numbers of a backend and the state that depends on them. A change builds a new
/// one: the rate limiter and retry budget start afresh, calls in flight finish on the old
/// bulkhead (so the new limit can be briefly exceeded during the switch).
struct Policy {
    resilience: Resilience,
    limiter: Limiter,
    bulkhead: Arc<Semaphore>,
    budget: RetryBudget,
}

impl Policy {
    fn new(r: Resilience) -> Self {
        Self {
            limiter: Limiter::new(r.rate_per_sec, r.burst),
            bulkhead: Arc::new(Semaphore::new(r.max_concurrent.max(1))),
            budget: RetryBudget::new(r.retry_ratio, r.retry_floor_per_sec),
            resilience: r,
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("name", &self.name).field("base", &self.base).finish_non_exhaustive()
    }
}

impl Backend {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn max_batch_size(&self) -> usize {
        self.policy.load().resilience.max_batch_size.max(1)
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The numbers in force.
    pub fn resilience(&self) -> Resilience {
        let mut r = self.policy.load().resilience.clone();
        r.breaker = self.breaker.settings();
        r
    }

    /// Changes the numbers at runtime (admin API).
    pub fn set_resilience(&self, r: Resilience) {
        self.breaker.set_settings(r.breaker);
        self.policy.store(Arc::new(Policy::new(r)));
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One fetch through the whole policy stack. Outer to inner:
    /// fallback (per field, in the engine) → retry (reads only, within the retry budget, never
    /// while the breaker is open) → circuit breaker → rate limit → bulkhead → per-attempt
    /// timeout (capped by what is left of the request's deadline) → HTTP.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
        deadline: Instant,
        read: bool,
        keep: Option<&json::Keep>,
        keys: usize,
    ) -> Result<Tape, FetchError> {
        // Attribute names after OpenTelemetry's HTTP client conventions, `facade.*` for ours.
        macro_rules! fetch_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "backend fetch",
                    otel.kind = "client",
                    facade.backend = %self.name,
                    http.request.method = method.as_str(),
                    url.path = %shown(path),
                    server.address = %self.base,
                    facade.batch.size = keys as i64,
                    facade.breaker.state = self.breaker.state().as_str(),
                    http.response.status_code = tracing::field::Empty,
                    facade.attempts = tracing::field::Empty,
                    facade.outcome = tracing::field::Empty,
                    retries = tracing::field::Empty,
                )
            };
        }
        // With traces on, only a traced request's calls get a span (an untraced one would
        // start a trace of its own). With traces off, the span only gives log lines their
        // context, so it is made only when debug logs are on: the log layer formats every
        // field of a span when it is made (about 16,000 instructions per call).
        let span = if crate::telemetry::otel::traced() {
            fetch_span!(tracing::Level::INFO)
        } else if crate::telemetry::otel::enabled() {
            tracing::Span::none()
        } else {
            fetch_span!(tracing::Level::DEBUG)
        };
        async {
            let policy = self.policy.load_full();
            policy.budget.record_request();
            let mut attempt = 0;
            loop {
                let result = self.attempt(&policy, method, path, body, deadline, keep).await;
                let outcome = match &result {
                    Ok(_) => "ok",
                    Err(e) => e.code().as_str(),
                };
                let span = tracing::Span::current();
                span.record("facade.outcome", outcome);
                span.record("facade.attempts", i64::from(attempt) + 1);
                match &result {
                    Ok(_) => self.metered.ok.increment(1),
                    Err(_) => metrics::counter!(m::BACKEND_CALLS, "backend" => self.name.to_string(), "outcome" => outcome.to_ascii_lowercase())
                        .increment(1),
                }
                match result {
                    Err(e)
                        if read
                            && e.retryable()
                            && attempt < policy.resilience.max_retries
                            && self.breaker.state() != breaker::State::Open
                            && policy.budget.try_withdraw() =>
                    {
                        attempt += 1;
                        tracing::Span::current().record("retries", attempt);
                        metrics::counter!(m::RETRIES, "backend" => self.name.to_string()).increment(1);
                        let pause = policy::backoff(policy.resilience.backoff_base, attempt);
                        if Instant::now() + pause >= deadline {
                            return Err(e);
                        }
                        tokio::time::sleep(pause).await;
                    }
                    other => return other,
                }
            }
        }
        .instrument(span)
        .await
    }

    /// A read through the whole policy stack ([`call`](Self::call)): a GET, or a batch read,
    /// which may be retried. With `shareInFlight` on (the default), an identical read already
    /// in flight for another request is joined instead of made again (`share.rs`); a joined
    /// read still ends by this request's own deadline, and makes the call itself if the
    /// request it joined goes away first.
    pub(super) async fn read(
        &self,
        key: &CallKey,
        deadline: Instant,
        keys: usize,
    ) -> Result<Arc<Tape>, FetchError> {
        let alone = || self.read_alone(key.call(), deadline, keys);
        if !self.policy.load().resilience.share_in_flight {
            return alone().await;
        }
        match self.in_flight.join(key) {
            Ticket::Lead(lead) => {
                let answer = alone().await;
                lead.finish(answer.clone());
                answer
            }
            Ticket::Follow(slot) => {
                self.metered.shared.increment(1);
                self.live.shared.record(Duration::ZERO, false);
                match tokio::time::timeout_at(deadline, crate::flight::follow(slot)).await {
                    Ok(Some(answer)) => {
                        // The breaker counts it as the call it stands for.
                        self.breaker.observe(match &answer {
                            Ok(_) => Outcome::Success,
                            Err(e) => e.breaker_outcome(),
                        });
                        answer
                    }
                    // The request it joined went away before the answer: its own call.
                    Ok(None) => alone().await,
                    Err(_) => Err(FetchError::Deadline { backend: self.name.clone() }),
                }
            }
            // As many distinct reads in flight as the map holds: this one goes alone.
            Ticket::Alone => alone().await,
        }
    }

    /// A read made by this request itself.
    async fn read_alone(&self, call: &Call, deadline: Instant, keys: usize) -> Result<Arc<Tape>, FetchError> {
        let keep = call.keep.as_ref().map(|k| &*k.0);
        self.call(call.method, &call.path, call.body.as_ref(), deadline, true, keep, keys).await.map(Arc::new)
    }

    fn reject(&self, reason: &'static str) {
        metrics::counter!(m::REJECTIONS, "backend" => self.name.to_string(), "reason" => reason).increment(1);
        let window = match reason {
            "circuit_open" => &self.live.circuit_open,
            "rate_limited" => &self.live.rate_limited,
            _ => &self.live.bulkhead_full,
        };
        window.record(Duration::ZERO, true);
    }

    /// The last minute of this backend's calls and refusals.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Calls in flight now, and the bulkhead's size.
    pub fn in_flight(&self) -> (usize, usize) {
        let policy = self.policy.load();
        let max = policy.resilience.max_concurrent.max(1);
        (max.saturating_sub(policy.bulkhead.available_permits()), max)
    }

    async fn attempt(
        &self,
        policy: &Policy,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
        deadline: Instant,
        keep: Option<&json::Keep>,
    ) -> Result<Tape, FetchError> {
        let backend = self.name.clone();
        let Ok(permit) = self.breaker.try_acquire() else {
            self.reject("circuit_open");
            return Err(FetchError::CircuitOpen { backend });
        };
        if !policy.limiter.admit() {
            self.reject("rate_limited");
            permit.record(Outcome::Ignored);
            return Err(FetchError::RateLimited { backend });
        }
        let Ok(_slot) = policy.bulkhead.clone().try_acquire_owned() else {
            self.reject("bulkhead_full");
            permit.record(Outcome::Ignored);
            return Err(FetchError::BulkheadFull { backend, max: policy.resilience.max_concurrent });
        };
        let now = Instant::now();
        let timeout = policy.resilience.attempt_timeout.min(deadline.saturating_duration_since(now));
        if timeout.is_zero() {
            permit.record(Outcome::Ignored);
            return Err(FetchError::Deadline { backend });
        }
        let result = match tokio::time::timeout(timeout, self.http(policy, method, path, body, keep)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                backend,
                method: method.as_str(),
                path: shown(path),
                after_ms: timeout.as_millis() as u64,
            }),
        };
        self.metered.latency.record(now.elapsed().as_secs_f64());
        self.live.calls.record(now.elapsed(), result.is_err());
        permit.record(match &result {
            Ok(_) => Outcome::Success,
            Err(e) => e.breaker_outcome(),
        });
        result
    }

    async fn http(
        &self,
        policy: &Policy,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
        keep: Option<&json::Keep>,
    ) -> Result<Tape, FetchError> {
        let url = format!("{}{}", self.base, path);
        let m = method.as_str();
        let backend = &self.name;
        let max_body = policy.resilience.max_body_bytes;
        // A body over the limit fails the call as a malformed one that names the limit.
        let too_large = |e: ReadError, connect: &dyn Fn(String) -> FetchError| match e {
            ReadError::TooLarge => FetchError::Body {
                backend: backend.clone(),
                method: m,
                path: shown(path),
                reason: format!(
                    "the answer is larger than maxBodyBytes ({max_body} bytes); the rest was not read"
                ),
            },
            ReadError::Failed(reason) => connect(reason),
        };
        let mut headers = http::HeaderMap::new();
        if crate::telemetry::otel::traced() {
            crate::telemetry::otel::inject(&mut headers);
        }
        // Devices see the backend's name and path, never its internal URL (the log has it).
        let connect = |reason: String| {
            tracing::debug!(backend = %backend, error = %reason, "backend call failed");
            FetchError::Connect { backend: backend.clone(), method: m, path: shown(path), reason }
        };
        let answer = match &self.transport {
            Transport::Plain(lanes) => {
                let client = lanes.client();
                // A character `http` refuses in a URI (a space, `|` in a literal of the
                // template) is percent-encoded the way reqwest's URL parser would.
                let uri: http::Uri = match url.parse() {
                    Ok(uri) => uri,
                    Err(_) => url::Url::parse(&url)
                        .map_err(|e| e.to_string())
                        .and_then(|u| u.as_str().parse().map_err(|e: http::uri::InvalidUri| e.to_string()))
                        .map_err(connect)?,
                };
                let mut request = http::Request::builder().method(m).uri(uri);
                let content = match body {
                    Some(body) => {
                        headers.insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        body.clone()
                    }
                    None => Bytes::new(),
                };
                if let Some(h) = request.headers_mut() {
                    h.extend(headers);
                }
                let request = request.body(Full::new(content)).map_err(|e| connect(e.to_string()))?;
                let response = client.request(request).await.map_err(|e| connect(chain(&e)))?;
                let status = response.status().as_u16();
                let retry_after = retry_after(response.headers());
                let body = if response.status().is_success() {
                    Some(
                        read_capped(response.into_body(), max_body)
                            .await
                            .map_err(|e| too_large(e, &connect))?,
                    )
                } else {
                    None
                };
                Reply { status, retry_after, body }
            }
            Transport::Reqwest(client) => {
                let mut request = match method {
                    Method::Get => client.get(&url),
                    Method::Post => client.post(&url),
                };
                if let Some(body) = body {
                    request =
                        request.header(http::header::CONTENT_TYPE, "application/json").body(body.clone());
                }
                let failed = |e: reqwest::Error| connect(e.without_url().to_string());
                let response = request.headers(headers).send().await.map_err(failed)?;
                let status = response.status().as_u16();
                let retry_after = retry_after(response.headers());
                let body = if response.status().is_success() {
                    let body = http::Response::<reqwest::Body>::from(response).into_body();
                    Some(read_capped(body, max_body).await.map_err(|e| too_large(e, &connect))?)
                } else {
                    None
                };
                Reply { status, retry_after, body }
            }
        };
        tracing::Span::current().record("http.response.status_code", i64::from(answer.status));
        if answer.status == 429
            && let Some(wait) = answer.retry_after
        {
            policy.limiter.pause_for(wait);
        }
        let Some(bytes) = answer.body else {
            return Err(FetchError::Status {
                backend: backend.clone(),
                method: m,
                path: shown(path),
                status: answer.status,
            });
        };
        let parsed = if bytes.len() <= INLINE_PARSE_BYTES {
            json::parse_sized(&bytes, keep.unwrap_or(&json::Keep::All), Some(&self.tape_share))
                .map_err(|e| e.to_string())
        } else {
            // A large body is read on a blocking thread: the serving thread goes on with its
            // other connections meanwhile, and the attempt's timeout answers on time whatever
            // the parse takes (it ends by itself: linear, and bounded by `max_body_bytes`).
            let keep = keep.cloned().unwrap_or(json::Keep::All);
            match tokio::task::spawn_blocking(move || json::parse_sized(&bytes, &keep, None)).await {
                Ok(parsed) => parsed.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the parse failed: {e}")),
            }
        };
        parsed.map_err(|reason| FetchError::Body {
            backend: backend.clone(),
            method: m,
            path: shown(path),
            reason,
        })
    }
}

/// Bodies up to this many bytes are parsed where they arrive (a home screen's largest is
/// ~30 KiB; ~0.1 ms); larger ones on a blocking thread (probe 2, H2: a 1.1 MB body of
/// repeated keys held a serving thread for 5.6 s).
const INLINE_PARSE_BYTES: usize = 256 * 1024;

/// Every declared backend, by index (the index the schema model uses).
#[derive(Debug)]
pub struct Backends {
    list: Vec<Arc<Backend>>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for backend {backend}: {reason}")]
pub struct ClientError {
    backend: String,
    reason: String,
}

impl Backends {
    pub fn new(settings: Vec<BackendSettings>) -> Result<Self, ClientError> {
        Self::carrying(settings, None)
    }

    /// Backends for a new schema: one declared exactly as in `previous` is the same backend
    /// (its breaker state, in-flight calls and numbers changed at runtime carry on); any other
    /// is new.
    pub fn carrying(
        settings: Vec<BackendSettings>,
        previous: Option<&Backends>,
    ) -> Result<Self, ClientError> {
        let list = settings
            .into_iter()
            .map(|s| {
                if let Some(same) = previous.and_then(|p| p.list.iter().find(|b| b.declared == s)) {
                    return Ok(same.clone());
                }
                let declared = s.clone();
                let transport = Transport::for_url(&s.url)
                    .map_err(|reason| ClientError { backend: s.name.clone(), reason })?;
                let name: Arc<str> = Arc::from(s.name.as_str());
                let r = s.resilience;
                let state_name = name.to_string();
                let breaker = Breaker::new(r.breaker, Arc::new(TokioClock)).on_transition(move |state| {
                    for st in [breaker::State::Closed, breaker::State::Open, breaker::State::HalfOpen] {
                        let value = if st == state { 1.0 } else { 0.0 };
                        metrics::gauge!(m::BREAKER_STATE, "backend" => state_name.clone(), "state" => st.as_str()).set(value);
                    }
                });
                metrics::gauge!(m::BREAKER_STATE, "backend" => name.to_string(), "state" => "closed").set(1.0);
                Ok(Arc::new(Backend {
                    base: s.url.trim_end_matches('/').to_owned(),
                    transport,
                    breaker,
                    policy: ArcSwap::from_pointee(Policy::new(r)),
                    name,
                    declared,
                    live: Live::default(),
                    tape_share: json::TapeShare::default(),
                    metered: Metered::new(&s.name),
                    in_flight: Arc::new(InFlight::new(MAX_IN_FLIGHT)),
                }))
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(Self { list })
    }

    pub fn get(&self, index: usize) -> &Backend {
        &self.list[index]
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|b| b.name())
    }

    /// The backend named `name`, to hold beyond the engine it came from.
    pub fn find(&self, name: &str) -> Option<Arc<Backend>> {
        self.list.iter().find(|b| b.name() == name).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Backend> {
        self.list.iter().map(|b| &**b)
    }
}

#[cfg(test)]
mod tests {
    use crate::backends::transport::{LANES, Lanes, reqwest_client, use_lane};
    use crate::errors::Code;
    #[tokio::test]
    async fn the_https_and_proxy_client_follows_no_redirect() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A "backend" that answers every request with a redirect to a secret next door.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 302 Found\r\nlocation: http://{addr}/secret\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest_client().unwrap().get(format!("http://{addr}/item")).send().await.unwrap();
        assert_eq!(response.status(), 302, "the redirect is the answer");
        assert_eq!(served.load(std::sync::atomic::Ordering::Relaxed), 1, "/secret was never asked for");
    }

    use super::*;

    fn proxied() -> bool {
        ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|p| !p.is_empty()))
    }

    #[test]
    fn plain_http_backends_go_through_hyper_and_https_ones_through_reqwest() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plain = Transport::for_url("http://127.0.0.1:7101").unwrap();
        assert_eq!(matches!(plain, Transport::Plain(_)), !proxied());
        assert!(matches!(Transport::for_url("https://catalog.internal").unwrap(), Transport::Reqwest(_)));
    }

    #[test]
    fn each_serving_thread_calls_through_its_own_pool() {
        let lanes = std::sync::Arc::new(Lanes::default());
        let on = |lane: Option<usize>| {
            let lanes = lanes.clone();
            std::thread::spawn(move || {
                if let Some(n) = lane {
                    use_lane(n);
                }
                let first = lanes.client() as *const _ as usize;
                assert_eq!(first, lanes.client() as *const _ as usize, "one pool per thread");
                first
            })
            .join()
            .unwrap()
        };
        let (zero, one, other) = (on(Some(0)), on(Some(1)), on(None));
        assert_ne!(zero, one);
        assert_eq!(other, zero, "a thread that serves no connections uses the first pool");
        assert_eq!(on(Some(LANES + 1)), one, "past LANES threads share in turn");
        assert_eq!(lanes.0.iter().filter(|l| l.get().is_some()).count(), 2, "pools are made when used");
    }

    /// A local backend that answers `/big` with a declared 2 MiB body and `/endless` with a
    /// chunked body that never ends; counts the bytes it managed to send.
    async fn oversize_backend() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = sent.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                    if buf[..n].starts_with(b"GET /big") {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2097152\r\n\r\n";
                        let _ = socket.write_all(head.as_bytes()).await;
                        return;
                    }
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    // At most 64 MiB, and only while the caller keeps reading.
                    for _ in 0..1024 {
                        if socket.write_all(chunk.as_bytes()).await.is_err() {
                            return;
                        }
                        counted.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        (url, sent)
    }

    #[tokio::test]
    async fn an_answer_over_max_body_bytes_fails_its_call_and_is_not_read_further() {
        let (url, sent) = oversize_backend().await;
        let resilience = Resilience { max_body_bytes: 1024 * 1024, max_retries: 0, ..Resilience::default() };
        let settings = BackendSettings { name: "huge".into(), url, resilience };
        let backends = Backends::new(vec![settings]).unwrap();
        for path in ["/big", "/endless"] {
            let deadline = Instant::now() + Duration::from_secs(10);
            let e =
                backends.get(0).call(Method::Get, path, None, deadline, false, None, 0).await.unwrap_err();
            assert_eq!(e.code(), Code::BackendError, "{e}");
            let text = e.to_string();
            assert!(
                text.contains("larger than maxBodyBytes (1048576 bytes)") && text.contains(path),
                "{text}"
            );
        }
        // The endless body was dropped at the limit: the sender could only fill the socket
        // buffers beyond it, nowhere near its 64 MiB.
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent < 16 * 1024 * 1024, "{sent} bytes were sent");
    }

    #[tokio::test]
    async fn a_backend_nobody_listens_on_is_a_connect_error_with_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let settings = BackendSettings {
            name: "gone".into(),
            url: format!("http://127.0.0.1:{port}"),
            resilience: Resilience::default(),
        };
        let backends = Backends::new(vec![settings]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let e =
            backends.get(0).call(Method::Get, "/titles/1", None, deadline, false, None, 0).await.unwrap_err();
        let FetchError::Connect { reason, path, .. } = &e else { panic!("{e}") };
        assert_eq!(path, "/titles/1");
        assert!(reason.to_lowercase().contains("refused"), "{reason}");
        assert!(
            !reason.contains(&port.to_string()),
            "the internal address stays out of what devices see: {reason}"
        );
    }
}
