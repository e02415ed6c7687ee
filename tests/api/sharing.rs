//! Identical reads in flight at the same moment are made once and their answer handed to every
//! request waiting (issue: federation, item 4); never a mutation's call, and off per backend.
//! A demo backend that hangs holds the first call in flight while the second request arrives:
//! the test waits for what it can see (the backend's request count, the ops stream), never
//! for a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::endpoints::{Admin, app_on_with};
use crate::helpers::TestApp;

const ADMIN: &str = "fcd_admin_for_tests";
/// One catalog call: a single GET.
const QUERY: &str = r#"{ title(id: "3") { id name } }"#;
/// One catalog call, a batch (after the members and lists calls).
const BATCH_QUERY: &str = r#"{ profile(id: "1") { rows(first: 1) { titles(first: 3) { id name } } } }"#;

/// A demo app whose catalog and ratings wait as long as a test holds them hanging.
async fn patient_app() -> Arc<TestApp> {
    Arc::new(
        app_on_with(None, |c| {
            c.engine.request_timeout_ms = 120_000;
            for name in ["catalog", "ratings"] {
                c.backends.entry(name.to_owned()).or_default().policy.timeout_ms = Some(120_000);
            }
        })
        .await,
    )
}

/// Polls the demo backends until `backend` has served `want` requests (or the deadline).
async fn until_calls(app: &TestApp, backend: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let calls = app.backend_calls().await[backend];
        assert!(calls <= want, "{backend} served {calls} requests, expected {want}");
        if calls == want {
            return;
        }
        assert!(Instant::now() < deadline, "{backend} served {calls} requests, never {want}");
        tokio::task::yield_now().await;
    }
}

fn send(app: &Arc<TestApp>, query: &'static str, variables: Value) -> tokio::task::JoinHandle<Value> {
    let app = app.clone();
    tokio::spawn(async move { app.graphql(query, variables).await })
}

/// Two identical requests, the second sent while the first one's catalog call hangs: one
/// catalog call in all, one answer for both, the join seen in the ops stream.
async fn one_call_for_two(app: &Arc<TestApp>, query: &'static str, joins_before: u64) -> Value {
    let before = app.backend_calls().await["catalog"];
    app.set_faults("catalog", json!({ "hang": true })).await;
    let first = send(app, query, json!({}));
    until_calls(app, "catalog", before + 1).await;
    let second = send(app, query, json!({}));
    // The ops stream's rate is over the last 10 s: n joins read n/10 a second.
    let mut stream = crate::ops::open(app, ADMIN).await;
    let mut buffer = String::new();
    crate::ops::until(&mut stream, &mut buffer, |s| {
        s["backends"].as_array().unwrap().iter().any(|b| {
            b["name"] == "catalog"
                && (b["sharedPerSec"].as_f64().unwrap() * 10.0).round() as u64 > joins_before
        })
    })
    .await;
    drop(stream);
    app.set_faults("catalog", json!({})).await;
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert!(a.get("errors").is_none(), "{a}");
    assert_eq!(a, b, "one answer for both");
    assert_eq!(app.backend_calls().await["catalog"], before + 1, "one call for both");
    // Ended: the same read later is a call of its own.
    let (_, calls) = app.calls_during(app.graphql(query, json!({}))).await;
    assert_eq!(calls["catalog"], 1);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identical_reads_in_flight_cost_one_call_and_are_counted() {
    let app = patient_app().await;
    let single = one_call_for_two(&app, QUERY, 0).await;
    assert_eq!(single["data"]["title"]["id"], "3", "{single}");
    let batch = one_call_for_two(&app, BATCH_QUERY, 1).await;
    assert_eq!(batch["data"]["profile"]["rows"][0]["titles"].as_array().unwrap().len(), 3, "{batch}");
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let shared = metrics
        .lines()
        .find(|l| l.starts_with("facade_backend_shared_calls_total{backend=\"catalog\"}"))
        .unwrap_or_else(|| panic!("no shared-call counter in /metrics"));
    let n: f64 = shared.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2.0, "{shared}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_and_backends_that_opt_out_make_every_call() {
    let app = patient_app().await;
    // Two identical mutations in flight: both reach the backend.
    let rate = r#"mutation { rateTitle(titleId: "1", stars: 4) { titleId } }"#;
    let before = app.backend_calls().await["ratings"];
    app.set_faults("ratings", json!({ "hang": true })).await;
    let writes = [send(&app, rate, json!({})), send(&app, rate, json!({}))];
    until_calls(&app, "ratings", before + 2).await;
    app.set_faults("ratings", json!({})).await;
    for w in writes {
        let body = w.await.unwrap();
        assert!(body.get("errors").is_none(), "{body}");
    }
    // A backend with shareInFlight off: identical reads each make their call.
    let admin = Admin { app: &app, token: ADMIN.to_owned() };
    let (status, view) = admin
        .send(reqwest::Method::PATCH, "/backends/catalog", Some(json!({ "shareInFlight": false })))
        .await;
    assert_eq!(status, 200, "{view}");
    let (_, view) = admin.get("/backends/catalog").await;
    assert_eq!(view["policy"]["shareInFlight"], false, "{view}");
    let before = app.backend_calls().await["catalog"];
    app.set_faults("catalog", json!({ "hang": true })).await;
    let reads = [send(&app, QUERY, json!({})), send(&app, QUERY, json!({}))];
    until_calls(&app, "catalog", before + 2).await;
    app.set_faults("catalog", json!({})).await;
    for r in reads {
        assert!(r.await.unwrap().get("errors").is_none());
    }
}

/// The counter of `/graphql` queries answered by another request's run (only this test turns
/// the setting on, so the process-wide counter is this test's).
async fn shared_requests(app: &TestApp) -> f64 {
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("facade_shared_requests_total"))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_share_identical_requests_on_an_identical_query_in_flight_runs_once() {
    let app = Arc::new(
        app_on_with(None, |c| {
            c.graphql.share_identical_requests = true;
            c.engine.request_timeout_ms = 120_000;
            c.backends.entry("catalog".to_owned()).or_default().policy.timeout_ms = Some(120_000);
        })
        .await,
    );
    let before = app.backend_calls().await["catalog"];
    let shared_before = shared_requests(&app).await;
    app.set_faults("catalog", json!({ "hang": true })).await;
    let first = send(&app, QUERY, json!({}));
    until_calls(&app, "catalog", before + 1).await;
    let second = send(&app, QUERY, json!({}));
    // Another query (other variables) is not the same request.
    let other = send(&app, r#"query($id: ID!) { title(id: $id) { id name } }"#, json!({ "id": "4" }));
    until_calls(&app, "catalog", before + 2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while shared_requests(&app).await < shared_before + 1.0 {
        assert!(Instant::now() < deadline, "the second request never joined the first");
        tokio::task::yield_now().await;
    }
    app.set_faults("catalog", json!({})).await;
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert!(a.get("errors").is_none(), "{a}");
    assert_eq!(a, b, "one answer for both");
    assert_eq!(other.await.unwrap()["data"]["title"]["id"], "4");
    assert_eq!(app.backend_calls().await["catalog"], before + 2, "the title of each distinct query, once");
}

/// A hanging backend shared by every request still trips its breaker: each request that
/// waited on the shared call counts as a call (else one real call per timeout would never
/// reach the breaker's minimum, and every request would wait for the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_share_a_failing_call_each_count_for_the_breaker() {
    let app = Arc::new(
        app_on_with(None, |c| {
            c.engine.request_timeout_ms = 120_000;
            let b = &mut c.backends.entry("catalog".to_owned()).or_default().policy;
            b.timeout_ms = Some(3_000);
            b.max_retries = Some(0);
            b.breaker_min_calls = Some(5);
        })
        .await,
    );
    let before = app.backend_calls().await["catalog"];
    app.set_faults("catalog", json!({ "hang": true })).await;
    let first = send(&app, QUERY, json!({}));
    until_calls(&app, "catalog", before + 1).await;
    let rest: Vec<_> = (0..5).map(|_| send(&app, QUERY, json!({}))).collect();
    let mut stream = crate::ops::open(&app, ADMIN).await;
    let mut buffer = String::new();
    crate::ops::until(&mut stream, &mut buffer, |s| {
        s["backends"].as_array().unwrap().iter().any(|b| {
            b["name"] == "catalog" && (b["sharedPerSec"].as_f64().unwrap() * 10.0).round() as u64 >= 5
        })
    })
    .await;
    drop(stream);
    // The one call times out; its six requests each get TIMEOUT and count as six failures.
    for r in std::iter::once(first).chain(rest) {
        let body = r.await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "TIMEOUT", "{body}");
    }
    assert_eq!(app.backend_calls().await["catalog"], before + 1, "one call made");
    let (_, view) = Admin { app: &app, token: ADMIN.to_owned() }.get("/backends/catalog").await;
    assert_eq!(view["breaker"]["state"], "open", "{view}");
    app.set_faults("catalog", json!({})).await;
}
