//! The scenarios. Each starts what it needs, measures both sides of a comparison in the same
//! run, and returns a markdown table plus its figures as JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::load::{self, Target};
use crate::procs::{self, Backends, Proc};

const HOME: &str = include_str!("../../resolvers-js/endpoints/tv/home.graphql");

/// The admin token the benchmark's Facade accepts (its hash is passed in the environment).
pub const BENCH_TOKEN: &str = "fcd_facade_bench";

pub struct Report {
    pub name: &'static str,
    pub table: String,
    pub figures: Value,
}

/// What every scenario shares: the demo backends and one Facade bound to them.
pub struct Env {
    pub backends: Backends,
    pub facade: Proc,
    pub facade_url: String,
    pub smoke: bool,
}

impl Env {
    pub fn start(smoke: bool) -> anyhow::Result<Self> {
        let backends = Backends::start()?;
        let facade = start_facade(&backends, None, smoke)?;
        let facade_url = procs::server_url(&facade)?;
        Ok(Self { backends, facade, facade_url, smoke })
    }

    fn graphql(&self) -> String {
        format!("{}/graphql", self.facade_url)
    }
}

fn start_facade(backends: &Backends, max_batch_size: Option<usize>, smoke: bool) -> anyhow::Result<Proc> {
    start_facade_with(backends, max_batch_size, smoke, "", &[])
}

/// A Facade with `extra` environment; `tag` keeps its registry file apart from the others.
pub fn start_facade_with(
    backends: &Backends,
    max_batch_size: Option<usize>,
    smoke: bool,
    tag: &str,
    extra: &[(&'static str, String)],
) -> anyhow::Result<Proc> {
    let mut env: Vec<(&str, String)> = extra.to_vec();
    // A registry file of its own, so a run leaves nothing behind in the working directory.
    let db = std::env::temp_dir().join(format!(
        "facade-bench-{}-{}{tag}.db",
        std::process::id(),
        max_batch_size.unwrap_or(0)
    ));
    let _ = std::fs::remove_file(&db);
    env.push(("FACADE_DATABASE__URL", format!("sqlite://{}", db.display())));
    env.push((
        "FACADE_ADMIN__TOKEN_SHA256",
        format!("[\"{}\"]", facade::http::auth::token_hash(BENCH_TOKEN)),
    ));
    if smoke {
        // The isolation scenario waits out artwork's timeouts until its breaker opens: keep
        // that short when only checking the harness.
        env.push(("FACADE_BACKENDS__ARTWORK__TIMEOUT_MS", "50".to_owned()));
        env.push(("FACADE_BACKENDS__ARTWORK__BREAKER_MIN_CALLS", "4".to_owned()));
    }
    let vars = backends.facade_env();
    for (k, v) in &vars {
        env.push((k.as_str(), v.clone()));
    }
    if let Some(n) = max_batch_size {
        env.push(("FACADE_ENGINE__MAX_BATCH_SIZE", n.to_string()));
        // One call per item puts ~200 calls in flight at once: lift the bulkhead.
        env.push(("FACADE_ENGINE__MAX_CONCURRENT", "1000".to_owned()));
    }
    Proc::start(&["_serve"], &env)
}

fn home_body() -> Value {
    json!({ "query": HOME, "variables": { "profileId": "1" } })
}

async fn backend_calls(backends: &Backends) -> BTreeMap<String, u64> {
    let client = reqwest::Client::new();
    let mut out = BTreeMap::new();
    for (name, url) in &backends.urls {
        let stats: Value =
            client.get(format!("{url}/_demo/stats")).send().await.unwrap().json().await.unwrap();
        out.insert(name.clone(), stats["requests"].as_u64().unwrap_or(0));
    }
    out
}

async fn set_faults(backends: &Backends, faults: Value) {
    let client = reqwest::Client::new();
    for (_, url) in &backends.urls {
        let _ = client.post(format!("{url}/_demo/faults")).json(&faults).send().await;
    }
}

fn p50(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Scenario 1: Device-perceived latency of the home screen with a simulated round trip per request.
pub async fn chattiness(env: &Env) -> anyhow::Result<Report> {
    let rtt = if env.smoke { Duration::from_millis(5) } else { Duration::from_millis(100) };
    let n = if env.smoke { 2 } else { 10 };
    let client = load::client(8);
    let target = Target::post(env.graphql(), &home_body());

    let mut facade = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        tokio::time::sleep(rtt).await;
        target.send(&client).await.map_err(anyhow::Error::msg)?;
        facade.push(ms(t0.elapsed()));
    }
    let device = Device {
        client: reqwest::Client::new(),
        rtt,
        connections: Arc::new(Semaphore::new(6)),
        calls: Default::default(),
    };
    let mut batched = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        device.home(&env.backends, true).await?;
        batched.push(ms(t0.elapsed()));
    }
    let batched_calls = device.calls.swap(0, std::sync::atomic::Ordering::Relaxed) / n as u64;
    let t0 = Instant::now();
    device.home(&env.backends, false).await?;
    let per_item = ms(t0.elapsed());
    let per_item_calls = device.calls.load(std::sync::atomic::Ordering::Relaxed);
    let (f, b) = (p50(facade), p50(batched));
    let table = format!(
        "| client | requests per screen | latency (p50 of {n}) | vs Facade |\n|---|---:|---:|---:|\n\
         | Facade, one call | 1 | {f:.0} ms | 1.00 |\n\
         | REST device, batch routes | {batched_calls} | {b:.0} ms | {:.2} |\n\
         | REST device, one call per item | {per_item_calls} | {per_item:.0} ms (one run) | {:.2} |\n\n\
         Simulated round trip per device request: {} ms; the device uses at most 6 connections.",
        b / f,
        per_item / f,
        rtt.as_millis()
    );
    Ok(Report {
        name: "chattiness",
        table,
        figures: json!({"rtt_ms": rtt.as_millis() as u64, "facade_ms": f, "rest_batched_ms": b, "rest_batched_calls": batched_calls,
                        "rest_per_item_ms": per_item, "rest_per_item_calls": per_item_calls}),
    })
}

/// A device talking REST to the backends itself: every request pays the round trip.
struct Device {
    client: reqwest::Client,
    rtt: Duration,
    connections: Arc<Semaphore>,
    calls: std::sync::atomic::AtomicU64,
}

impl Device {
    async fn get(&self, url: String, body: Option<Value>) -> anyhow::Result<Value> {
        let _permit = self.connections.acquire().await?;
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(self.rtt).await;
        let request = match body {
            Some(b) => self.client.post(url).json(&b),
            None => self.client.get(url),
        };
        Ok(request.send().await?.json().await?)
    }

    async fn home(&self, b: &Backends, batch: bool) -> anyhow::Result<()> {
        let _profile = self.get(format!("{}/profiles/1", b.url("members")), None).await?;
        let rows = self.get(format!("{}/profiles/1/rows?limit=10", b.url("lists")), None).await?;
        let mut ids: Vec<String> = Vec::new();
        for row in rows.as_array().into_iter().flatten() {
            ids.extend(row["titleIds"].as_array().into_iter().flatten().take(20).map(|v| v.to_string()));
        }
        if batch {
            let joined = ids.join(",");
            self.get(format!("{}/titles?ids={joined}", b.url("catalog")), None).await?;
            let art = self.get(format!("{}/artwork?ids={joined}&size=MEDIUM", b.url("artwork")), None);
            let ratings = self.get(format!("{}/ratings/batch", b.url("ratings")), Some(json!(ids)));
            let marks =
                self.get(format!("{}/profiles/1/bookmarks?titleIds={joined}", b.url("history")), None);
            let (a, r, m) = tokio::join!(art, ratings, marks);
            a?;
            r?;
            m?;
        } else {
            let titles = ids.iter().map(|id| self.get(format!("{}/titles/{id}", b.url("catalog")), None));
            futures_util::future::join_all(titles).await;
            let per_title = ids.iter().flat_map(|id| {
                [
                    format!("{}/artwork/{id}?size=MEDIUM", b.url("artwork")),
                    format!("{}/ratings/{id}", b.url("ratings")),
                    format!("{}/profiles/1/bookmarks/{id}", b.url("history")),
                ]
            });
            futures_util::future::join_all(per_title.map(|u| self.get(u, None))).await;
        }
        Ok(())
    }
}

/// Scenario 2: Backend calls per home query: batched vs one call per item.
pub async fn batching(env: &Env) -> anyhow::Result<Report> {
    let client = load::client(2);
    let target = Target::post(env.graphql(), &home_body());
    let before = backend_calls(&env.backends).await;
    target.send(&client).await.map_err(anyhow::Error::msg)?;
    let mid = backend_calls(&env.backends).await;
    let per_item_facade = start_facade(&env.backends, Some(1), false)?;
    let per_item_target =
        Target::post(format!("{}/graphql", procs::server_url(&per_item_facade)?), &home_body());
    per_item_target.send(&client).await.map_err(anyhow::Error::msg)?;
    let after = backend_calls(&env.backends).await;
    let mut rows = String::new();
    let (mut batched_total, mut item_total) = (0, 0);
    let mut figures = serde_json::Map::new();
    for name in facade::demo::BACKEND_NAMES {
        let batched = mid[name] - before[name];
        let per_item = after[name] - mid[name];
        batched_total += batched;
        item_total += per_item;
        rows.push_str(&format!("| {name} | {batched} | {per_item} |\n"));
        figures.insert(name.to_owned(), json!({"batched": batched, "per_item": per_item}));
    }
    figures.insert("total".into(), json!({"batched": batched_total, "per_item": item_total}));
    let table = format!(
        "| backend | batched | one call per item |\n|---|---:|---:|\n{rows}| **total** | **{batched_total}** | **{item_total}** |"
    );
    Ok(Report { name: "batching", table, figures: Value::Object(figures) })
}

/// Scenario 3: Server time over the backend critical path with 20 ms on every backend. The critical
/// path is measured, not assumed: the same four dependent rounds (members, lists, catalog,
/// then artwork, ratings and history together) made directly against the backends.
pub async fn parallelism(env: &Env) -> anyhow::Result<Report> {
    const LATENCY_MS: u64 = 20;
    let n = if env.smoke { 3 } else { 30 };
    set_faults(&env.backends, json!({"latencyMs": LATENCY_MS})).await;
    let client = load::client(8);
    let target = Target::post(env.graphql(), &home_body());
    target.send(&client).await.map_err(anyhow::Error::msg)?;
    let direct = Device {
        client: reqwest::Client::new(),
        rtt: Duration::ZERO,
        connections: Arc::new(Semaphore::new(6)),
        calls: Default::default(),
    };
    let (mut server, mut path) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t0 = Instant::now();
        target.send(&client).await.map_err(anyhow::Error::msg)?;
        server.push(ms(t0.elapsed()));
        let t0 = Instant::now();
        direct.home(&env.backends, true).await?;
        path.push(ms(t0.elapsed()));
    }
    set_faults(&env.backends, json!({})).await;
    let (server, critical) = (p50(server), p50(path));
    let table = format!(
        "| backend critical path (measured, p50 of {n}) | Facade server time (p50 of {n}) | ratio (goal ≤ 1.1) |\n|---:|---:|---:|\n\
         | {critical:.1} ms (4 dependent rounds, {LATENCY_MS} ms added per call) | {server:.1} ms | {:.3} |",
        server / critical
    );
    Ok(Report {
        name: "parallelism",
        table,
        figures: json!({"critical_path_ms": critical, "server_ms": server, "ratio": server / critical}),
    })
}

/// Scenario 4: Home-query throughput at 50 virtual users: Facade vs the static async-graphql server.
pub async fn throughput(env: &Env) -> anyhow::Result<Report> {
    let (vus, rounds, secs, rate, open_secs) =
        if env.smoke { (4, 1, 1, 50, 1) } else { (50, 3, 10, 100, 10) };
    let duration = Duration::from_secs(secs);
    let urls = serde_json::to_string(&env.backends.urls)?;
    let static_server = Proc::start(&["_static-server", "--backends", &urls], &[])?;
    let static_target = Target::post(format!("{}/graphql", procs::server_url(&static_server)?), &home_body());
    let target = Target::post(env.graphql(), &home_body());
    let cpu = || {
        [
            env.facade.cpu_seconds(),
            env.backends.cpu_seconds(),
            procs::cpu_seconds("/proc/self/stat"),
            env.facade.system_seconds(),
        ]
    };
    // CPU seconds of each process while Facade was measured, and the static server's while it was.
    let mut facade_cpu = [Some(0.0); 4];
    let mut static_cpu = Some(0.0);
    // The two servers take turns, so that the machine's speed, which drifts over minutes
    // here, weighs on both alike.
    // Both servers warmed up at full load first, not counted: the first seconds open the
    // connections (50 from the load generator, Facade's pools to the backends), grow the
    // heaps, and fill the demo backends' memos, which the server measured first paid for.
    let warm = if env.smoke { Duration::from_millis(200) } else { Duration::from_secs(3) };
    load::closed_run(&target, vus, warm).await;
    load::closed_run(&static_target, vus, warm).await;
    let (mut dynamic, mut fixed) = (load::Run::default(), load::Run::default());
    // Each round's RPS, Facade's and the static server's: how far the machine moved within
    // the run.
    let mut round_rps = Vec::new();
    for _ in 0..rounds {
        let before = cpu();
        let facade_round = load::closed_run(&target, vus, duration).await;
        dynamic.add(&facade_round);
        let after = cpu();
        for (sum, (b, a)) in facade_cpu.iter_mut().zip(before.iter().zip(after)) {
            *sum = sum.zip(*b).zip(a).map(|((s, b), a)| s + a - b);
        }
        let before = static_server.cpu_seconds();
        let static_round = load::closed_run(&static_target, vus, duration).await;
        fixed.add(&static_round);
        round_rps.push((facade_round.stats().rps, static_round.stats().rps));
        static_cpu = static_cpu.zip(before).zip(static_server.cpu_seconds()).map(|((s, b), a)| s + a - b);
    }
    let (dynamic, fixed) = (dynamic.stats(), fixed.stats());
    let rss_kib = env.facade.peak_rss_kib();
    // CPU per request of each process in Facade's loop (microseconds): where the machine's
    // two cores went, so the ratio can be read against what the other processes took.
    let per_request: Vec<Option<f64>> =
        facade_cpu.iter().map(|s| s.map(|s| s * 1e6 / dynamic.requests.max(1) as f64)).collect();
    let us = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.0}"));
    // The static server's own CPU per request: with Facade's, the engines' cost apart from
    // the demo backends and the load generator, which both loops share.
    let static_us = static_cpu.map(|s| s * 1e6 / fixed.requests.max(1) as f64);
    let engine_ratio = static_us.zip(per_request[0]).map(|(s, f)| s / f);
    let open = load::open_loop(&target, rate, Duration::from_secs(open_secs)).await;
    let row = |name: &str, s: &load::Stats, ratio: f64| {
        format!(
            "| {name} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {:.0} KiB | {ratio:.2} |\n",
            s.rps,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.errors,
            s.mean_bytes / 1024.0
        )
    };
    let ratio = dynamic.rps / fixed.rps;
    let table = format!(
        "Closed loop, {vus} virtual users, {rounds} × {secs} s for each server, taking turns:\n\n\
         | server | RPS | p50 ms | p95 ms | p99 ms | errors | body | RPS ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|\n{}{}\n\
         Each round (Facade / static RPS, ratio), after {warm:?} of each not counted: {}.\n\n\
         CPU per Facade request in that loop: Facade {} µs ({} µs of it in the kernel), demo backends {} µs, load generator {} µs. \
         The static server used {} µs per request of its loop: {} × Facade's.\n\n\
         Facade peak RSS: {} MiB. Goal: ≥ 1,500 RPS with p99 < 50 ms, ≥ 5× the static server, peak RSS ≤ 64 MiB.\n\n\
         Open loop, {rate} requests/s for {open_secs} s against Facade: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, {} errors.",
        row("Facade (compiled plan)", &dynamic, ratio),
        row("static async-graphql", &fixed, 1.0),
        round_rps
            .iter()
            .map(|(f, s)| format!("{f:.0} / {s:.0}, {:.2}", f / s.max(f64::MIN_POSITIVE)))
            .collect::<Vec<_>>()
            .join("; "),
        us(per_request[0]),
        us(per_request[3]),
        us(per_request[1]),
        us(per_request[2]),
        us(static_us),
        engine_ratio.map_or("?".to_owned(), |r| format!("{r:.2}")),
        rss_kib.map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
        open.p50_ms,
        open.p95_ms,
        open.p99_ms,
        open.errors
    );
    Ok(Report {
        name: "throughput",
        table,
        figures: json!({"facade": dynamic, "static": fixed, "ratio": ratio, "facade_peak_rss_kib": rss_kib, "open_loop": open, "round_rps": round_rps,
            "cpu_us_per_request": {"facade": per_request[0], "backends": per_request[1], "load": per_request[2], "facade_system": per_request[3], "static": static_us}, "cpu_ratio": engine_ratio}),
    })
}

/// Scenario 5: A one-field query through Facade vs calling that backend directly.
pub async fn overhead(env: &Env) -> anyhow::Result<Report> {
    let duration = if env.smoke { Duration::from_millis(500) } else { Duration::from_secs(5) };
    let through = Target::post(env.graphql(), &json!({"query": "{ title(id: 7) { name } }"}));
    let direct = Target::get(format!("{}/titles/7", env.backends.url("catalog")));
    let f = load::closed_loop(&through, 1, duration).await;
    let d = load::closed_loop(&direct, 1, duration).await;
    let table = format!(
        "One virtual user, {:.1} s each:\n\n| path | p50 ms | p99 ms | RPS |\n|---|---:|---:|---:|\n\
         | catalog directly | {:.3} | {:.3} | {:.0} |\n| through Facade | {:.3} | {:.3} | {:.0} |\n\n\
         Facade adds {:.3} ms at p50 ({:.2}× the direct call).",
        duration.as_secs_f64(),
        d.p50_ms,
        d.p99_ms,
        d.rps,
        f.p50_ms,
        f.p99_ms,
        f.rps,
        f.p50_ms - d.p50_ms,
        f.p50_ms / d.p50_ms
    );
    Ok(Report { name: "overhead", table, figures: json!({"facade": f, "direct": d}) })
}

/// Scenario 6: bulkhead and breaker isolation. p99 of the home query while artwork hangs
/// (after a warm-up in which the breaker opens), over p99 of a healthy run; and the time to
/// reject with the breaker open.
pub async fn isolation(env: &Env) -> anyhow::Result<Report> {
    let (vus, secs, warm) = if env.smoke { (4, 1, 500) } else { (20, 15, 3000) };
    let duration = Duration::from_secs(secs);
    let home = Target::post(env.graphql(), &home_body());
    let healthy = load::closed_loop(&home, vus, duration).await;
    let artwork = env.backends.url("artwork").to_owned();
    let client = reqwest::Client::new();
    client.post(format!("{artwork}/_demo/faults")).json(&json!({"hang": true})).send().await?;
    // Warm-up: the first calls wait out their 1 s timeouts until the breaker opens.
    load::closed_loop(&home, vus, Duration::from_millis(warm)).await;
    let hung = load::closed_loop(&home, vus, duration).await;
    let one = Duration::from_millis(if env.smoke { 300 } else { 3000 });
    let open = load::closed_loop(
        &Target::post(env.graphql(), &json!({"query": "{ title(id: 7) { name artwork { url } } }"})),
        1,
        one,
    )
    .await;
    client.post(format!("{artwork}/_demo/faults")).json(&json!({})).send().await?;
    let closed = load::closed_loop(
        &Target::post(env.graphql(), &json!({"query": "{ title(id: 7) { name artwork { url } } }"})),
        1,
        one,
    )
    .await;
    let ratio = hung.p99_ms / healthy.p99_ms;
    let table = format!(
        "Home query, closed loop, {vus} users, {secs} s each:\n\n| run | RPS | p50 ms | p99 ms |\n|---|---:|---:|---:|\n\
         | all backends healthy | {:.0} | {:.1} | {:.1} |\n| artwork hanging (breaker open after warm-up) | {:.0} | {:.1} | {:.1} |\n\n\
         Isolation ratio p99(hanging) / p99(healthy) = **{ratio:.2}** (goal ≤ 1.2).\n\n\
         Time to reject: `{{ title(id: 7) {{ name artwork {{ url }} }} }}` takes p50 {:.3} ms with artwork's breaker open \
         vs {:.3} ms with artwork healthy (one user).",
        healthy.rps,
        healthy.p50_ms,
        healthy.p99_ms,
        hung.rps,
        hung.p50_ms,
        hung.p99_ms,
        open.p50_ms,
        closed.p50_ms
    );
    Ok(Report {
        name: "isolation",
        table,
        figures: json!({"healthy": healthy, "hanging": hung, "ratio": ratio, "open_p50_ms": open.p50_ms, "closed_p50_ms": closed.p50_ms}),
    })
}

/// Scenario 7: a device call by endpoint ID (`/v1/tv/home`) against posting the same query
/// text to `/graphql`, one user, then 20 users.
pub async fn by_id(env: &Env) -> anyhow::Result<Report> {
    let client = reqwest::Client::new();
    let admin =
        |path: &str| client.post(format!("{}/admin/v1{path}", env.facade_url)).bearer_auth(BENCH_TOKEN);
    let _ = admin("/clients").json(&json!({"name": "tv", "team": "tv-team"})).send().await?;
    let published =
        admin("/clients/tv/endpoints/home/versions").json(&json!({"document": HOME})).send().await?;
    anyhow::ensure!(published.status().is_success(), "publish failed: {}", published.text().await?);
    let by_id = Target::get(format!("{}/v1/tv/home?profileId=1", env.facade_url));
    let by_text = Target::post(env.graphql(), &home_body());
    let (one, many) = if env.smoke {
        (Duration::from_millis(300), Duration::from_millis(300))
    } else {
        (Duration::from_secs(5), Duration::from_secs(10))
    };
    let id1 = load::closed_loop(&by_id, 1, one).await;
    let text1 = load::closed_loop(&by_text, 1, one).await;
    let id20 = load::closed_loop(&by_id, 20, many).await;
    let text20 = load::closed_loop(&by_text, 20, many).await;
    let table = format!(
        "| request | users | RPS | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|\n\
         | `GET /v1/tv/home?profileId=1` (by ID) | 1 | {:.0} | {:.2} | {:.2} |\n| `POST /graphql` (query text) | 1 | {:.0} | {:.2} | {:.2} |\n\
         | by ID | 20 | {:.0} | {:.1} | {:.1} |\n| query text | 20 | {:.0} | {:.1} | {:.1} |\n\n\
         By ID adds {:+.3} ms at p50 with one user ({:.2}× the query-text latency).",
        id1.rps,
        id1.p50_ms,
        id1.p99_ms,
        text1.rps,
        text1.p50_ms,
        text1.p99_ms,
        id20.rps,
        id20.p50_ms,
        id20.p99_ms,
        text20.rps,
        text20.p50_ms,
        text20.p99_ms,
        id1.p50_ms - text1.p50_ms,
        id1.p50_ms / text1.p50_ms
    );
    Ok(Report {
        name: "by-id",
        table,
        figures: json!({"by_id": id1, "by_text": text1, "by_id_20": id20, "by_text_20": text20}),
    })
}

const TV_TRANSFORM: &str = include_str!("../../resolvers-js/endpoints/tv/home.ts");

/// Scenario 8: transforms. Where a transform call's time goes, phase by phase, through the
/// pool as it runs (worker processes; module loaded from bytecode, or compiled from source),
/// the ways data can cross into a realm and back, how fast a runaway call is stopped, and the
/// transform's share of a device request (same document published with and without it).
pub async fn scripts(env: &Env) -> anyhow::Result<Report> {
    use facade::scripts::{Phases, Script, ScriptLimits, ScriptPool, WorkerProgram};
    let n = if env.smoke { 5 } else { 300 };
    let client = reqwest::Client::new();
    let admin =
        |path: &str| client.post(format!("{}/admin/v1{path}", env.facade_url)).bearer_auth(BENCH_TOKEN);
    let _ = admin("/clients").json(&json!({"name": "tv", "team": "tv-team"})).send().await?;
    for (name, script) in [("plain", None), ("shaped", Some(TV_TRANSFORM))] {
        let r = admin(&format!("/clients/tv/endpoints/{name}/versions"))
            .json(&json!({"document": HOME, "script": script}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "publish {name}: {}", r.text().await?);
    }
    let result: Value = client.post(env.graphql()).json(&home_body()).send().await?.json().await?;
    let data = result["data"].to_string();
    let ctx = json!({"variables": {"profileId": "1"}, "client": "tv", "endpoint": "home", "version": 1, "canary": false, "errors": null, "device": {"id": null, "headers": {}}}).to_string();

    // One worker (this binary answers to `script-worker`), calls one after another.
    let pool = ScriptPool::with_program(WorkerProgram::this_executable()?, 1, ScriptLimits::default())?;
    let compiled = Script::new("tv/home", TV_TRANSFORM);
    pool.check(&compiled, None).await?;
    anyhow::ensure!(compiled.compiled(), "the check did not compile the transform");
    let mut sums = [Phases::default(); 2];
    let mut walls = [0.0; 2];
    for _ in 0..n {
        for (k, fresh) in [false, true].into_iter().enumerate() {
            // A script never compiled is sent as source and compiled in the call's realm.
            let script = if fresh { Script::new("tv/home", TV_TRANSFORM) } else { compiled.clone() };
            let t0 = Instant::now();
            let out = pool.transform(&script, data.clone().into_bytes(), ctx.clone().into_bytes()).await?;
            walls[k] += t0.elapsed().as_secs_f64() * 1e6 / f64::from(n);
            let (p, s) = (&out.phases, &mut sums[k]);
            s.queue_wait += p.queue_wait;
            s.hand_off += p.hand_off;
            s.realm += p.realm;
            s.load += p.load;
            s.data_in += p.data_in;
            s.run += p.run;
            s.data_out += p.data_out;
            s.worker_cpu += p.worker_cpu;
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    let row = |name: &str, f: &dyn Fn(&Phases) -> Duration| {
        format!("| {name} | {:.0} | {:.0} |\n", us(f(&sums[0])), us(f(&sums[1])))
    };
    let phases_table = [
        row("queue wait", &|p| p.queue_wait),
        row("hand-off (frames, socket, both ways)", &|p| p.hand_off),
        row("realm (made while the worker waited)", &|p| p.realm),
        row("load bytecode / compile source, evaluate the module", &|p| p.load),
        row("data in (34 KiB of JSON to QuickJS values)", &|p| p.data_in),
        row("the script's own run", &|p| p.run),
        row("result out (QuickJS values to JSON)", &|p| p.data_out),
        row("**worker CPU per call** (everything the worker did for it)", &|p| p.worker_cpu),
    ]
    .concat();

    let mut stops = Vec::new();
    for body in
        ["while (true) {}", "const h = 'a'.repeat(2 ** 19); return h.indexOf('a'.repeat(2 ** 18) + 'b');"]
    {
        let runaway = Script::new("runaway.js", &format!("export default function () {{ {body} }}"));
        let mut worst: f64 = 0.0;
        for _ in 0..if env.smoke { 2 } else { 10 } {
            let t0 = Instant::now();
            let stopped = pool.transform(&runaway, b"{}".to_vec(), b"{}".to_vec()).await;
            anyhow::ensure!(stopped.is_err(), "{body} was not stopped");
            worst = worst.max(ms(t0.elapsed()));
        }
        stops.push(worst);
    }
    let micro = {
        let (data, ctx) = (data.clone(), ctx.clone());
        tokio::task::spawn_blocking(move || crate::js_micro::measure(&data, &ctx, TV_TRANSFORM, n)).await??
    };

    let one = if env.smoke { Duration::from_millis(300) } else { Duration::from_secs(5) };
    let plain =
        load::closed_loop(&Target::get(format!("{}/v1/tv/plain?profileId=1", env.facade_url)), 1, one).await;
    let shaped =
        load::closed_loop(&Target::get(format!("{}/v1/tv/shaped?profileId=1", env.facade_url)), 1, one).await;
    let added = shaped.p50_ms - plain.p50_ms;
    let table = format!(
        "Home payload: {} KiB of JSON in, the tv/home transform (`resolvers-js/endpoints/tv/home.ts`).\n\n\
         Through the pool as it runs (one worker process, calls one after another), µs per call:\n\n\
         | phase | bytecode (as served) | source (compiled per call) |\n|---|---:|---:|\n{phases_table}\
         | whole call as the caller sees it | {:.0} | {:.0} |\n\n\
         The ways data can cross, a fresh realm and a compile per call, µs per call (one runtime, in-process):\n\n\
         | data in / result out | µs per call | vs JSON text both ways |\n|---|---:|---:|\n\
         | `JSON.parse` / `JSON.stringify` (before) | {:.0} | 1.00 |\n\
         | serde_json building values / `JSON.stringify` | {:.0} | {:.2} |\n\
         | `JSON.parse` / the Rust walk | {:.0} | {:.2} |\n\
         | **serde_json building values / the Rust walk** (workers) | {:.0} | {:.2} |\n\
         | of a call: the realm alone | {:.0} | |\n\
         | of a call: compiling and evaluating the module | {:.0} | |\n\n\
         Device request, one user, {:.0} s each: without transform p50 {:.2} ms, with it {:.2} ms: the transform adds \
         {added:.2} ms, **{:.0} %** of the request.\n\n\
         Runaway calls, default 50 ms deadline (CPU time), the worst of {} runs each: `while (true) {{}}` \
         (stopped by the interrupt handler) answered after {:.1} ms; a native `indexOf` on 512 KiB \
         (stopped by the worker's watchdog, the worker replaced) after {:.1} ms.",
        data.len() / 1024,
        walls[0],
        walls[1],
        micro.text_text,
        micro.built_text,
        micro.built_text / micro.text_text,
        micro.text_walked,
        micro.text_walked / micro.text_text,
        micro.built_walked,
        micro.built_walked / micro.text_text,
        micro.realm,
        micro.compile,
        one.as_secs_f64(),
        plain.p50_ms,
        shaped.p50_ms,
        100.0 * added.max(0.0) / shaped.p50_ms,
        if env.smoke { 2 } else { 10 },
        stops[0],
        stops[1],
    );
    let phase_json = |p: &Phases| {
        let mut v = p.to_json();
        for (_, x) in v.as_object_mut().into_iter().flatten() {
            *x = json!(x.as_f64().unwrap_or(0.0) / f64::from(n));
        }
        v
    };
    Ok(Report {
        name: "scripts",
        table,
        figures: json!({"bytecode_us": walls[0], "source_us": walls[1],
                        "phases_bytecode": phase_json(&sums[0]), "phases_source": phase_json(&sums[1]),
                        "text_text_us": micro.text_text, "built_text_us": micro.built_text,
                        "text_walked_us": micro.text_walked, "built_walked_us": micro.built_walked,
                        "realm_us": micro.realm, "compile_us": micro.compile,
                        "plain": plain, "shaped": shaped, "payload_bytes": data.len(),
                        "spin_stop_max_ms": stops[0], "native_stop_max_ms": stops[1]}),
    })
}

/// Scenario: a schema reload with many stored endpoint versions. 1,000 endpoints, each a
/// distinct home-screen document (the largest sample), are published to a Facade whose
/// schema folder then gains and loses a field, alternately; each reload builds the engine,
/// diffs it, checks every live version's usage and recompiles all of them before the swap.
pub async fn reload(env: &Env) -> anyhow::Result<Report> {
    let versions = if env.smoke { 20 } else { 1_000 };
    let dir = std::env::temp_dir().join(format!("facade-bench-schema-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    for entry in std::fs::read_dir(&schema)? {
        let path = entry?.path();
        std::fs::copy(&path, dir.join(path.file_name().expect("a file")))?;
    }
    let file = dir.join("facade.graphql");
    let original = std::fs::read_to_string(&file)?;
    let proc = start_facade_with(
        &env.backends,
        None,
        env.smoke,
        "-reload",
        &[
            ("FACADE_SCHEMA_DIR", dir.display().to_string()),
            ("FACADE_SCHEMA__WATCH", "false".to_owned()),
            // One team publishes them all: past the default quota of endpoints per team.
            ("FACADE_LIMITS__MAX_ENDPOINTS_PER_TEAM", (versions + 10).to_string()),
        ],
    )?;
    let url = procs::server_url(&proc)?;
    let client = reqwest::Client::new();
    let admin = |path: &str| client.post(format!("{url}/admin/v1{path}")).bearer_auth(BENCH_TOKEN);
    let _ = admin("/clients").json(&json!({"name": "bench", "team": "bench"})).send().await?;
    let started = Instant::now();
    for i in 0..versions {
        // A comment makes each document (and so each version) distinct.
        let document = format!("# endpoint {i}\n{HOME}");
        let r = admin(&format!("/clients/bench/endpoints/e{i}/versions"))
            .json(&json!({"document": document}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "publish {i} failed: {}", r.text().await?);
    }
    let publish_ms = ms(started.elapsed());
    let extra = "\nextend type Title { benchExtra: String }\n";
    let mut server_ms = Vec::new();
    let mut client_ms = Vec::new();
    let mut checked = 0;
    let rounds = if env.smoke { 2 } else { 6 };
    for round in 0..rounds {
        let text = if round % 2 == 0 { format!("{original}{extra}") } else { original.clone() };
        std::fs::write(&file, text)?;
        let t = Instant::now();
        let r = admin("/schema/reload").json(&json!({})).send().await?;
        client_ms.push(ms(t.elapsed()));
        let attempt: Value = r.json().await?;
        anyhow::ensure!(attempt["result"] == "applied", "reload {round}: {attempt}");
        server_ms.push(attempt["tookMs"].as_f64().unwrap_or(0.0));
        checked = attempt["versionsChecked"].as_u64().unwrap_or(0);
    }
    let rss = proc.peak_rss_kib().map(|k| k as f64 / 1024.0);
    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
    let table = format!(
        "| stored endpoint versions (live) | reload, server (p50 of {rounds}) | reload, as the admin sees it (p50) | publishing them all | peak RSS |\n\
         |---:|---:|---:|---:|---:|\n\
         | {checked} | {:.0} ms | {:.0} ms | {:.1} s | {} |",
        p50(server_ms.clone()),
        p50(client_ms.clone()),
        publish_ms / 1000.0,
        rss.map_or("-".to_owned(), |r| format!("{r:.0} MiB")),
    );
    Ok(Report {
        name: "reload",
        table,
        figures: json!({
            "versions": checked,
            "server_ms": server_ms,
            "client_ms": client_ms,
            "publish_ms": publish_ms,
            "peak_rss_mib": rss,
        }),
    })
}
