//! The live ops stream (`/ops/stream`, server-sent events) against a real server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::endpoints::{Admin, app_on};
use crate::helpers::{TestApp, home_query};

const ADMIN: &str = "fcd_admin_for_tests";

/// Reads snapshots from an open stream until `want` holds for one (or the deadline).
async fn until(
    response: &mut reqwest::Response,
    buffer: &mut String,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data: String = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
            if event.contains("event: snapshot") || event.contains("event:snapshot") {
                let snapshot: Value = serde_json::from_str(&data).unwrap();
                if want(&snapshot) {
                    return snapshot;
                }
            }
        }
        assert!(Instant::now() < deadline, "no snapshot matched");
        let chunk =
            tokio::time::timeout(Duration::from_secs(10), response.chunk()).await.unwrap().unwrap().unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn open(app: &TestApp, token: &str) -> reqwest::Response {
    let r = app.client.get(format!("{}/ops/stream", app.base)).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_stream_shows_backends_and_a_teams_own_endpoints_each_second() {
    let app = app_on(None).await;
    let a = Admin { app: &app, token: ADMIN.to_owned() };
    assert_eq!(app.client.get(format!("{}/ops/stream", app.base)).send().await.unwrap().status(), 401);
    assert_eq!(a.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    assert_eq!(a.publish("shop", "one", "{ title(id: 1) { name } }").await.0, 201);
    let (_, token) = a.post("/tokens", json!({ "team": "shop", "label": "ops" })).await;
    let team = token["token"].as_str().unwrap().to_owned();
    let (_, me) = Admin { app: &app, token: team.clone() }.get("/me").await;
    assert_eq!(me, json!({ "kind": "team", "team": "shop", "label": "ops" }));

    // Traffic: home queries (six backends) and calls of shop/one.
    for _ in 0..5 {
        app.graphql(&home_query(), json!({ "profileId": "1" })).await;
        let r = app.client.get(format!("{}/v1/shop/one", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut stream = open(&app, &team).await;
    let mut buffer = String::new();
    let s = until(&mut stream, &mut buffer, |s| {
        s["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "members" && b["callsPerSec"].as_f64().unwrap() > 0.0)
    })
    .await;
    let members = s["backends"].as_array().unwrap().iter().find(|b| b["name"] == "members").unwrap();
    assert_eq!(members["breaker"], "closed");
    assert!(
        members["bulkhead"].as_u64().unwrap() > 0 && members["p99Ms"].as_f64().unwrap() > 0.0,
        "{members}"
    );
    assert_eq!(members["rates"].as_array().unwrap().len(), 59);
    // A team sees every backend but only its own clients' endpoints.
    assert_eq!(s["backends"].as_array().unwrap().len(), 6);
    let endpoints: Vec<String> = s["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}@{} {}",
                e["client"].as_str().unwrap(),
                e["endpoint"].as_str().unwrap(),
                e["version"],
                e["side"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(endpoints, ["shop/one@1 stable"]);
    assert!(s["endpoints"][0]["requestsPerSec"].as_f64().unwrap() > 0.0, "{s}");

    // A breaker tripped by an admin shows in the next snapshots.
    let (code, _) = a.post("/backends/ratings/breaker", json!({ "action": "trip" })).await;
    assert_eq!(code, 200);
    until(&mut stream, &mut buffer, |s| {
        s["backends"].as_array().unwrap().iter().any(|b| b["name"] == "ratings" && b["breaker"] == "open")
    })
    .await;
    // Refused calls count as rejections.
    app.graphql(&home_query(), json!({ "profileId": "1" })).await;
    until(&mut stream, &mut buffer, |s| {
        s["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "ratings" && b["rejectedPerSec"]["circuitOpen"].as_f64().unwrap() > 0.0)
    })
    .await;
}
