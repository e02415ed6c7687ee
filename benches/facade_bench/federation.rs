//! `facade-bench federation`: Facade and Hive Router side by side on The Guild's federation
//! benchmark — the four subgraphs of `subgraphs.rs` in a process of their own, the composed
//! supergraph (`benches/federation/supergraph.graphql`), the benchmark query
//! (`benches/federation/query.graphql`, sent whole with every request, as k6 does) — in
//! alternating rounds under the same closed-loop load (50 connections), both routers pinned
//! to the same cores (`--router-cpus`).
//!
//! Three settings are measured: `unshared` (engine against engine, nothing shared in flight:
//! every request makes its subgraph calls), `engine` (each router's defaults: identical
//! subgraph calls in flight shared), and `harness`, the published harness's (also whole
//! identical requests shared: Hive Router's inbound deduplication, Facade's
//! `[graphql] share_identical_requests`). Hive Router is the binary `hive_router`
//! (`cargo install hive-router --version 0.2.9 --features graphiql --locked`), found by
//! `--hive-router`, `$HIVE_ROUTER` or on the PATH; without it, Facade is measured alone and
//! the report says so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::load::{self, Target};
use crate::procs::{self, Proc};
use crate::scenarios::Report;

/// Where the benchmark's files are, in the source tree.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/federation").join(name)
}

/// Hive Router as a child process; killed when dropped.
struct Hive {
    child: Child,
    url: String,
}

impl Drop for Hive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hive {
    fn start(program: &Path, dir: &Path, setting: Setting) -> anyhow::Result<Self> {
        let port = free_port()?;
        let (calls, requests) = (setting.share_calls, setting.share_requests);
        let config = format!(
            "supergraph:\n  source: file\n  path: ./supergraph.graphql\nhttp:\n  host: 127.0.0.1\n  port: {port}\n\
             traffic_shaping:\n  all:\n    dedupe_enabled: {calls}\n  router:\n    dedupe:\n      enabled: {requests}\n"
        );
        std::fs::write(dir.join("router.config.yaml"), config)?;
        let child = Command::new(program)
            .current_dir(dir)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        Ok(Self { child, url: format!("http://127.0.0.1:{port}/graphql") })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Pins a process (every thread) to `cpus` with `taskset`; says so when it cannot.
fn pin(pid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn cpu_of(pid: u32) -> Option<f64> {
    procs::cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// POSTs the query once: the answer's bytes (waiting up to 30 s for the router to come up).
async fn answer(url: &str, body: &Value) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(r.text().await?),
            Ok(r) if Instant::now() > deadline => bail!("{url} answered {}", r.status()),
            Err(e) if Instant::now() > deadline => bail!("{url}: {e}"),
            _ => tokio::task::yield_now().await,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What both routers share in flight: identical subgraph calls (each's default), whole
/// identical requests (the published harness turns it on for Hive Router).
#[derive(Clone, Copy)]
struct Setting {
    name: &'static str,
    share_calls: bool,
    share_requests: bool,
}

const SETTINGS: [Setting; 3] = [
    // Engine against engine, every request making its 7 calls.
    Setting { name: "unshared", share_calls: false, share_requests: false },
    // Each router's defaults.
    Setting { name: "engine", share_calls: true, share_requests: false },
    // The published harness's.
    Setting { name: "harness", share_calls: true, share_requests: true },
];

/// One router's figures over the rounds of one setting.
#[derive(Default)]
struct Side {
    run: load::Run,
    cpu: f64,
    /// Subgraph calls made while it was measured.
    calls: u64,
    rounds: Vec<(f64, f64)>,
}

/// Runs the scenario: `rounds` of `secs` seconds per router per setting.
pub async fn federation(smoke: bool, hive: Option<PathBuf>, cpus: &str) -> anyhow::Result<Report> {
    let (vus, rounds, secs) = if smoke { (4, 1, 1) } else { (50, 3, 10) };
    let subgraphs = Proc::start(&["subgraphs", "--listen", "127.0.0.1:0"], &[])?;
    let base = subgraphs
        .announce
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .and_then(|w| w.split("/{").next())
        .context("subgraphs address")?
        .to_owned();
    let dir = TempDir::new()?;
    let supergraph =
        std::fs::read_to_string(fixture("supergraph.graphql"))?.replace("http://127.0.0.1:4200", &base);
    std::fs::create_dir_all(dir.path().join("schema"))?;
    std::fs::write(dir.path().join("schema/supergraph.graphql"), &supergraph)?;
    std::fs::write(dir.path().join("supergraph.graphql"), &supergraph)?;
    let query = std::fs::read_to_string(fixture("query.graphql"))?;
    let body = json!({ "query": query });
    let hive =
        hive.or_else(|| std::env::var_os("HIVE_ROUTER").map(PathBuf::from)).or_else(|| which("hive_router"));
    let mut table = String::new();
    let mut figures = serde_json::Map::new();
    let mut notes = Vec::new();
    if hive.is_none() {
        notes.push("Hive Router not found (--hive-router, $HIVE_ROUTER or hive_router on the PATH): Facade measured alone".to_owned());
    }
    table.push_str("| setting | round | Facade RPS | Hive Router RPS | ratio |\n|---|---|---|---|---|\n");
    let mut summary = String::from(
        "\n| setting | router | RPS | p50 ms | p99 ms | CPU µs/request | peak RSS | subgraph calls/request under load | errors |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let setting = s.name;
        let db = dir.path().join(format!("facade-{setting}.db"));
        let mut env = vec![
            ("FACADE_SCHEMA_DIR", dir.path().join("schema").display().to_string()),
            ("FACADE_DATABASE__URL", format!("sqlite://{}", db.display())),
            ("FACADE_SCHEMA__WATCH", "false".to_owned()),
            // The benchmark query's estimated cost is past the default limit.
            ("FACADE_LIMITS__MAX_COST", "100000000".to_owned()),
            ("FACADE_GRAPHQL__SHARE_IDENTICAL_REQUESTS", s.share_requests.to_string()),
        ];
        let share: Vec<String> = ["ACCOUNTS", "INVENTORY", "PRODUCTS", "REVIEWS"]
            .iter()
            .map(|name| format!("FACADE_BACKENDS__{name}__SHARE_IN_FLIGHT"))
            .collect();
        env.extend(share.iter().map(|k| (k.as_str(), s.share_calls.to_string())));
        let facade = Proc::start(&["_serve"], &env)?;
        let facade_url = format!("{}/graphql", procs::server_url(&facade)?);
        let hive = match &hive {
            Some(program) => Some(Hive::start(program, dir.path(), s)?),
            None => None,
        };
        let pinned = pin(facade.pid(), cpus) & hive.as_ref().is_none_or(|h| pin(h.pid(), cpus));
        if !pinned {
            notes.push(format!("{setting}: taskset could not pin the routers to {cpus}"));
        }
        // Answers, and the subgraph calls of one of Facade's.
        let before = subgraph_calls(&base).await;
        let facade_answer = answer(&facade_url, &body).await?;
        let facade_calls = subgraph_calls(&base).await - before;
        if facade_answer.contains("\"errors\"") {
            bail!("Facade answered with errors: {}", &facade_answer[..facade_answer.len().min(400)]);
        }
        let mut same = None;
        let mut hive_calls = None;
        if let Some(h) = &hive {
            let hive_answer = answer(&h.url, &body).await?;
            let before = subgraph_calls(&base).await;
            answer(&h.url, &body).await?;
            hive_calls = Some(subgraph_calls(&base).await - before);
            same = Some(hive_answer == facade_answer);
            if hive_answer != facade_answer {
                notes.push(format!(
                    "{setting}: the answers differ ({} bytes from Facade, {} from Hive Router)",
                    facade_answer.len(),
                    hive_answer.len()
                ));
            }
        }
        let facade_target = Target::post(facade_url.clone(), &body);
        let hive_target = hive.as_ref().map(|h| Target::post(h.url.clone(), &body));
        let warm = if smoke { Duration::from_millis(200) } else { Duration::from_secs(3) };
        load::closed_run(&facade_target, vus, warm).await;
        if let Some(t) = &hive_target {
            load::closed_run(t, vus, warm).await;
        }
        let (mut f, mut h) = (Side::default(), Side::default());
        let length = Duration::from_secs(secs);
        for round in 0..rounds {
            let measure = |target, pid, side| measure(target, pid, side, vus, length, &base);
            // Who goes first alternates, so the machine's drift weighs on both alike.
            let (fr, hr) = if round % 2 == 0 {
                let fr = measure(&facade_target, facade.pid(), &mut f).await;
                let hr = match (&hive_target, &hive) {
                    (Some(t), Some(x)) => Some(measure(t, x.pid(), &mut h).await),
                    _ => None,
                };
                (fr, hr)
            } else {
                let hr = match (&hive_target, &hive) {
                    (Some(t), Some(x)) => Some(measure(t, x.pid(), &mut h).await),
                    _ => None,
                };
                (measure(&facade_target, facade.pid(), &mut f).await, hr)
            };
            let ratio = hr.map_or("–".to_owned(), |h| format!("{:.2}", fr / h));
            let hr = hr.map_or("–".to_owned(), |h| format!("{h:.0}"));
            table.push_str(&format!("| {setting} | {} | {fr:.0} | {hr} | {ratio} |\n", round + 1));
        }
        let row = |name: &str, side: &Side, rss: Option<u64>| {
            let s = side.run.stats();
            let us = side.cpu * 1e6 / s.requests.max(1) as f64;
            let per = side.calls as f64 / s.requests.max(1) as f64;
            let rss = rss.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
            (
                format!(
                    "| {setting} | {name} | {:.0} | {:.1} | {:.1} | {us:.0} | {rss} | {per:.2} | {} |\n",
                    s.rps, s.p50_ms, s.p99_ms, s.errors
                ),
                json!({ "rps": s.rps, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "cpu_us": us, "rss_kib": rss, "calls_per_request": per, "errors": s.errors, "rounds": side.rounds }),
            )
        };
        let (text, facade_json) = row("Facade", &f, facade.peak_rss_kib());
        summary.push_str(&text);
        let mut entry = json!({ "facade": facade_json, "facade_calls": facade_calls, "same_answer": same, "hive_calls": hive_calls });
        if let Some(x) = &hive {
            let (text, hive_json) = row("Hive Router", &h, procs::peak_rss_kib(x.pid()));
            summary.push_str(&text);
            entry["hive"] = hive_json;
        }
        figures.insert(setting.to_owned(), entry);
        notes.push(format!(
            "{setting}: subgraph calls for one request alone: Facade {facade_calls}{}; same answer: {}",
            hive_calls.map_or(String::new(), |c| format!(", Hive Router {c}")),
            same.map_or("–".to_owned(), |s| if s {
                "yes, byte for byte".to_owned()
            } else {
                "no".to_owned()
            })
        ));
    }
    table.push_str(&summary);
    for n in notes {
        table.push_str(&format!("\n- {n}"));
    }
    Ok(Report { name: "federation", table, figures: Value::Object(figures) })
}

/// One round of closed-loop load on one router: its RPS, added to `side`.
async fn measure(
    target: &Target,
    pid: u32,
    side: &mut Side,
    vus: usize,
    length: Duration,
    base: &str,
) -> f64 {
    let cpu0 = cpu_of(pid);
    let calls0 = subgraph_calls(base).await;
    let run = load::closed_run(target, vus, length).await;
    let stats = run.stats();
    side.cpu += cpu_of(pid).zip(cpu0).map_or(0.0, |(a, b)| a - b);
    side.calls += subgraph_calls(base).await.saturating_sub(calls0);
    side.rounds.push((stats.rps, stats.p99_ms));
    side.run.add(&run);
    stats.rps
}

/// Every subgraph's requests so far (`GET /_calls`), summed; 0 if they cannot be read.
async fn subgraph_calls(base: &str) -> u64 {
    let Ok(r) = reqwest::get(format!("{base}/_calls")).await else { return 0 };
    let counts: Value = r.json().await.unwrap_or_default();
    counts.as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// A fresh folder under the system's temporary one; removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("facade-bench-federation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `name` on the PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}
