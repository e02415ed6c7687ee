//! `facade-bench chaos`: devices calling the tv/home endpoint by ID (with its transform) and
//! ad-hoc home queries at once, for `--chaos-secs` (600 by default, after a warm-up of
//! `--chaos-warmup-secs` that counts nothing: one cycle of the faults), while a fault moves
//! across the demo backends every 20 s: errors (half the calls answer 500), latency (300 ms
//! and up to 200 ms more), a hang (calls wait until the fault moves on), an outage (every
//! call answers 503). Reports answers by status, errors by code, breaker transitions seen
//! (sampled each second from `/metrics`), Facade's RSS every 10 s, and whether it held: no
//! 5xx on the device path other than a deadline's (504), the RSS of the last minute within
//! 10 % of the second minute's, the server alive at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::scenarios::{BENCH_TOKEN, Env, Report};

/// How long one fault stays on one backend.
const SLOT: Duration = Duration::from_secs(20);
/// Closed-loop users: devices by ID, and ad-hoc queries.
const DEVICES: usize = 16;
const ADHOC: usize = 8;

#[derive(Default)]
struct Tally {
    /// (path, status) → answers.
    statuses: BTreeMap<(&'static str, u16), u64>,
    /// (path, error code) → errors.
    codes: BTreeMap<(&'static str, String), u64>,
    /// Requests that got no answer within 30 s, or no connection.
    failed: BTreeMap<&'static str, u64>,
}

/// The faults, in the order they move.
fn faults() -> [(&'static str, Value); 4] {
    [
        ("errors", json!({ "errorRate": 0.5 })),
        ("latency", json!({ "latencyMs": 300, "jitterMs": 200 })),
        ("hang", json!({ "hang": true })),
        ("outage", json!({ "errorRate": 1.0, "errorStatus": 503 })),
    ]
}

pub async fn chaos(env: &Env, secs: u64, warmup: u64) -> anyhow::Result<Report> {
    let (secs, warmup) = if env.smoke { (6, 0) } else { (secs.max(60), warmup) };
    // A Facade of its own whose door lets the load through: the figures are the engine's and
    // the backends' faults', not the rate limits'.
    let open = "1000000".to_owned();
    let door = [
        ("FACADE_LIMITS__CLIENT_RATE_PER_SEC", open.clone()),
        ("FACADE_LIMITS__CLIENT_BURST", open.clone()),
        ("FACADE_LIMITS__DEVICE_RATE_PER_SEC", open.clone()),
        ("FACADE_LIMITS__DEVICE_BURST", open),
    ];
    let facade = crate::scenarios::start_facade_with(&env.backends, None, env.smoke, "-chaos", &door)?;
    let base = crate::procs::server_url(&facade)?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let admin = |path: &str| client.post(format!("{base}/admin/v1{path}")).bearer_auth(BENCH_TOKEN);
    let _ = admin("/clients").json(&json!({ "name": "tv", "team": "tv-team" })).send().await?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("resolvers-js/endpoints/tv");
    let document = std::fs::read_to_string(root.join("home.graphql"))?;
    let script = std::fs::read_to_string(root.join("home.ts"))?;
    let published = admin("/clients/tv/endpoints/home/versions")
        .json(&json!({ "document": document, "script": script }))
        .send()
        .await?;
    anyhow::ensure!(published.status().is_success(), "publish failed: {}", published.text().await?);

    let tally = Arc::new(Mutex::new(Tally::default()));
    let end = Instant::now() + Duration::from_secs(warmup + secs);
    let mut users = Vec::new();
    for user in 0..DEVICES + ADHOC {
        let (client, tally, base) = (client.clone(), tally.clone(), base.clone());
        let query = json!({ "query": document });
        users.push(tokio::spawn(async move {
            let mut n = user as u64;
            while Instant::now() < end {
                n += 7;
                let profile = n % 1000 + 1;
                let (path, request) = if user < DEVICES {
                    let device = format!("chaos-{user}-{}", n % 100);
                    let url = format!("{base}/v1/tv/home?profileId={profile}");
                    ("device", client.get(url).header("x-device-id", device))
                } else {
                    let mut body = query.clone();
                    body["variables"] = json!({ "profileId": profile.to_string() });
                    ("adhoc", client.post(format!("{base}/graphql")).json(&body))
                };
                let answer = match request.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        Some((status, r.json::<Value>().await.unwrap_or(Value::Null)))
                    }
                    Err(_) => None,
                };
                let mut t = tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match answer {
                    Some((status, body)) => {
                        *t.statuses.entry((path, status)).or_default() += 1;
                        let errors = body["errors"].as_array().cloned().unwrap_or_default();
                        for e in errors {
                            let code = e["extensions"]["code"].as_str().unwrap_or("(none)").to_owned();
                            *t.codes.entry((path, code)).or_default() += 1;
                        }
                    }
                    None => *t.failed.entry(path).or_default() += 1,
                }
            }
        }));
    }

    // The fault moves; breakers and RSS are sampled meanwhile.
    let names: Vec<String> = env.backends.urls.iter().map(|(n, _)| n.clone()).collect();
    let mut schedule = Vec::new();
    let mut breakers: BTreeMap<String, String> = BTreeMap::new();
    let mut transitions: BTreeMap<String, u64> = BTreeMap::new();
    let mut rss = Vec::new();
    let started = Instant::now();
    let mut slot = 0usize;
    let mut current: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    let mut measuring = false;
    while Instant::now() < end {
        tick.tick().await;
        let elapsed = started.elapsed();
        if !measuring && elapsed.as_secs() >= warmup {
            // The warm-up (faults and load as measured, one full cycle by default) ends:
            // nothing of it is counted.
            measuring = true;
            ticks = 0;
            transitions.clear();
            *tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Tally::default();
        }
        ticks += 1;
        if current.is_none() || elapsed >= SLOT * slot as u32 {
            if let Some(previous) = current.take() {
                set_faults(&client, env.backends.url(&previous), &json!({})).await;
            }
            let backend = names[slot % names.len()].clone();
            let (kind, fault) = &faults()[(slot / names.len()) % 4];
            set_faults(&client, env.backends.url(&backend), fault).await;
            schedule.push(format!("{}s {backend} {kind}", elapsed.as_secs()));
            current = Some(backend);
            slot += 1;
        }
        if let Ok(metrics) = client.get(format!("{base}/metrics")).send().await
            && let Ok(text) = metrics.text().await
        {
            for line in text.lines().filter(|l| l.starts_with("facade_breaker_state{") && l.ends_with(" 1")) {
                let label = |key: &str| {
                    line.split(&format!("{key}=\""))
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("")
                        .to_owned()
                };
                let (backend, state) = (label("backend"), label("state"));
                let before = breakers.insert(backend.clone(), state.clone());
                if measuring && before.is_some_and(|b| b != state) {
                    *transitions.entry(format!("{backend} → {state}")).or_default() += 1;
                }
            }
        }
        if measuring && ticks % 10 == 1 {
            rss.push((elapsed.as_secs() - warmup, rss_kib(facade.pid()).unwrap_or(0)));
        }
    }
    if let Some(previous) = current.take() {
        set_faults(&client, env.backends.url(&previous), &json!({})).await;
    }
    for u in users {
        let _ = u.await;
    }
    let alive = client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200);

    let t = tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let device_5xx: u64 = t
        .statuses
        .iter()
        .filter(|((p, s), _)| *p == "device" && *s >= 500 && *s != 504)
        .map(|(_, n)| n)
        .sum();
    let mean = |from: u64, to: u64| {
        let v: Vec<u64> = rss.iter().filter(|(s, _)| (from..to).contains(s)).map(|(_, k)| *k).collect();
        v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
    };
    let (second, last) = (mean(60, 120), mean(secs.saturating_sub(60), secs + 1));
    let flat = second == 0.0 || (last - second).abs() <= second * 0.10;
    let mut table = String::from("| path | status | answers |\n|---|---:|---:|\n");
    for ((p, s), n) in &t.statuses {
        table.push_str(&format!("| {p} | {s} | {n} |\n"));
    }
    for (p, n) in &t.failed {
        table.push_str(&format!("| {p} | no answer in 30 s | {n} |\n"));
    }
    table.push_str("\n| path | error code | errors |\n|---|---|---:|\n");
    for ((p, c), n) in &t.codes {
        table.push_str(&format!("| {p} | {c} | {n} |\n"));
    }
    table.push_str("\n| breaker transition (1 s samples) | times |\n|---|---:|\n");
    for (k, n) in &transitions {
        table.push_str(&format!("| {k} | {n} |\n"));
    }
    table.push_str(&format!(
        "\nFacade RSS every 10 s (MiB): {}\n\nFaults: {}\n\n\
         Device 5xx other than 504: **{device_5xx}**; RSS second minute {:.1} MiB, last minute {:.1} MiB ({}); server alive at the end: **{alive}**.",
        rss.iter().map(|(_, k)| format!("{:.0}", *k as f64 / 1024.0)).collect::<Vec<_>>().join(" "),
        schedule.join(", "),
        second / 1024.0,
        last / 1024.0,
        if flat { "flat: within 10 %" } else { "NOT flat" },
    ));
    let figures = json!({
        "secs": secs,
        "warmupSecs": warmup,
        "statuses": t.statuses.iter().map(|((p, s), n)| json!({"path": p, "status": s, "answers": n})).collect::<Vec<_>>(),
        "codes": t.codes.iter().map(|((p, c), n)| json!({"path": p, "code": c, "errors": n})).collect::<Vec<_>>(),
        "noAnswer": t.failed.iter().map(|(p, n)| json!({"path": p, "requests": n})).collect::<Vec<_>>(),
        "breakerTransitions": transitions,
        "rssKib": rss,
        "device5xxNot504": device_5xx,
        "rssFlat": flat,
        "alive": alive,
    });
    Ok(Report { name: "chaos", table, figures })
}

/// Sets one demo backend's faults (`{}`: none); a failure to reach it shows in the answers.
async fn set_faults(client: &reqwest::Client, backend_url: &str, faults: &Value) {
    let _ = client.post(format!("{backend_url}/_demo/faults")).json(faults).send().await;
}

/// Resident set size now (VmRSS), in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}
