//! The load generator: closed loop (N virtual users, each sending its next request when the
//! last one answered) and open loop (requests started at a fixed rate whatever the answers,
//! latency counted from the intended start so a stall is not hidden). Latencies go into an
//! HDR histogram.
//!
//! Requests go out on hyper's HTTP/1 connections directly, each request built from parts
//! prepared once per target: a general-purpose client (URL parsing, pool lookup by host,
//! redirect and decompression layers per request) spent ~43 µs of CPU per home query here,
//! on the same two cores as the servers it measures (docs/benchmarks-history.md §22).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

/// One kind of request to send.
#[derive(Clone)]
pub struct Target {
    /// `host:port` to connect to.
    authority: String,
    /// Path and query.
    path: hyper::Uri,
    /// JSON body for a POST; `None` sends a GET.
    body: Option<Bytes>,
}

impl Target {
    pub fn post(url: String, body: &serde_json::Value) -> Self {
        Self::new(&url, Some(Bytes::from(body.to_string())))
    }

    pub fn get(url: String) -> Self {
        Self::new(&url, None)
    }

    /// Panics on a URL that is not `http://host:port/...`: targets come from the harness
    /// itself (the addresses its child processes announced), never from a user.
    fn new(url: &str, body: Option<Bytes>) -> Self {
        let uri: hyper::Uri = url.parse().unwrap_or_else(|e| panic!("target URL {url}: {e}"));
        assert_eq!(uri.scheme_str(), Some("http"), "target URL {url}: only http:// is measured");
        let authority = uri.authority().map(|a| a.as_str().to_owned());
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).parse().expect("a path parses");
        Self { authority: authority.unwrap_or_else(|| panic!("target URL {url} has no host")), path, body }
    }

    fn request(&self) -> hyper::Request<Full<Bytes>> {
        let builder = hyper::Request::builder().uri(self.path.clone()).header("host", &self.authority);
        let built = match &self.body {
            Some(body) => builder
                .method("POST")
                .header("content-type", "application/json")
                .body(Full::new(body.clone())),
            None => builder.body(Full::new(Bytes::new())),
        };
        built.expect("a request from a parsed URI and fixed headers builds")
    }

    /// Sends once; `Ok(response bytes)` on HTTP 200.
    pub async fn send(&self, client: &Client) -> Result<usize, String> {
        let mut sender = client.checkout(&self.authority).await.map_err(|e| format!("{e:#}"))?;
        let response = sender.send_request(self.request()).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let mut body = response.into_body();
        let mut bytes = 0;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.map_err(|e| e.to_string())?.data_ref() {
                bytes += data.len();
            }
        }
        client.checkin(&self.authority, sender).await;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        Ok(bytes)
    }
}

/// An open HTTP/1 connection's sending half.
type Sender = SendRequest<Full<Bytes>>;

/// Idle HTTP/1 connections by `host:port`, at most `max_idle` kept per host; a request with
/// none idle opens a new one (a closed loop of N users thus holds N connections).
#[derive(Clone)]
pub struct Client {
    idle: Arc<Mutex<Vec<(String, Sender)>>>,
    max_idle: usize,
}

pub fn client(connections: usize) -> Client {
    Client { idle: Arc::default(), max_idle: connections }
}

impl Client {
    async fn checkout(&self, authority: &str) -> anyhow::Result<Sender> {
        {
            let mut idle = self.idle.lock().await;
            while let Some(i) = idle.iter().rposition(|(a, _)| a == authority) {
                let (_, mut sender) = idle.swap_remove(i);
                if sender.ready().await.is_ok() {
                    return Ok(sender);
                }
            }
        }
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("connect to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn checkin(&self, authority: &str, sender: Sender) {
        let mut idle = self.idle.lock().await;
        if idle.iter().filter(|(a, _)| a == authority).count() < self.max_idle {
            idle.push((authority.to_owned(), sender));
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_bytes: f64,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// What a closed loop measured; runs against the same target add up (rounds).
pub struct Run {
    histogram: Histogram<u64>,
    errors: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Default for Run {
    fn default() -> Self {
        Self { histogram: new_histogram(), errors: 0, bytes: 0, elapsed: Duration::ZERO }
    }
}

impl Run {
    pub fn add(&mut self, other: &Run) {
        let _ = self.histogram.add(&other.histogram);
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.elapsed += other.elapsed;
    }

    pub fn stats(&self) -> Stats {
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        let requests = self.histogram.len();
        Stats {
            requests,
            errors: self.errors,
            seconds: self.elapsed.as_secs_f64(),
            rps: requests as f64 / self.elapsed.as_secs_f64(),
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            mean_bytes: if requests > 0 { self.bytes as f64 / requests as f64 } else { 0.0 },
        }
    }

    /// The run the loop's tasks added up in `totals`, timed from `start`.
    async fn finished(totals: &Mutex<Run>, start: Instant) -> Run {
        let mut run = std::mem::take(&mut *totals.lock().await);
        run.elapsed = start.elapsed();
        run
    }
}

/// `vus` users in a closed loop for `duration` (after a short warm-up that is not counted).
pub async fn closed_loop(target: &Target, vus: usize, duration: Duration) -> Stats {
    closed_run(target, vus, duration).await.stats()
}

/// [`closed_loop`], its figures kept to be added to another round's.
pub async fn closed_run(target: &Target, vus: usize, duration: Duration) -> Run {
    let client = client(vus);
    for _ in 0..vus.min(8) {
        let _ = target.send(&client).await;
    }
    let totals = Arc::new(Mutex::new(Run::default()));
    let start = Instant::now();
    let deadline = start + duration;
    let users = (0..vus).map(|_| {
        let client = client.clone();
        let target = target.clone();
        let totals = totals.clone();
        tokio::spawn(async move {
            let mut local = new_histogram();
            let (mut errors, mut bytes) = (0, 0u64);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match target.send(&client).await {
                    Ok(n) => {
                        bytes += n as u64;
                        let _ = local.record(t0.elapsed().as_micros().max(1) as u64);
                    }
                    Err(_) => errors += 1,
                }
            }
            let mut t = totals.lock().await;
            let _ = t.histogram.add(&local);
            t.errors += errors;
            t.bytes += bytes;
        })
    });
    for user in users.collect::<Vec<_>>() {
        let _ = user.await;
    }
    Run::finished(&totals, start).await
}

/// Requests started at `rate` per second for `duration`, however slowly they are answered.
pub async fn open_loop(target: &Target, rate: u32, duration: Duration) -> Stats {
    let client = client(256);
    let totals = Arc::new(Mutex::new(Run::default()));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut n = 0u32;
    loop {
        let intended = start + interval * n;
        if intended >= start + duration {
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        let (client, target, totals) = (client.clone(), target.clone(), totals.clone());
        tasks.push(tokio::spawn(async move {
            let result = target.send(&client).await;
            let mut t = totals.lock().await;
            match result {
                Ok(b) => {
                    t.bytes += b as u64;
                    let _ = t.histogram.record(intended.elapsed().as_micros().max(1) as u64);
                }
                Err(_) => t.errors += 1,
            }
        }));
        n += 1;
    }
    for task in tasks {
        let _ = task.await;
    }
    Run::finished(&totals, start).await.stats()
}
