//! The load generator: closed loop (N virtual users, each sending its next request when the
//! last one answered) and open loop (requests started at a fixed rate whatever the answers,
//! latency counted from the intended start so a stall is not hidden). Latencies go into an
//! HDR histogram.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;

/// One kind of request to send.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    /// JSON body for a POST; `None` sends a GET.
    pub body: Option<bytes::Bytes>,
}

impl Target {
    pub fn post(url: String, body: &serde_json::Value) -> Self {
        Self { url, body: Some(bytes::Bytes::from(body.to_string())) }
    }

    pub fn get(url: String) -> Self {
        Self { url, body: None }
    }

    /// Sends once; `Ok(response bytes)` on HTTP 200.
    pub async fn send(&self, client: &reqwest::Client) -> Result<usize, String> {
        let request = match &self.body {
            Some(body) => {
                client.post(&self.url).header("content-type", "application/json").body(body.clone())
            }
            None => client.get(&self.url),
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        Ok(bytes.len())
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

fn stats(h: &Histogram<u64>, errors: u64, bytes: u64, elapsed: Duration) -> Stats {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let requests = h.len();
    Stats {
        requests,
        errors,
        seconds: elapsed.as_secs_f64(),
        rps: requests as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(0.50),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
        mean_bytes: if requests > 0 { bytes as f64 / requests as f64 } else { 0.0 },
    }
}

struct Totals {
    histogram: Histogram<u64>,
    errors: u64,
    bytes: u64,
}

pub fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .expect("client builds")
}

/// `vus` users in a closed loop for `duration` (after a short warm-up that is not counted).
pub async fn closed_loop(target: &Target, vus: usize, duration: Duration) -> Stats {
    let client = client(vus);
    for _ in 0..vus.min(8) {
        let _ = target.send(&client).await;
    }
    let totals = Arc::new(Mutex::new(Totals { histogram: new_histogram(), errors: 0, bytes: 0 }));
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
    let t = totals.lock().await;
    stats(&t.histogram, t.errors, t.bytes, start.elapsed())
}

/// Requests started at `rate` per second for `duration`, however slowly they are answered.
pub async fn open_loop(target: &Target, rate: u32, duration: Duration) -> Stats {
    let client = client(256);
    let totals = Arc::new(Mutex::new(Totals { histogram: new_histogram(), errors: 0, bytes: 0 }));
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
    let t = totals.lock().await;
    stats(&t.histogram, t.errors, t.bytes, start.elapsed())
}
