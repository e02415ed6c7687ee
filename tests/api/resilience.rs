//! The fault-injection suite end to end: real Facade, real demo backends over HTTP, faults
//! set through the demo knobs. Counts are asserted, never timings. (The breaker's state
//! machine is tested on a manual clock in `src/backends/breaker.rs`.)

use std::collections::BTreeSet;

use facade::config::{Config, PolicyOverrides};
use serde_json::{Value, json};

use crate::helpers::{TestApp, home_query, repo_path, spawn_with};

/// The config policy layer of one backend (`[backends.NAME]`).
fn backend<'a>(c: &'a mut Config, name: &str) -> &'a mut PolicyOverrides {
    c.limits.client_rate_per_sec = 1_000_000;
    c.limits.client_burst = 1_000_000;
    &mut c.backends.entry(name.to_owned()).or_default().policy
}

fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|e| e.iter().map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

async fn title(app: &TestApp, id: u32) -> Value {
    app.graphql(&format!("{{ title(id: {id}) {{ name }} }}"), json!({})).await
}

#[tokio::test]
async fn a_down_backend_opens_the_breaker_which_then_rejects_without_calling_out() {
    let app = spawn_with(|c| backend(c, "catalog").max_retries = Some(0)).await;
    app.set_faults("catalog", json!({"errorRate": 1.0})).await;
    let mut failures = 0;
    loop {
        let body = title(&app, 1 + failures).await;
        match codes(&body).as_slice() {
            [code] if code == "BACKEND_ERROR" => failures += 1,
            [code] if code == "CIRCUIT_OPEN" => break,
            other => panic!("unexpected errors {other:?}"),
        }
        assert!(failures <= 20, "the breaker must trip at 20 calls with 100 % failures");
    }
    assert_eq!(failures, 20);
    let (bodies, calls) = app
        .calls_during(async {
            let mut out = Vec::new();
            for id in 100..110 {
                out.push(title(&app, id).await);
            }
            out
        })
        .await;
    assert_eq!(calls["catalog"], 0, "an open breaker does not call out");
    for body in bodies {
        assert_eq!(codes(&body), ["CIRCUIT_OPEN"]);
        assert_eq!(body["data"]["title"], Value::Null);
    }
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    for family in [
        "facade_backend_calls_total",
        "facade_breaker_state",
        "facade_rejections_total",
        "facade_backend_request_duration_seconds",
    ] {
        assert!(metrics.contains(family), "/metrics lacks {family}");
    }
}

#[tokio::test]
async fn client_errors_are_neither_counted_nor_retried() {
    let app = spawn_with(|c| backend(c, "catalog").max_retries = Some(3)).await;
    app.set_faults("catalog", json!({"errorRate": 1.0, "errorStatus": 400})).await;
    let (bodies, calls) = app
        .calls_during(async {
            let mut out = Vec::new();
            for id in 1..=30 {
                out.push(title(&app, id).await);
            }
            out
        })
        .await;
    assert_eq!(calls["catalog"], 30, "one call each: a 4xx is not retried");
    assert!(bodies.iter().all(|b| codes(b) == ["BACKEND_ERROR"]), "30 x 4xx never open the breaker");
}

#[tokio::test]
async fn half_open_lets_exactly_one_trial_through_for_100_concurrent_callers() {
    let app = std::sync::Arc::new(
        spawn_with(|c| {
            let b = backend(c, "catalog");
            b.max_retries = Some(0);
            b.breaker_open_ms = Some(200);
        })
        .await,
    );
    app.set_faults("catalog", json!({"errorRate": 1.0})).await;
    for id in 1..=20 {
        title(&app, id).await;
    }
    // Healthy but slow: the trial is still in flight when the other 99 arrive.
    app.set_faults("catalog", json!({"latencyMs": 500})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (bodies, calls) = app
            .calls_during(futures_util::future::join_all((0..100).map(|i| {
                let app = app.clone();
                async move { title(&app, 1000 + i).await }
            })))
            .await;
        if calls["catalog"] > 0 {
            assert_eq!(calls["catalog"], 1, "exactly one trial while half-open");
            let ok = bodies.iter().filter(|b| b.get("errors").is_none()).count();
            let open = bodies.iter().filter(|b| codes(b) == ["CIRCUIT_OPEN"]).count();
            assert_eq!((ok, open), (1, 99));
            break;
        }
        assert!(bodies.iter().all(|b| codes(b) == ["CIRCUIT_OPEN"]));
        assert!(std::time::Instant::now() < deadline, "the breaker never went half-open");
    }
    // The trial succeeded: closed again, calls flow.
    let body = title(&app, 5).await;
    assert!(body.get("errors").is_none(), "{}", body["errors"]);
}

#[tokio::test]
async fn a_retry_storm_stays_within_the_retry_budget() {
    let app = spawn_with(|c| {
        let b = backend(c, "catalog");
        b.max_retries = Some(3);
        b.retry_floor_per_sec = Some(1); // 10 per 10 s window
        b.retry_ratio = Some(0.2);
        b.breaker_min_calls = Some(1_000_000); // keep the breaker out of this case
    })
    .await;
    app.set_faults("catalog", json!({"errorRate": 1.0})).await;
    let (_, calls) = app
        .calls_during(async {
            for id in 1..=100 {
                title(&app, id).await;
            }
        })
        .await;
    let retries = calls["catalog"] - 100;
    assert!(retries > 0, "reads are retried");
    assert!(retries <= 10 + 20, "{retries} retries: budget is 10 + 20 % of 100");
}

#[tokio::test]
async fn a_rate_limit_burst_admits_exactly_the_burst_and_429_retry_after_is_honoured() {
    let app = spawn_with(|c| {
        let b = backend(c, "catalog");
        b.rate_per_sec = Some(1);
        b.burst = Some(5);
        b.max_retries = Some(0);
    })
    .await;
    let query = format!(
        "{{ {} }}",
        (1..=8).map(|i| format!("t{i}: title(id: {i}) {{ id }}")).collect::<Vec<_>>().join(" ")
    );
    let (body, calls) = app.calls_during(app.graphql(&query, json!({}))).await;
    assert_eq!(calls["catalog"], 5);
    let mut limited = codes(&body);
    limited.sort();
    assert_eq!(limited, ["RATE_LIMITED"; 3]);

    let app = spawn_with(|c| backend(c, "catalog").max_retries = Some(0)).await;
    app.set_faults("catalog", json!({"failNext": 1, "errorStatus": 429, "retryAfterSecs": 60})).await;
    assert_eq!(codes(&title(&app, 1).await), ["BACKEND_ERROR"]);
    let (body, calls) = app.calls_during(title(&app, 2)).await;
    assert_eq!(calls["catalog"], 0, "no call before Retry-After has passed");
    assert_eq!(codes(&body), ["RATE_LIMITED"]);
}

#[tokio::test]
async fn a_failed_chunk_of_a_batch_errors_only_its_own_paths() {
    let app = spawn_with(|c| {
        let b = backend(c, "catalog");
        b.max_batch_size = Some(100);
        b.max_retries = Some(0);
    })
    .await;
    app.set_faults("catalog", json!({"failNext": 1})).await;
    let (body, calls) = app.calls_during(app.graphql(&home_query(), json!({"profileId": "1"}))).await;
    assert_eq!(calls["catalog"], 2, "198 keys in two chunks");
    let rows = body["data"]["profile"]["rows"].as_array().unwrap();
    let failed: BTreeSet<usize> = (0..rows.len()).filter(|i| rows[*i]["titles"].is_null()).collect();
    assert!(!failed.is_empty() && failed.len() < rows.len(), "one chunk failed, one did not: {failed:?}");
    let errors = body["errors"].as_array().unwrap();
    let paths: BTreeSet<usize> = errors
        .iter()
        .map(|e| {
            let p = e["path"].as_array().unwrap();
            assert_eq!(p.len(), 4, "{e}");
            assert_eq!(p[3], "titles");
            p[2].as_u64().unwrap() as usize
        })
        .collect();
    assert_eq!(paths, failed, "an error exactly for each row that lost its titles");
    for (i, row) in rows.iter().enumerate() {
        if !failed.contains(&i) {
            assert!(row["titles"].as_array().unwrap().iter().all(|t| t["artwork"]["url"].is_string()));
        }
    }
}

fn extended_schema() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo_path("schema/facade.graphql"), dir.path().join("facade.graphql")).unwrap();
    std::fs::write(
        dir.path().join("extra.graphql"),
        r#"
extend type Title {
  ratingOrZero: Rating
    @http(backend: "ratings", batch: "POST /ratings/batch", keys: "$parent.id", match: "titleId")
    @fallback(value: {titleId: "0", average: 0})
  ratingBroken: Float
    @http(backend: "ratings", batch: "POST /ratings/batch", keys: "$parent.id", match: "titleId", select: "average")
    @fallback(value: "n/a")
  grid: [[Int!]]
    @http(backend: "ratings", get: "/ratings/{$parent.id}") @fallback(value: [[1, 2], [], [3]])
  gridBroken: [[Int!]!]
    @http(backend: "ratings", get: "/ratings/{$parent.id}") @fallback(value: [[1, null]])
}
extend type Mutation {
  rate(titleId: ID!, stars: Int!): Rating @http(backend: "ratings", post: "/ratings/batch")
}
"#,
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn fallbacks_serve_a_default_and_a_fallback_that_does_not_fit_is_an_error() {
    let dir = extended_schema();
    let app = spawn_with(|c| c.schema_dir = dir.path().to_owned()).await;
    app.set_faults("ratings", json!({"errorRate": 1.0})).await;
    let body =
        app.graphql("{ title(id: 3) { name ratingOrZero { average } ratingBroken } }", json!({})).await;
    assert_eq!(body["data"]["title"]["ratingOrZero"], json!({"average": 0.0}));
    assert_eq!(body["data"]["title"]["ratingBroken"], Value::Null);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "the fitting fallback hides its failure: {errors:?}");
    assert_eq!(errors[0]["path"], json!(["title", "ratingBroken"]));
    assert!(errors[0]["message"].as_str().unwrap().contains("@fallback value does not fit"), "{}", errors[0]);
}

#[tokio::test]
async fn lists_of_lists_are_projected_level_by_level() {
    let dir = extended_schema();
    let app = spawn_with(|c| c.schema_dir = dir.path().to_owned()).await;
    app.set_faults("ratings", json!({"errorRate": 1.0, "errorStatus": 403})).await;
    let body = app.graphql("{ title(id: 3) { grid gridBroken } }", json!({})).await;
    assert_eq!(body["data"]["title"]["grid"], json!([[1, 2], [], [3]]), "{body}");
    // A null item where [Int!]! allows none: the fallback does not fit; the field's error.
    assert_eq!(body["data"]["title"]["gridBroken"], Value::Null);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["title", "gridBroken"]));
    assert!(errors[0]["message"].as_str().unwrap().contains("does not fit"), "{body}");
}

#[tokio::test]
async fn a_mutation_is_never_retried() {
    let dir = extended_schema();
    let app = spawn_with(|c| {
        c.schema_dir = dir.path().to_owned();
        backend(c, "ratings").max_retries = Some(3);
    })
    .await;
    app.set_faults("ratings", json!({"errorRate": 1.0})).await;
    let (body, calls) =
        app.calls_during(app.graphql("mutation { rate(titleId: 1, stars: 5) { average } }", json!({}))).await;
    assert_eq!(calls["ratings"], 1);
    assert_eq!(codes(&body), ["BACKEND_ERROR"]);
}

#[tokio::test]
async fn the_request_deadline_returns_partial_data_while_a_backend_hangs() {
    let app = spawn_with(|c| {
        c.engine.request_timeout_ms = 300;
        backend(c, "artwork").timeout_ms = Some(60_000);
    })
    .await;
    app.set_faults("artwork", json!({"hang": true})).await;
    let body = app.graphql(&home_query(), json!({"profileId": "1"})).await;
    app.set_faults("artwork", json!({})).await;
    let rows = body["data"]["profile"]["rows"].as_array().unwrap();
    let titles: Vec<&Value> = rows.iter().flat_map(|r| r["titles"].as_array().unwrap()).collect();
    assert_eq!(titles.len(), 200);
    assert!(titles.iter().all(|t| t["artwork"].is_null() && t["rating"]["average"].is_number()));
    assert!(codes(&body).iter().all(|c| c == "TIMEOUT") && !codes(&body).is_empty());
}

#[tokio::test]
async fn the_door_limits_a_device_with_429_and_retry_after() {
    let app = spawn_with(|c| {
        c.limits.device_rate_per_sec = 1;
        c.limits.device_burst = 3;
    })
    .await;
    let send = |device: &'static str| {
        app.client
            .post(format!("{}/graphql", app.base))
            .header("x-device-id", device)
            .json(&json!({"query": "{ title(id: 1) { id } }"}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(send("tv-1").await.unwrap().status(), 200);
    }
    let refused = send("tv-1").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(send("tv-2").await.unwrap().status(), 200, "other devices are not affected");
}

#[tokio::test]
async fn operation_limits_refuse_costly_or_wide_queries_with_a_reason() {
    let app = spawn_with(|c| {
        c.limits.max_aliases = 3;
        c.limits.max_cost = 1_000;
    })
    .await;
    let post = |query: String| {
        app.client
            .post(format!("{}/graphql", app.base))
            .header("accept", "application/graphql-response+json")
            .json(&json!({"query": query, "variables": {"profileId": "1"}}))
            .send()
    };
    let aliases = format!(
        "{{ {} }}",
        (1..=4).map(|i| format!("a{i}: title(id: {i}) {{ id }}")).collect::<Vec<_>>().join(" ")
    );
    let r = post(aliases).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("4 aliases; the limit is 3"));
    let r = post(home_query()).await.unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("estimated cost") && text.contains("the limit is 1000"), "{text}");
}

#[tokio::test]
async fn a_full_bulkhead_rejects_at_once_instead_of_queueing() {
    let app = spawn_with(|c| {
        let b = backend(c, "catalog");
        b.max_concurrent = Some(2);
        b.max_retries = Some(0);
    })
    .await;
    app.set_faults("catalog", json!({"latencyMs": 200})).await;
    let query = format!(
        "{{ {} }}",
        (1..=5).map(|i| format!("t{i}: title(id: {i}) {{ id }}")).collect::<Vec<_>>().join(" ")
    );
    let (body, calls) = app.calls_during(app.graphql(&query, json!({}))).await;
    assert_eq!(calls["catalog"], 2, "two in flight, the other three refused");
    let mut full = codes(&body);
    full.sort();
    assert_eq!(full, ["BULKHEAD_FULL"; 3]);
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("bulkhead full (2 calls in flight)"), "{message}");
}

/// Hostile and careless input against this feature (the security probes' cases): each gets a
/// clear answer, the server keeps serving, and no other tenant or device is affected.
mod hostile_input {

    /// Probe 2, M4: a flood of calls to endpoints that do not exist spends its own budget, not
    /// the client's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_unknown_endpoints_does_not_429_real_devices() {
        let app = crate::endpoints::app_on_with(None, |c| {
            c.limits.client_rate_per_sec = 1;
            c.limits.client_burst = 30;
        })
        .await;
        let mut refused = 0;
        for i in 0..60 {
            let r = app.client.get(format!("{}/v1/tv/nope{i}", app.base)).send().await.unwrap();
            match r.status().as_u16() {
                404 => {}
                429 => refused += 1,
                other => panic!("{other}"),
            }
        }
        assert!(refused >= 25, "unknown endpoints have a budget and it runs out ({refused} refused)");
        for profile in 1..=20 {
            let r =
                app.client.get(format!("{}/v1/tv/home?profileId={profile}", app.base)).send().await.unwrap();
            assert_eq!(r.status(), 200, "a real tv call after the flood");
        }
    }
}
