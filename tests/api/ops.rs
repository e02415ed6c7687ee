//! The live ops stream (`/ops/stream`, server-sent events) against a real server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::endpoints::{Admin, app_on};
use crate::helpers::{TestApp, home_query};

const ADMIN: &str = "fcd_admin_for_tests";

/// Reads snapshots from an open stream until `want` holds for one (or the deadline).
pub async fn until(
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

pub async fn open(app: &TestApp, token: &str) -> reqwest::Response {
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

/// Probe 2, M2: a stream whose token is revoked ends (an `end` event, then the end of the
/// body) at the next check; one token holds at most 4 streams; team tokens cannot take the
/// slots kept for admins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_streams_end_when_their_token_is_revoked_and_teams_cannot_take_every_slot() {
    use facade::http::ops_stream::{ADMIN_SLOTS, MAX_STREAMS, PER_TOKEN};
    let app = app_on(None).await;
    let a = Admin { app: &app, token: ADMIN.to_owned() };
    assert_eq!(a.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    let new_token = |label: String| {
        let a = &a;
        async move {
            let (code, t) = a.post("/tokens", json!({ "team": "shop", "label": label })).await;
            assert_eq!(code, 201, "{t}");
            (t["id"].as_i64().unwrap(), t["token"].as_str().unwrap().to_owned())
        }
    };
    let stream_of =
        |token: String| app.client.get(format!("{}/ops/stream", app.base)).bearer_auth(token).send();

    // Revoked mid-stream: the stream ends by itself.
    let (id, token) = new_token("revoked".into()).await;
    let mut stream = open(&app, &token).await;
    let mut buffer = String::new();
    until(&mut stream, &mut buffer, |_| true).await;
    assert_eq!(a.send(reqwest::Method::DELETE, &format!("/tokens/{id}"), None).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the stream did not end: {buffer}");
        match tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.unwrap() {
            Ok(Some(chunk)) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(None) => break,
            Err(e) => panic!("the stream broke instead of ending: {e}"),
        }
    }
    assert!(buffer.contains("event: end") && buffer.contains("revoked"), "{buffer}");

    // One token: at most PER_TOKEN streams.
    let (_, token) = new_token("many".into()).await;
    let mut held = Vec::new();
    for _ in 0..PER_TOKEN {
        held.push(open(&app, &token).await);
    }
    let r = stream_of(token.clone()).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("this token has"));
    // Team tokens fill what they may; the admin slots stay free.
    let team_slots = MAX_STREAMS - ADMIN_SLOTS;
    let mut tokens = 1;
    while held.len() < team_slots {
        let (_, token) = new_token(format!("t{tokens}")).await;
        tokens += 1;
        while held.len() < team_slots && held.len() < tokens * PER_TOKEN {
            held.push(open(&app, &token).await);
        }
    }
    let (_, token) = new_token("late".into()).await;
    assert_eq!(stream_of(token).await.unwrap().status(), 503, "team slots are full");
    let admin = open(&app, ADMIN).await;
    drop(admin);
    // A slot comes back when a stream ends.
    drop(held.pop());
    let (_, token) = new_token("later".into()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = stream_of(token.clone()).await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "the slot did not come back");
        tokio::task::yield_now().await;
    }
}

/// Hostile and careless input against this feature (the security probes' cases): each gets a
/// clear answer, the server keeps serving, and no other tenant or device is affected.
mod hostile_input {

    use crate::attack::*;

    use crate::helpers::spawn_with;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_fails_when_the_sqlite_file_is_deleted_while_health_stays_ok() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gone.db");
        let url = format!("sqlite://{}", db.display());
        let app = spawn_with(move |c| c.database.url = url).await;
        assert_eq!(app.client.get(format!("{}/readyz", app.base)).send().await.unwrap().status(), 200);
        std::fs::remove_file(&db).unwrap();
        let r = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.text().await.unwrap().contains("is gone"));
        healthy(&app).await;
    }
}
