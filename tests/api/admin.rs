//! The admin API for backends: bearer auth, runtime policy changes, breaker controls.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_with};

/// The token whose SHA-256 the test config holds.
const TOKEN: &str = "fcd_test_token";

async fn admin_app() -> TestApp {
    let hash = facade::http::auth::token_hash(TOKEN);
    spawn_with(move |c| c.admin.token_sha256 = vec![hash]).await
}

fn req(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    app.client.request(method, format!("{}/admin/v1{path}", app.base))
}

#[tokio::test]
async fn no_or_bad_token_is_401() {
    let app = admin_app().await;
    let r = req(&app, reqwest::Method::GET, "/backends").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = req(&app, reqwest::Method::GET, "/backends").bearer_auth("nope").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(!body.contains("nope"), "a presented token is never echoed");
    let r = req(&app, reqwest::Method::GET, "/backends").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 6);

    let unconfigured = spawn_with(|_| {}).await;
    let r = req(&unconfigured, reqwest::Method::GET, "/backends").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 401, "a token neither in config nor in the store");
}

#[tokio::test]
async fn config_cannot_set_what_the_admin_api_refuses() {
    let mut config = crate::helpers::test_config();
    let dir = tempfile::tempdir().unwrap();
    config.database.url = format!("sqlite://{}", dir.path().join("f.db").display());
    config.backends.entry("catalog".into()).or_default().policy.max_concurrent = Some(0);
    let error = facade::app::App::build(&config).await.err().expect("refused").to_string();
    assert!(error.contains("config [backends.catalog]") && error.contains("maxConcurrent"), "{error}");
}

#[tokio::test]
async fn policy_changes_apply_at_runtime_and_bad_input_is_refused() {
    let app = admin_app().await;
    let patch = |body: Value| {
        req(&app, reqwest::Method::PATCH, "/backends/catalog").bearer_auth(TOKEN).json(&body).send()
    };
    let r = patch(json!({"ratePerSec": 1, "burst": 2, "maxRetries": 0})).await.unwrap();
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["policy"]["burst"], 2);
    let query = "{ a: title(id: 1) { id } b: title(id: 2) { id } c: title(id: 3) { id } }";
    let (body, calls) = app.calls_during(app.graphql(query, json!({}))).await;
    assert_eq!(calls["catalog"], 2, "the new burst is in force");
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");

    for (bad, field) in [
        (json!({"maxConcurrent": 0}), "maxConcurrent"),
        (json!({"retryRatio": 1.5}), "retryRatio"),
        (json!({"breakerOpenMs": 5000, "breakerMaxOpenMs": 10}), "breakerMaxOpenMs"),
        (json!({"maxConcurent": 3}), "maxConcurent"),
        (json!({"url": "http://elsewhere.example"}), "url"),
        (json!({"breakerMinCalls": 0}), "breakerMinCalls"),
    ] {
        let r = patch(bad).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains(field), "{field}");
    }
    let r = req(&app, reqwest::Method::PATCH, "/backends/nope")
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn operators_can_trip_and_reset_a_breaker() {
    let app = admin_app().await;
    let action = |a: &'static str| {
        req(&app, reqwest::Method::POST, "/backends/catalog/breaker")
            .bearer_auth(TOKEN)
            .json(&json!({"action": a}))
            .send()
    };
    let view: Value = action("trip").await.unwrap().json().await.unwrap();
    assert_eq!(view["breaker"]["state"], "open");
    let (body, calls) = app.calls_during(app.graphql("{ title(id: 1) { id } }", json!({}))).await;
    assert_eq!(calls["catalog"], 0);
    assert_eq!(body["errors"][0]["extensions"]["code"], "CIRCUIT_OPEN");
    let view: Value = action("reset").await.unwrap().json().await.unwrap();
    assert_eq!(view["breaker"]["state"], "closed");
    let body = app.graphql("{ title(id: 1) { id } }", json!({})).await;
    assert_eq!(body["data"]["title"]["id"], "1");
    assert_eq!(action("explode").await.unwrap().status(), 400);
    // Both are in the audit log, and so is a policy change (probe 2, L2).
    let r = req(&app, reqwest::Method::PATCH, "/backends/catalog")
        .bearer_auth(TOKEN)
        .json(&json!({"maxConcurrent": 7}));
    assert_eq!(r.send().await.unwrap().status(), 200);
    let audit: Value = req(&app, reqwest::Method::GET, "/audit")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions[..3],
        [
            ("backend.policy", "backend:catalog"),
            ("backend.breaker.reset", "backend:catalog"),
            ("backend.breaker.trip", "backend:catalog")
        ],
        "{audit}"
    );
    let policy = &audit[0]["detail"];
    assert_eq!(
        (policy["to"]["maxConcurrent"].as_u64(), policy["from"]["maxConcurrent"] != 7),
        (Some(7), true),
        "{policy}"
    );
}

#[tokio::test]
async fn the_openapi_document_covers_every_admin_route_and_method() {
    let app = spawn_with(|_| {}).await;
    let spec: Value = app.get_json("/admin/v1/openapi.json").await;
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().unwrap();
    // Every `.route("/admin/v1…", get(…).post(…))` in every file of src/http, read whole
    // (a route may span lines), with each method it chains.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut declared = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        for (at, _) in source.match_indices(".route(\"/admin/v1") {
            let call = &source[at..];
            let route = call.split('"').nth(1).unwrap().to_owned();
            // The call's text up to its closing parenthesis.
            let (mut depth, mut end) = (0, call.len());
            for (i, c) in call.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 1 => {
                        end = i;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            for method in ["get", "post", "put", "patch", "delete"] {
                if call[..end].contains(&format!("{method}(")) {
                    declared.push((route.clone(), method));
                }
            }
        }
    }
    for (route, method) in &declared {
        let documented = paths.get(route).or_else(|| paths.get(&route.replace("{name}", "{backend}")));
        let Some(item) = documented else { panic!("{route} is not in openapi.json") };
        assert!(item.get(*method).is_some(), "{} {route} is not in openapi.json", method.to_uppercase());
    }
    // And nothing documented that the router does not serve.
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"].into_iter().filter(|m| item.get(*m).is_some())
        {
            let served = declared
                .iter()
                .any(|(r, m)| *m == method && (r == path || r.replace("{name}", "{backend}") == *path));
            assert!(served, "openapi.json documents {} {path}, which no route serves", method.to_uppercase());
        }
    }
    assert!(declared.len() >= 25, "{} routes and methods found", declared.len());
}

#[tokio::test]
async fn metrics_count_each_endpoint_versions_requests_errors_and_latency() {
    let app = crate::endpoints::app_on(None).await;
    let admin = crate::endpoints::Admin { app: &app, token: "fcd_admin_for_tests".to_owned() };
    admin.post("/clients", json!({"name": "metered", "team": "m-team"})).await;
    let (status, _) = admin.publish("metered", "title", "{ title(id: 1) { id name } }").await;
    assert_eq!(status, 201);
    let call =
        || async { app.client.get(format!("{}/v1/metered/title", app.base)).send().await.unwrap().status() };
    for _ in 0..3 {
        assert_eq!(call().await, 200);
    }
    app.set_faults("catalog", json!({"errorRate": 1.0})).await;
    assert_eq!(call().await, 200, "a failed field is still a 200 with data: null for it");
    let text = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let line = |name: &str, extra: &str| {
        let labels = format!("client=\"metered\",endpoint=\"title\",version=\"1\",side=\"stable\"{extra}");
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(&labels))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{name} {labels} not in:\n{text}"))
    };
    assert_eq!(line("facade_endpoint_requests_total", ""), "4");
    assert_eq!(line("facade_endpoint_errors_total", ",code=\"BACKEND_ERROR\""), "1");
    assert_eq!(line("facade_endpoint_request_duration_seconds_count", ""), "4");
}

#[tokio::test]
async fn a_debug_request_with_a_token_gets_its_waterfall() {
    let app = crate::endpoints::app_on(None).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let post = |token: Option<&str>| {
        let mut r = app
            .client
            .post(format!("{}/graphql", app.base))
            .header("x-facade-debug", "1")
            .header("traceparent", parent)
            .json(&json!({"query": crate::helpers::home_query(), "variables": {"profileId": "1"}}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = post(Some("fcd_admin_for_tests")).await.unwrap();
    assert_eq!(r.headers()["x-facade-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let body: Value = r.json().await.unwrap();
    assert!(body["data"]["profile"]["rows"].is_array());
    let trace = &body["extensions"]["facade"];
    assert_eq!(trace["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let fetches = trace["fetches"].as_array().unwrap();
    let backends: Vec<&str> = fetches.iter().map(|f| f["backend"].as_str().unwrap()).collect();
    assert_eq!(backends.len(), 6, "{fetches:?}");
    for b in ["members", "lists", "catalog", "artwork", "ratings", "history"] {
        assert!(backends.contains(&b), "{b} in {backends:?}");
    }
    let catalog = fetches.iter().find(|f| f["backend"] == "catalog").unwrap();
    assert!(catalog["keys"].as_u64().unwrap() > 1 && catalog["outcome"] == "ok", "{catalog}");
    let members = fetches.iter().find(|f| f["backend"] == "members").unwrap();
    assert!(
        catalog["startMs"].as_f64().unwrap()
            >= members["startMs"].as_f64().unwrap() + members["durationMs"].as_f64().unwrap() - 0.001,
        "catalog starts after the profile arrived: {fetches:?}"
    );
    // Without a token the header asks for nothing.
    let body: Value = post(None).await.unwrap().json().await.unwrap();
    assert!(body.get("extensions").is_none(), "{}", body["extensions"]);
    // A device call by ID: the answer, wrapped beside its trace.
    let r = app
        .client
        .get(format!("{}/v1/tv/home?profileId=1", app.base))
        .header("x-facade-debug", "1")
        .bearer_auth("fcd_admin_for_tests")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(body["answer"]["rows"].is_array(), "{body}");
    assert_eq!(body["debug"]["fetches"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn metrics_count_each_backend_call_and_its_latency() {
    let app = crate::endpoints::app_on(None).await;
    let scrape = || async {
        let text =
            app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
        // Other tests in this process call a `catalog` of their own: counts only grow.
        let value = |name: &str, labels: &[&str]| {
            text.lines()
                .find(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
                .and_then(|l| l.rsplit(' ').next())
                .map_or(0.0, |v| v.parse::<f64>().unwrap())
        };
        (
            value("facade_backend_calls_total", &["backend=\"catalog\"", "outcome=\"ok\""]),
            value("facade_backend_request_duration_seconds_count", &["backend=\"catalog\""]),
        )
    };
    let (calls, timed) = scrape().await;
    for id in 1..=5 {
        let body = app.graphql(&format!("{{ title(id: {id}) {{ name }} }}"), json!({})).await;
        assert!(body["data"]["title"]["name"].is_string(), "{body}");
    }
    let (calls_after, timed_after) = scrape().await;
    assert!(calls_after - calls >= 5.0, "ok calls counted: {calls} → {calls_after}");
    assert!(timed_after - timed >= 5.0, "latencies recorded: {timed} → {timed_after}");
}

/// Hostile and careless input against this feature (the security probes' cases): each gets a
/// clear answer, the server keeps serving, and no other tenant or device is affected.
mod hostile_input {
    use std::time::Duration;

    use serde_json::json;

    use crate::attack::*;
    use crate::endpoints::{Admin, app_on};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_are_listed_revoked_and_expire() {
        let app = app_on(None).await;
        admin(&app).post("/clients", json!({"name": "web", "team": "web-team"})).await;
        let (status, created) =
            admin(&app).post("/tokens", json!({ "team": "web-team", "label": "ci" })).await;
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
        let (status, _) = Admin { app: &app, token: tv }
            .send(reqwest::Method::DELETE, &format!("/tokens/{id}"), None)
            .await;
        assert_eq!(status, 404);
        let (status, body) = admin(&app)
            .send(
                reqwest::Method::DELETE,
                &format!("/tokens/{id}"),
                Some(json!({ "reason": "leaked in a log" })),
            )
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
    async fn unknown_paths_are_404_the_bearer_scheme_any_case_and_audit_inputs_bounded() {
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
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_publish_that_could_never_run_is_refused_and_only_served_versions_run_by_id() {
        let app = app_on(None).await;
        admin(&app).post("/clients", json!({"name": "tx", "team": "x-team"})).await;
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
}
