//! Endpoints end to end, each case on SQLite and on PostgreSQL (when FACADE_TEST_DATABASE_URL
//! is set; otherwise the PostgreSQL variants say they are skipped).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, home_query, spawn_with};

const ADMIN: &str = "fcd_admin_for_tests";

/// A fresh PostgreSQL database for one test, or `None` (with a note) when none is configured.
pub async fn fresh_postgres() -> Option<String> {
    let Ok(base) = std::env::var("FACADE_TEST_DATABASE_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but FACADE_TEST_DATABASE_URL is not: the PostgreSQL variants must not skip under CI"
        );
        eprintln!(
            "SKIPPED PostgreSQL variant: set FACADE_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
        );
        return None;
    };
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&base).await.expect("FACADE_TEST_DATABASE_URL connects");
    let name = format!("facade_test_{}_{}", std::process::id(), fastrand::u64(..));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let (prefix, _) = base.rsplit_once('/').expect("a database url ends with /NAME");
    Some(format!("{prefix}/{name}"))
}

pub async fn app_on(db: Option<&str>) -> TestApp {
    app_on_with(db, |_| {}).await
}

/// [`app_on`], then `more` changes the config further.
pub async fn app_on_with(db: Option<&str>, more: impl FnOnce(&mut facade::config::Config)) -> TestApp {
    let hash = facade::http::auth::token_hash(ADMIN);
    let db = db.map(str::to_owned);
    spawn_with(move |c| {
        c.admin.token_sha256 = vec![hash];
        c.limits.device_rate_per_sec = 1_000_000;
        c.limits.device_burst = 1_000_000;
        c.limits.client_rate_per_sec = 1_000_000;
        c.limits.client_burst = 1_000_000;
        if let Some(url) = db {
            c.database.url = url;
        }
        more(c);
    })
    .await
}

pub struct Admin<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl Admin<'_> {
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .app
            .client
            .request(method, format!("{}/admin/v1{path}", self.app.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn publish(&self, client: &str, name: &str, document: &str) -> (u16, Value) {
        self.post(&format!("/clients/{client}/endpoints/{name}/versions"), json!({ "document": document }))
            .await
    }
}

fn admin(app: &TestApp) -> Admin<'_> {
    Admin { app, token: ADMIN.to_owned() }
}

/// A device call, with a token so that the answer names its version and side (devices
/// without one are not told: `hides_the_side_from_devices`).
async fn device(app: &TestApp, path: &str, device: Option<&str>) -> reqwest::Response {
    let mut r = app.client.get(format!("{}{path}", app.base)).bearer_auth(ADMIN);
    if let Some(d) = device {
        r = r.header("x-device-id", d);
    }
    r.send().await.unwrap()
}

/// Runs a case on SQLite, and on PostgreSQL when one is configured.
macro_rules! both {
    ($name:ident, $case:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(None).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(url) = super::fresh_postgres().await {
                    super::$case(Some(&url)).await;
                }
            }
        }
    };
}

both!(publish_and_call_by_id, publish_and_call_by_id_case);
both!(concurrent_publishes, concurrent_publishes_case);
both!(canary_rollout, canary_rollout_case);
both!(team_tokens, team_tokens_case);
both!(bad_input, bad_input_case);

async fn publish_and_call_by_id_case(db: Option<&str>) {
    let app = app_on(db).await;
    let a = admin(&app);
    assert_eq!(a.post("/clients", json!({"name": "box", "team": "box-team"})).await.0, 201);
    let (status, body) = a.publish("box", "home", &home_query()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1);
    let (status, again) = a.publish("box", "home", &home_query()).await;
    assert_eq!(
        (status, &again["version"], &again["created"]),
        (200, &json!(1), &json!(false)),
        "identical content"
    );
    let r = device(&app, "/v1/box/home?profileId=1", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-facade-endpoint-version"], "1");
    assert_eq!(r.headers()["x-facade-rollout"], "stable");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["profile"]["rows"].as_array().unwrap().len(), 10);
    // POST with a JSON body of variables gives the same answer.
    let r = app
        .client
        .post(format!("{}/v1/box/home", app.base))
        .json(&json!({"profileId": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), body);
    // The sample endpoints exist in demo mode too.
    let r = device(&app, "/v1/ios/home?profileId=2", None).await;
    assert_eq!(r.status(), 200);
    // A version keeps the sample variables it was published with (the playground starts a
    // run of it with them); the demo samples carry theirs (`home.variables.json`).
    let body = json!({"document": home_query(), "sampleVariables": {"profileId": "3"}});
    let (status, published) = a.post("/clients/box/endpoints/rated/versions", body).await;
    assert_eq!(status, 201, "{published}");
    let (_, v) = a.get("/clients/box/endpoints/rated/versions/1").await;
    assert_eq!(v["sampleVariables"], json!({"profileId": "3"}), "{v}");
    let (_, v) = a.get("/clients/box/endpoints/home/versions/1").await;
    assert_eq!(v["sampleVariables"], Value::Null, "{v}");
    let (_, v) = a.get("/clients/tv/endpoints/home/versions/1").await;
    assert_eq!(v["sampleVariables"], json!({"profileId": "1"}), "{v}");
}

async fn concurrent_publishes_case(db: Option<&str>) {
    let app = Arc::new(app_on(db).await);
    let a = admin(&app);
    a.post("/clients", json!({"name": "box", "team": "box-team"})).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let doc = format!("query V{i} {{ title(id: {}) {{ id name }} }}", i + 1);
                admin(&app).publish("box", "many", &doc).await
            })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
        versions.insert(body["version"].as_i64().unwrap());
    }
    assert_eq!(versions, (1..=50).collect::<BTreeSet<i64>>(), "50 distinct versions without gaps");
    let (_, list) = a.get("/clients/box/endpoints/many/versions").await;
    assert_eq!(list.as_array().unwrap().len(), 50);

    // Concurrent rollout changes, half naming missing versions: never a dangling rollout.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let (stable, canary) = if i % 2 == 0 { (1 + i % 50, 50 - i % 50) } else { (100 + i, 1) };
                admin(&app)
                    .put(
                        "/clients/box/endpoints/many/rollout",
                        json!({"stable": stable, "canary": canary, "canaryPercent": 10}),
                    )
                    .await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, if i % 2 == 0 { 200 } else { 400 }, "{body}");
    }
    let (_, rollout) = a.get("/clients/box/endpoints/many/rollout").await;
    let stable = rollout["stable"].as_i64().unwrap();
    assert!((1..=50).contains(&stable) && (1..=50).contains(&rollout["canary"].as_i64().unwrap()));
}

async fn canary_rollout_case(db: Option<&str>) {
    let app = Arc::new(app_on(db).await);
    let a = admin(&app);
    a.post("/clients", json!({"name": "box", "team": "box-team"})).await;
    assert_eq!(a.publish("box", "ping", "query One { __typename }").await.0, 201);
    assert_eq!(a.publish("box", "ping", "query Two { __typename }").await.0, 201);
    let (status, _) = a
        .put(
            "/clients/box/endpoints/ping/rollout",
            json!({"stable": 1, "canary": 2, "canaryPercent": 10, "reason": "try v2"}),
        )
        .await;
    assert_eq!(status, 200);
    let counts: HashMap<String, usize> = {
        let sem = Arc::new(tokio::sync::Semaphore::new(32));
        let tasks: Vec<_> = (0..10_000)
            .map(|i| {
                let (app, sem) = (app.clone(), sem.clone());
                tokio::spawn(async move {
                    let _p = sem.acquire().await.unwrap();
                    let r = device(&app, "/v1/box/ping", Some(&format!("device-{i}"))).await;
                    r.headers()["x-facade-endpoint-version"].to_str().unwrap().to_owned()
                })
            })
            .collect();
        let mut counts = HashMap::new();
        for t in tasks {
            *counts.entry(t.await.unwrap()).or_insert(0) += 1;
        }
        counts
    };
    let canary = counts.get("2").copied().unwrap_or(0);
    assert!((900..=1100).contains(&canary), "{canary} of 10,000 on the canary");
    // One device always gets one version.
    for d in ["device-1", "device-2", "device-3"] {
        let first =
            device(&app, "/v1/box/ping", Some(d)).await.headers()["x-facade-endpoint-version"].clone();
        for _ in 0..10 {
            assert_eq!(
                device(&app, "/v1/box/ping", Some(d)).await.headers()["x-facade-endpoint-version"],
                first
            );
        }
    }
    // A canary device; after a rollback its next request gets the stable version.
    let on_canary = (0..10_000)
        .map(|i| format!("device-{i}"))
        .find(|d| facade::registry::device_bucket("box", "ping", d) < 10)
        .unwrap();
    assert_eq!(device(&app, "/v1/box/ping", Some(&on_canary)).await.headers()["x-facade-rollout"], "canary");
    assert_eq!(a.post("/clients/box/endpoints/ping/rollback", json!({"reason": "errors up"})).await.0, 200);
    let r = device(&app, "/v1/box/ping", Some(&on_canary)).await;
    assert_eq!(
        (
            r.headers()["x-facade-endpoint-version"].to_str().unwrap(),
            r.headers()["x-facade-rollout"].to_str().unwrap()
        ),
        ("1", "stable")
    );
    let (_, log) = a.get("/audit?client=box").await;
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions[..2], ["rollout.rollback", "rollout.set"]);
    assert_eq!(log[0]["reason"], "errors up");
}

async fn team_tokens_case(db: Option<&str>) {
    let app = app_on(db).await;
    let a = admin(&app);
    a.post("/clients", json!({"name": "box", "team": "box-team"})).await;
    a.post("/clients", json!({"name": "phone", "team": "phone-team"})).await;
    let (status, created) = a.post("/tokens", json!({"team": "box-team", "label": "tv-ci"})).await;
    assert_eq!(status, 201);
    let token = created["token"].as_str().unwrap().to_owned();
    let team = Admin { app: &app, token: token.clone() };
    assert_eq!(team.publish("box", "home", &home_query()).await.0, 201);
    assert_eq!(team.publish("phone", "home", &home_query()).await.0, 403);
    assert_eq!(team.get("/clients/phone/endpoints/home/versions").await.0, 403);
    assert_eq!(team.put("/clients/phone/endpoints/home/rollout", json!({"stable": 1})).await.0, 403);
    assert_eq!(
        team.post("/clients", json!({"name": "web", "team": "box-team"})).await.0,
        403,
        "only admins make clients"
    );
    assert_eq!(team.post("/tokens", json!({"team": "phone-team"})).await.0, 403, "only admins make tokens");
    let (_, mine) = team.get("/clients").await;
    assert_eq!(mine, json!([{"name": "box", "team": "box-team"}]));
    let nobody = Admin { app: &app, token: "fcd_wrong".into() };
    assert_eq!(nobody.get("/clients").await.0, 401);
    let r = app.client.get(format!("{}/admin/v1/clients", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The token is shown once and never again: not in the audit log, not in any listing.
    let (_, log) = a.get("/audit").await;
    let text = log.to_string();
    assert!(!text.contains(&token) && !text.contains(&token[4..]), "token leaked into the audit log");
    let actions: BTreeSet<&str> =
        log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["client.create", "token.create", "version.publish"] {
        assert!(actions.contains(action), "{action} missing from {actions:?}");
    }
    let publish = log.as_array().unwrap().iter().find(|e| e["action"] == "version.publish").unwrap();
    assert_eq!(publish["actor"], "team:box-team:tv-ci");
}

async fn bad_input_case(db: Option<&str>) {
    let app = app_on(db).await;
    let a = admin(&app);
    a.post("/clients", json!({"name": "box", "team": "box-team"})).await;
    assert_eq!(a.publish("box", "home", &home_query()).await.0, 201);
    let (_, before) = a.get("/audit").await;
    let cases: Vec<(u16, (u16, Value), &str)> = vec![
        (400, a.publish("box", "home", "query { title(id: 1) { ").await, "1:"),
        (400, a.publish("box", "home", "query { title(id: 1) { nope } }").await, "nope"),
        (404, a.publish("nope", "home", &home_query()).await, "unknown client nope"),
        (400, a.publish("box", "Bad Name", &home_query()).await, "bad endpoint name"),
        (
            413,
            a.publish("box", "home", &format!("{} #{}", home_query(), "x".repeat(70_000))).await,
            "at most 65536",
        ),
        (404, a.get("/clients/box/endpoints/nope/versions").await, "unknown endpoint box/nope"),
        (404, a.get("/clients/box/endpoints/home/versions/7").await, "no version 7"),
        (
            400,
            a.put(
                "/clients/box/endpoints/home/rollout",
                json!({"stable": 1, "canary": 1, "canaryPercent": 150}),
            )
            .await,
            "between 0 and 100",
        ),
        (400, a.put("/clients/box/endpoints/home/rollout", json!({"stable": 9})).await, "has no version 9"),
        (400, a.put("/clients/box/endpoints/home/rollout", json!({"stabel": 1})).await, "stabel"),
        (409, a.post("/clients/box/endpoints/home/promote", json!({})).await, "no canary"),
        (409, a.post("/clients", json!({"name": "box", "team": "box-team"})).await, "already exists"),
    ];
    for (expected, (status, body), needle) in cases {
        assert_eq!(status, expected, "{body}");
        assert!(body.to_string().contains(needle), "{needle:?} not in {body}");
    }
    let (_, after) = a.get("/audit").await;
    assert_eq!(before, after, "refused changes store nothing");
    let (_, versions) = a.get("/clients/box/endpoints/home/versions").await;
    assert_eq!(versions.as_array().unwrap().len(), 1);
    assert_eq!(device(&app, "/v1/box/nope", None).await.status(), 404);
}

/// Two instances on one PostgreSQL database: a publish on one is served by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_publish_reaches_the_other_instance_within_a_second() {
    let Some(url) = fresh_postgres().await else { return };
    let one = app_on(Some(&url)).await;
    let two = app_on(Some(&url)).await;
    let a = admin(&one);
    a.post("/clients", json!({"name": "box", "team": "box-team"})).await;
    assert_eq!(a.publish("box", "live", "query V1 { __typename }").await.0, 201);
    let published = Instant::now();
    loop {
        let r = device(&two, "/v1/box/live", None).await;
        if r.status() == 200 {
            break;
        }
        assert!(published.elapsed() < Duration::from_secs(1), "not served by the other instance within 1 s");
        tokio::task::yield_now().await;
    }
    eprintln!("publish-to-live across instances: {:?}", published.elapsed());
}

/// Probe 2, L4: a team's endpoints and stored characters are bounded ([limits]); past them a
/// publish is refused with the quota named, and other teams publish as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_quotas_bound_endpoints_and_stored_characters() {
    let app = app_on_with(None, |c| {
        c.limits.max_endpoints_per_team = 2;
        c.limits.max_stored_chars_per_team = 200;
    })
    .await;
    let a = admin(&app);
    assert_eq!(a.post("/clients", json!({"name": "box", "team": "box-team"})).await.0, 201);
    assert_eq!(a.post("/clients", json!({"name": "boxtwo", "team": "box-team"})).await.0, 201);
    assert_eq!(a.post("/clients", json!({"name": "other", "team": "other-team"})).await.0, 201);
    assert_eq!(a.publish("box", "one", "{ title(id: 1) { name } }").await.0, 201);
    assert_eq!(a.publish("boxtwo", "two", "{ title(id: 2) { name } }").await.0, 201);
    // A third endpoint of the team (on either client) is refused; a new version of one is not.
    let (code, v) = a.publish("box", "three", "{ title(id: 3) { name } }").await;
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("max_endpoints_per_team"), "{v}");
    assert_eq!(a.publish("box", "one", "{ title(id: 1) { name year } }").await.0, 201);
    // Stored characters: a large document passes the team's quota.
    let big = format!("{{ title(id: 1) {{ name }} }}\n#{}", "x".repeat(150));
    let (code, v) = a.publish("box", "one", &big).await;
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("max_stored_chars_per_team"), "{v}");
    // Another team is not affected.
    assert_eq!(a.publish("other", "one", "{ title(id: 1) { name } }").await.0, 201);
    assert_eq!(a.publish("other", "two", "{ title(id: 2) { name } }").await.0, 201);
}

/// Hostile and careless input against this feature (the security probes' cases): each gets a
/// clear answer, the server keeps serving, and no other tenant or device is affected.
mod hostile_input {

    use serde_json::json;

    use crate::attack::*;
    use crate::endpoints::app_on;
    use crate::helpers::spawn_with;

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
            let body =
                json!({ "document": document, "script": script, "sampleVariables": { "stars": stars } });
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
}
