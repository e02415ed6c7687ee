//! Hostile and careless input against a real server: each high and medium finding of the
//! security probe, with variants of its class. Every case checks that the attack gets a
//! clear answer, that the process keeps serving (`/healthz` answers while the attack is
//! handled), and that no other tenant or device is affected.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::endpoints::{Admin, app_on};
use crate::helpers::{TestApp, spawn_with};

const TOKEN: &str = "fcd_admin_for_tests";

fn admin(app: &TestApp) -> Admin<'_> {
    Admin { app, token: TOKEN.to_owned() }
}

/// POSTs a query with the media type that makes request errors 400.
async fn post(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("accept", "application/graphql-response+json")
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn healthy(app: &TestApp) {
    let r = app.client.get(format!("{}/healthz", app.base)).timeout(Duration::from_secs(10)).send().await;
    assert_eq!(r.expect("/healthz answers").status(), 200);
}

/// Sends `body` while `/healthz` is asked at the same time; returns the hostile answer.
async fn while_healthy(app: &TestApp, body: Value) -> (u16, Value) {
    let (answer, ()) = tokio::join!(post(app, body), healthy(app));
    healthy(app).await;
    answer
}

fn message(body: &Value) -> String {
    body["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_cycles_and_long_chains_are_refused_not_a_crash() {
    let app = app_on(None).await;
    // The probe's 71-byte GET.
    let r = app
        .client
        .get(format!("{}/graphql?query=%7B...A%7D%20fragment%20A%20on%20Query%20%7B...A%7D", app.base))
        .header("accept", "application/graphql-response+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("fragment A spreads itself"));
    for query in [
        "{ ...A } fragment A on Query { title(id: 1) { id } ...A }",
        "{ ...A } fragment A on Query { ...B } fragment B on Query { ...C } fragment C on Query { ...A }",
        "{ title(id: 1) { ...T } } fragment T on Title { id similar { ...T } }",
    ] {
        let (status, body) = while_healthy(&app, json!({ "query": query })).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(message(&body).contains("spreads itself"), "{body}");
    }
    // An acyclic chain of 25,000 fragments (~880 KB, under the body limit).
    let n = 25_000;
    let mut chain = String::from("{ ...f0 }");
    for i in 0..n {
        chain.push_str(&format!(" fragment f{i} on Query {{ ...f{} }}", i + 1));
    }
    chain.push_str(&format!(" fragment f{n} on Query {{ __typename }}"));
    let (status, body) = while_healthy(&app, json!({ "query": chain })).await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("nest deeper than 16"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_fan_out_is_refused_in_linear_work() {
    let app = app_on(None).await;
    let fan = |n: usize, on: &str, leaf: &str| {
        let mut q = if on == "Query" {
            String::from("{ ...F0 }")
        } else {
            String::from("{ title(id: 1) { ...F0 } }")
        };
        for i in 0..n {
            q.push_str(&format!(" fragment F{i} on {on} {{ ...F{j} ...F{j} }}", j = i + 1));
        }
        q.push_str(&format!(" fragment F{n} on {on} {{ {leaf} }}"));
        q
    };
    // 2^24 and 2^60 expanded selections at the root and under a Title; all within the
    // depth limit of 16 only for the first, so both limits are exercised.
    for (n, on, leaf) in
        [(15, "Query", "title(id: 1) { id }"), (15, "Title", "id"), (60, "Query", "__typename")]
    {
        let (a, b) = tokio::join!(
            while_healthy(&app, json!({ "query": fan(n, on, leaf) })),
            post(&app, json!({ "query": fan(n, on, leaf) }))
        );
        for (status, body) in [a, b] {
            assert_eq!(status, 400, "{body}");
            let m = message(&body);
            assert!(m.contains("selections") || m.contains("nest deeper"), "{m}");
        }
    }
    // The same document within the limits still runs.
    let ok = app.graphql(&fan(3, "Query", "title(id: 1) { id }"), json!({})).await;
    assert_eq!(ok["data"]["title"]["id"], "1", "{ok}");
}

/// Publishes `script` for `client/name` with a team token and returns the status.
async fn publish_script(
    app: &TestApp,
    token: &str,
    client: &str,
    name: &str,
    document: &str,
    script: &str,
) -> u16 {
    Admin { app, token: token.to_owned() }
        .post(
            &format!("/clients/{client}/endpoints/{name}/versions"),
            json!({ "document": document, "script": script }),
        )
        .await
        .0
}

async fn team_token(app: &TestApp, team: &str) -> String {
    let (status, body) = admin(app).post("/tokens", json!({ "team": team, "label": team })).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_teams_transform_cannot_read_or_change_anothers() {
    let app = app_on(None).await;
    admin(&app).post("/clients", json!({"name": "web", "team": "web-team"})).await;
    let web = team_token(&app, "web-team").await;
    let stash = "const g = globalThis;\n\
        if (!g.__stash) { g.__stash = []; const map = Array.prototype.map;\n\
          Array.prototype.map = function (...a) { try { g.__stash.push(JSON.stringify(this).slice(0, 160)); } catch (e) {}\n\
            return map.apply(this, a); }; }\n\
        export default function (data, ctx) { const out = g.__stash.slice(); g.__stash.length = 0; return { stolen: out }; }";
    assert_eq!(
        publish_script(&app, &web, "web", "stash", "query { title(id: \"1\") { id name } }", stash).await,
        201
    );
    let get = |path: String| {
        let c = app.client.clone();
        async move {
            c.get(path)
                .header("x-device-id", "victim-tv-1")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let before = get(format!("{}/v1/tv/home?profileId=42", app.base)).await;
    for _ in 0..6 {
        get(format!("{}/v1/web/stash", app.base)).await;
    }
    let victim = get(format!("{}/v1/tv/home?profileId=42", app.base)).await;
    assert_eq!(victim, before, "the tv answer is unchanged");
    let stolen = get(format!("{}/v1/web/stash", app.base)).await;
    assert_eq!(stolen, json!({ "stolen": [] }), "nothing of the tv device's data");
    // A refused publish whose top level rewrites a built-in changes nobody's answer.
    for attack in [
        "Math.round = function () { return 5; };",
        "Object.prototype.toJSON = function () { return 'owned'; };",
        "String.prototype.concat = function () { return 'owned'; };",
        "JSON.stringify = function () { return '\"owned\"'; };",
        "Function.prototype.apply = function () { return 'owned'; };",
        "globalThis.Math = { round: () => 5 };",
    ] {
        let status = publish_script(
            &app,
            &web,
            "web",
            "sneaky",
            "query { title(id: \"1\") { id } }",
            &format!("{attack}\nexport const x = 1;"),
        )
        .await;
        assert_eq!(status, 400, "{attack}");
        for _ in 0..4 {
            assert_eq!(get(format!("{}/v1/tv/home?profileId=42", app.base)).await, before, "after {attack}");
        }
    }
    let (status, _) =
        Admin { app: &app, token: web.clone() }.get("/clients/web/endpoints/sneaky/versions").await;
    assert_eq!(status, 404, "a refused publish stores nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_of_one_endpoint_never_see_each_others_data() {
    let app = app_on(None).await;
    admin(&app).post("/clients", json!({"name": "web", "team": "web-team"})).await;
    let keeper = "const seen = [];\nexport default function (data, ctx) { seen.push(ctx.device.id); globalThis.last = ctx.device.id; return { seen }; }";
    assert_eq!(
        publish_script(&app, TOKEN, "web", "keeper", "query { title(id: \"1\") { id } }", keeper).await,
        201
    );
    for device in ["device-a", "device-b", "device-c", "device-d"] {
        let body: Value = app
            .client
            .get(format!("{}/v1/web/keeper", app.base))
            .header("x-device-id", device)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({ "seen": [device] }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apq_texts_are_capped_bounded_in_bytes_and_stored_only_when_valid() {
    let app = spawn_with(|c| c.graphql.apq_max_bytes = 200_000).await;
    let sha = |q: &str| facade::registry::sha256_hex(&[q]);
    let register = |q: String| {
        let h = sha(&q);
        post(
            &app,
            json!({ "query": q, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": h } } }),
        )
    };
    let by_hash = |q: &str| {
        post(&app, json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": sha(q) } } }))
    };
    // Over the one-text cap: refused before anything is stored.
    let big = format!("#{}\n{{ __typename }}", "x".repeat(70_000));
    let (status, body) = register(big.clone()).await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("at most 65536 bytes"), "{body}");
    // Ten texts of ~60 KB into a 200 KB budget: the oldest are gone, the newest kept.
    let texts: Vec<String> =
        (0..10).map(|i| format!("#{i:02}{}\n{{ __typename }}", "x".repeat(60_000))).collect();
    for t in &texts {
        assert_eq!(register(t.clone()).await.0, 200);
    }
    assert_eq!(message(&by_hash(&texts[0]).await.1), "PersistedQueryNotFound");
    assert_eq!(by_hash(&texts[9]).await.1["data"]["__typename"], "Query");
    // A text that does not validate is not stored.
    let invalid = "{ noSuchField }".to_owned();
    assert_eq!(register(invalid.clone()).await.0, 400);
    assert_eq!(message(&by_hash(&invalid).await.1), "PersistedQueryNotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_values_cannot_change_the_route() {
    let app = app_on(None).await;
    for (query, field) in [
        (r#"query($id: ID!) { title(id: $id) { id } }"#, "title"),
        (
            r#"query($id: ID!) { profile(id: "1") { rows(first: 1) { titles(first: 1) { id bookmark(profileId: $id) { positionSeconds } } } } }"#,
            "bookmark",
        ),
    ] {
        for bad in ["..", ".", ""] {
            let (body, calls) = app.calls_during(app.graphql(query, json!({ "id": bad }))).await;
            let errors = body["errors"].as_array().unwrap_or_else(|| panic!("{body}"));
            let e = &errors[0];
            assert_eq!(e["extensions"]["code"], "BAD_USER_INPUT", "{body}");
            assert!(e["message"].as_str().unwrap().contains("path segment"), "{body}");
            assert_eq!(e["path"].as_array().unwrap().last().unwrap(), field, "{body}");
            let bad_calls = if field == "title" { calls["catalog"] } else { calls["history"] };
            assert_eq!(bad_calls, 0, "{field} with {bad:?} made no call: {calls:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_or_unset_limit_fetches_what_the_cost_counted() {
    let app = app_on(None).await;
    let count = |body: &Value| -> Vec<usize> {
        body["data"]["profile"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["titles"].as_array().unwrap().len())
            .collect()
    };
    let body = app
        .graphql(r#"{ profile(id: "1") { rows(first: 3) { titles(first: null) { id } } } }"#, json!({}))
        .await;
    assert_eq!(count(&body), [10, 10, 10], "null: default_list_size (10), as the cost counted: {body}");
    let q = r#"query($n: Int) { profile(id: "1") { rows(first: 3) { titles(first: $n) { id } } } }"#;
    assert_eq!(count(&app.graphql(q, json!({})).await), [10, 10, 10], "unset counts as null");
    assert_eq!(count(&app.graphql(q, json!({ "n": null })).await), [10, 10, 10]);
    assert_eq!(count(&app.graphql(q, json!({ "n": 2 })).await), [2, 2, 2]);
    // The probe's request: 60 rows × null titles is costed at 60 × 10 and fetches that many.
    let wide = r#"{ profile(id: 1) { rows(first: 60) { titles(first: null) { id } } } }"#;
    let rows = count(&app.graphql(wide, json!({})).await);
    assert!(rows.iter().all(|n| *n <= 10) && !rows.is_empty(), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdl_route_obeys_the_introspection_rule() {
    let hash = facade::http::auth::token_hash(TOKEN);
    let app = spawn_with(move |c| {
        c.graphql.introspection = false;
        c.admin.token_sha256 = vec![hash];
    })
    .await;
    let r = app.client.get(format!("{}/schema.graphql", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("type Title"));
    let r = app.client.get(format!("{}/schema.graphql", app.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("type Title"));
    // Published documents may not bring introspection back.
    let (status, body) = admin(&app).post("/clients", json!({"name": "peekers", "team": "web-team"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin(&app).publish("peekers", "peek", "{ __schema { types { name } } }").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("introspection is off"), "{body}");
}

/// Reads until the server closes the connection; `Err` if it is still open at the deadline.
async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> Result<Vec<u8>, ()> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_disconnected() {
    let app = spawn_with(|c| {
        c.server.header_read_timeout_ms = 400;
        c.server.idle_timeout_ms = 1_500;
        c.server.body_timeout_ms = 400;
        c.server.request_timeout_ms = 1_000;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let connect = || TcpStream::connect(addr.clone());
    // Partial headers, then silence.
    let mut s = connect().await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await.is_ok(), "silent headers");
    // Headers one byte at a time, slower than the header timeout allows in all.
    let mut s = connect().await.unwrap();
    let mut closed = false;
    for b in b"GET /healthz HTTP/1.1\r\nHost: slowloris.example\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n" {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        // Pacing the attack (a slow client), not waiting for the server.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed || closed_within(&mut s, Duration::from_secs(10)).await.is_ok(), "trickled headers");
    // A body that stops arriving.
    let mut s = connect().await.unwrap();
    s.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\r\n{\"qu")
        .await
        .unwrap();
    let answer = closed_within(&mut s, Duration::from_secs(10)).await.expect("stalled body");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(
        answer.starts_with("http/1.1 4") && answer.contains("not received within the designated timeout"),
        "{answer}"
    );
    // An idle keep-alive connection after one request.
    let mut s = connect().await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = closed_within(&mut s, Duration::from_secs(10)).await.expect("idle keep-alive");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    healthy(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_revoked_and_expire() {
    let app = app_on(None).await;
    admin(&app).post("/clients", json!({"name": "web", "team": "web-team"})).await;
    let (status, created) = admin(&app).post("/tokens", json!({ "team": "web-team", "label": "ci" })).await;
    assert_eq!(status, 201);
    let (id, web) = (created["id"].as_i64().unwrap(), created["token"].as_str().unwrap().to_owned());
    let as_web = Admin { app: &app, token: web.clone() };
    assert_eq!(as_web.get("/clients/web/endpoints").await.0, 200);
    let (_, list) = admin(&app).get("/tokens").await;
    let entry = list.as_array().unwrap().iter().find(|t| t["id"] == id).unwrap().clone();
    assert_eq!(
        (entry["label"].as_str(), entry["team"].as_str(), entry["kind"].as_str()),
        (Some("ci"), Some("web-team"), Some("team"))
    );
    assert!(entry["lastUsedMs"].as_i64().is_some() && entry["revokedMs"].is_null(), "{entry}");
    assert!(!list.to_string().contains(&web), "the list never shows a token");
    // Another team cannot revoke it; its own team or an admin can.
    admin(&app).post("/clients", json!({"name": "tv2", "team": "tv-team"})).await;
    let tv = team_token(&app, "tv-team").await;
    let (status, _) =
        Admin { app: &app, token: tv }.send(reqwest::Method::DELETE, &format!("/tokens/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, body) = admin(&app)
        .send(reqwest::Method::DELETE, &format!("/tokens/{id}"), Some(json!({ "reason": "leaked in a log" })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(as_web.get("/clients/web/endpoints").await.0, 401, "revoked at once");
    let (_, audit) = admin(&app).get("/audit").await;
    assert!(
        audit.to_string().contains("token.revoke") && audit.to_string().contains("leaked in a log"),
        "{audit}"
    );
    // An expiring token stops by itself.
    let (_, short) = admin(&app)
        .post("/tokens", json!({ "team": "web-team", "label": "short", "expiresInSecs": 1 }))
        .await;
    let short = Admin { app: &app, token: short["token"].as_str().unwrap().to_owned() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = short.get("/clients/web/endpoints").await.0;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(tokio::time::Instant::now() < deadline, "the token did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Labels with control characters are refused.
    let (status, body) = admin(&app).post("/tokens", json!({ "label": "evil\u{1b}[2J\nx" })).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("control characters"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_findings_each_hold() {
    let app = app_on(None).await;
    // Unknown paths are 404, not 401; the bearer scheme is case-insensitive.
    assert_eq!(app.client.get(format!("{}/nonexistent", app.base)).send().await.unwrap().status(), 404);
    let r = app
        .client
        .get(format!("{}/admin/v1/clients", app.base))
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // `_` in a client name is not a LIKE wildcard in the audit log.
    admin(&app).post("/clients", json!({"name": "t_", "team": "t-team"})).await;
    admin(&app).post("/clients", json!({"name": "tx", "team": "x-team"})).await;
    admin(&app).publish("tx", "home", "{ title(id: 1) { id } }").await;
    let (_, audit) = admin(&app).get("/audit?client=t_").await;
    assert!(!audit.to_string().contains("tx/home"), "{audit}");
    // A reason is a line, not a megabyte.
    let (status, _) = admin(&app)
        .put("/clients/tx/endpoints/home/rollout", json!({ "stable": 1, "reason": "x".repeat(900_000) }))
        .await;
    assert_eq!(status, 400);
    let (status, body) = admin(&app)
        .put("/clients/tx/endpoints/home/rollout", json!({ "stable": 1, "reason": "x".repeat(2_000) }))
        .await;
    assert_eq!(status, 400, "{body}");
    // Publishing what could never run is refused.
    let costly = r#"{ profile(id: 1) { rows(first: 1000) { titles(first: 1000) { id } } } }"#;
    let (status, body) = admin(&app).publish("tx", "costly", costly).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("estimated cost"), "{body}");
    // Only served versions are runnable by documentId.
    let (old, new) = ("{ title(id: 2) { id } }", "{ title(id: 3) { id } }");
    admin(&app).publish("tx", "docs", old).await;
    admin(&app).publish("tx", "docs", new).await;
    admin(&app).put("/clients/tx/endpoints/docs/rollout", json!({ "stable": 2 })).await;
    let by_id = |q: &str| post(&app, json!({ "documentId": facade::registry::sha256_hex(&[q]) }));
    assert_eq!(message(&by_id(old).await.1), "PersistedQueryNotFound");
    assert_eq!(by_id(new).await.1["data"]["title"]["id"], "3");
    // Readiness: the store works.
    let r = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_never_see_internal_backend_urls() {
    let app = spawn_with(|c| {
        c.demo.enabled = false;
        for name in ["members", "lists", "catalog", "artwork", "ratings", "history"] {
            let b = c.backends.entry(name.to_owned()).or_default();
            b.url = Some("http://127.0.0.1:9".to_owned());
            b.policy.max_retries = Some(0);
        }
    })
    .await;
    let r = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({"query": "{ title(id: 1) { id } }"}))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("BACKEND_ERROR") && text.contains("catalog"), "{text}");
    assert!(!text.contains("127.0.0.1") && !text.contains("http://"), "{text}");
}

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
        let r = app.client.get(format!("{}/v1/tv/home?profileId={profile}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "a real tv call after the flood");
    }
}

/// Probe 2, L3: preview and a publish's trial run execute on live backends; a mutation there
/// changed backend data at every publish (a vote counted each time). Now a preview of a
/// mutation is refused with the reason, and a publish checks its script without running it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_and_publish_never_run_a_mutation() {
    let app = app_on(None).await;
    let a = admin(&app);
    assert_eq!(a.post("/clients", json!({ "name": "votes", "team": "votes" })).await.0, 201);
    let count = || async {
        let body = app.graphql("{ title(id: 7) { rating { count } } }", json!({})).await;
        body["data"]["title"]["rating"]["count"].as_i64().unwrap_or_else(|| panic!("{body}"))
    };
    let before = count().await;
    let document = "mutation Vote($stars: Int!) { rateTitle(titleId: 7, stars: $stars) { count } }";
    let script = "export default function (data) { return { votes: data.rateTitle.count }; }";
    let body = json!({ "document": document, "script": script, "variables": { "stars": 5 } });
    let (code, v) = a.post("/clients/votes/endpoints/vote/preview", body).await;
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("preview does not run mutations"), "{v}");
    for stars in [4, 5] {
        let body = json!({ "document": document, "script": script, "sampleVariables": { "stars": stars } });
        let (code, v) = a.post("/clients/votes/endpoints/vote/versions", body).await;
        assert!(code == 201 || code == 200, "{v}");
        // A script that does not compile is still refused.
        let broken = json!({ "document": document, "script": "export default function (", "sampleVariables": { "stars": stars } });
        assert_eq!(a.post("/clients/votes/endpoints/vote/versions", broken).await.0, 400);
    }
    assert_eq!(count().await, before, "no vote was counted");
    // The device call is what runs it.
    let r = app
        .client
        .post(format!("{}/v1/votes/vote", app.base))
        .json(&json!({ "stars": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(count().await, before + 1);
}

/// Probe 2, L8: a 1 MB argument became a 1 MB backend URL. A value too long for a route is the
/// caller's error now, and no backend is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argument_too_long_for_a_url_is_refused_before_any_backend_call() {
    let app = app_on(None).await;
    let term = "n".repeat(100_000);
    let before = app.backend_calls().await;
    let (code, body) =
        post(&app, json!({ "query": "query($t: String) { search(term: $t, first: 1) { __typename } }", "variables": { "t": term } }))
            .await;
    assert_eq!(code, 200, "{body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    assert!(error["message"].as_str().unwrap().contains("at most 2048"), "{body}");
    assert_eq!(app.backend_calls().await, before, "no backend was called");
}

/// Probe 2, L8: a numeric ID too large for a double came out as "1.2345678901234568e+22".
/// A backend's 23-digit ID now reaches the device digit for digit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numeric_id_past_u64_is_kept_exact() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let catalog = axum::Router::new().route(
        "/titles/{id}",
        axum::routing::get(|| async {
            (
                [("content-type", "application/json")],
                r#"{"id": 12345678901234567890123, "name": "Big", "year": 99999999999999999999999}"#,
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, catalog).await });
    let app = spawn_with(move |c| {
        c.demo.enabled = false;
        c.backends.entry("catalog".to_owned()).or_default().url = Some(url);
    })
    .await;
    let (code, body) = post(&app, json!({ "query": "{ title(id: 1) { id name } }" })).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["title"]["id"], "12345678901234567890123", "{body}");
    // An Int field still refuses it, naming the value.
    let (_, body) = post(&app, json!({ "query": "{ title(id: 1) { year } }" })).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("Int"), "{body}");
}
