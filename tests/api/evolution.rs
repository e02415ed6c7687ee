//! Schema evolution end to end: the schema folder changes under a running server (file
//! watch and the admin API), breaking and broken schemas are refused while the old one keeps
//! serving, requests in flight finish across a swap, a field moves between backends with
//! byte-identical answers, and instances on one PostgreSQL registry switch together.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::endpoints::{Admin, fresh_postgres};
use crate::helpers::{TestApp, repo_path, spawn_with};

const ADMIN: &str = "fcd_admin_for_tests";

/// A copy of the demo schema folder that a test may edit.
fn schema_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_path("schema")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let file = dir.path().join("facade.graphql");
    (dir, file)
}

async fn serve(schema: &Path, watch: bool, db: Option<&str>, source: &str) -> TestApp {
    let hash = facade::http::auth::token_hash(ADMIN);
    let schema = schema.to_owned();
    let db = db.map(str::to_owned);
    let source: facade::config::SchemaSource = serde_json::from_value(json!(source)).unwrap();
    spawn_with(move |c| {
        c.schema_dir = schema;
        c.schema.watch = watch;
        c.schema.source = source;
        c.admin.token_sha256 = vec![hash];
        c.limits.device_rate_per_sec = 1_000_000;
        c.limits.device_burst = 1_000_000;
        c.limits.client_rate_per_sec = 1_000_000;
        c.limits.client_burst = 1_000_000;
        // Room for a hundred calls in flight on each backend, and time for them: a hundred
        // home screens parsed at once by a debug build on a busy machine can take longer
        // than the default one-second attempt (seen as null artwork and ratings).
        for b in ["members", "lists", "catalog", "artwork", "ratings", "history"] {
            let policy = &mut c.backends.entry(b.to_owned()).or_default().policy;
            policy.max_concurrent = Some(256);
            policy.timeout_ms = Some(10_000);
        }
        if let Some(url) = db {
            c.database.url = url;
        }
    })
    .await
}

fn admin(app: &TestApp) -> Admin<'_> {
    Admin { app, token: ADMIN.to_owned() }
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from:?} is in {}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

fn append(file: &Path, more: &str) {
    let mut text = std::fs::read_to_string(file).unwrap();
    text.push_str(more);
    std::fs::write(file, text).unwrap();
}

const EXTRA_FIELD: &str = "\nextend type Query {\n  \"The same title again.\"\n  titleAgain(id: ID!): Title @http(backend: \"catalog\", get: \"/titles/{$args.id}\")\n}\n";

#[tokio::test]
async fn a_field_added_to_the_folder_is_served_without_a_restart() {
    let (_dir, file) = schema_copy();
    let app = serve(file.parent().unwrap(), true, None, "dir").await;
    let query = "{ titleAgain(id: 1) { name } }";
    let before = app.graphql(query, json!({})).await;
    assert!(
        before["data"].is_null() && before["errors"][0]["message"].as_str().unwrap().contains("titleAgain"),
        "not in the schema yet: {before}"
    );
    let (_, status) = admin(&app).get("/schema").await;
    let old_hash = status["hash"].as_str().unwrap().to_owned();

    append(&file, EXTRA_FIELD);
    // The file watch reloads by itself: poll until the field answers.
    let saved = Instant::now();
    let deadline = saved + Duration::from_secs(20);
    let body = loop {
        let r = app.graphql(query, json!({})).await;
        if r["errors"].is_null() {
            break r;
        }
        assert!(Instant::now() < deadline, "the new field was not served");
        tokio::task::yield_now().await;
    };
    eprintln!("new field served {} ms after the file was saved", saved.elapsed().as_millis());
    assert!(body["data"]["titleAgain"]["name"].is_string(), "{body}");
    let (_, status) = admin(&app).get("/schema").await;
    assert_ne!(status["hash"], old_hash.as_str());
    assert_eq!(status["lastAttempt"]["result"], "applied", "{status}");
    assert_eq!(status["lastAttempt"]["trigger"], "file-watch", "{status}");
    let change = &status["lastAttempt"]["changes"][0];
    assert_eq!(
        (change["level"].as_str(), change["coordinate"].as_str()),
        (Some("safe"), Some("Query.titleAgain"))
    );
    // Audited, with the hashes.
    let (_, audit) = admin(&app).get("/audit").await;
    let entry = audit.as_array().unwrap().iter().find(|e| e["action"] == "schema.reload");
    let entry = entry.unwrap_or_else(|| panic!("audited: {audit}"));
    assert_eq!(entry["detail"]["from"], old_hash.as_str());
}

#[tokio::test]
async fn a_breaking_change_is_refused_and_the_old_schema_keeps_answering() {
    let (_dir, file) = schema_copy();
    let app = serve(file.parent().unwrap(), false, None, "dir").await;
    let a = admin(&app);
    assert_eq!(a.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    let (code, v) = a.publish("shop", "years", "{ title(id: 1) { name synopsis } }").await;
    assert_eq!(code, 201, "{v}");
    let (_, before) = a.get("/schema").await;

    edit(&file, "  synopsis: String\n", "");
    let (code, attempt) = a.post("/schema/reload", json!({})).await;
    assert_eq!(code, 422, "{attempt}");
    assert_eq!(attempt["result"], "refused");
    let reasons: Vec<&str> =
        attempt["reasons"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(reasons.contains(&"shop/years@1: field Title.synopsis was removed"), "{reasons:?}");
    // The diff names the versions each change affects, exactly.
    let change =
        attempt["changes"].as_array().unwrap().iter().find(|c| c["coordinate"] == "Title.synopsis").unwrap();
    assert_eq!(change["level"], "breaking");
    assert!(change["affects"].as_array().unwrap().contains(&json!("shop/years@1")), "{change}");
    assert!(
        !change["affects"].as_array().unwrap().iter().any(|v| v.as_str().unwrap().starts_with("tv/home")),
        "{change}"
    );

    // The old schema keeps answering, by ID and ad hoc.
    let r: Value =
        app.client.get(format!("{}/v1/shop/years", app.base)).send().await.unwrap().json().await.unwrap();
    assert!(r["data"]["title"]["synopsis"].is_string(), "{r}");
    let (_, after) = a.get("/schema").await;
    assert_eq!(after["hash"], before["hash"]);
    assert_eq!(after["lastAttempt"]["result"], "refused");

    // A team token may not reload, nor force.
    let (code, token) = a.post("/tokens", json!({ "team": "shop", "label": "t" })).await;
    assert_eq!(code, 201, "{token}");
    let team = Admin { app: &app, token: token["token"].as_str().unwrap().to_owned() };
    let (code, v) = team.post("/schema/reload", json!({ "force": true, "reason": "mine" })).await;
    assert_eq!(code, 403, "{v}");
    // It sees usage of its own clients' versions only.
    let (code, usage) = team.get("/schema/usage").await;
    assert_eq!(code, 200);
    let versions: Vec<&str> =
        usage["versions"].as_array().unwrap().iter().filter_map(|v| v["version"].as_str()).collect();
    assert_eq!(versions, ["shop/years@1"], "{usage}");
    // Forcing needs a reason, and then applies (audited); the broken version stops serving.
    let (code, v) = a.post("/schema/reload", json!({ "force": true })).await;
    assert_eq!(code, 400, "{v}");
    let (code, forced) =
        a.post("/schema/reload", json!({ "force": true, "reason": "year is gone upstream" })).await;
    assert_eq!((code, forced["result"].as_str()), (200, Some("forced")), "{forced}");
    let r = app.client.get(format!("{}/v1/shop/years", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("shop/years@1"));
    let (_, audit) = a.get("/audit").await;
    let entry = audit.as_array().unwrap().iter().find(|e| e["action"] == "schema.reload").expect("audited");
    assert_eq!(
        (entry["detail"]["forced"].as_bool(), entry["reason"].as_str()),
        (Some(true), Some("year is gone upstream"))
    );
}

#[tokio::test]
async fn a_broken_file_is_refused_with_file_and_line() {
    let (_dir, file) = schema_copy();
    let app = serve(file.parent().unwrap(), false, None, "dir").await;
    let broken = file.parent().unwrap().join("broken.graphql");
    std::fs::write(&broken, "type Oops {\n  a: Int\n  b: NoSuchType\n}\n").unwrap();
    let (code, attempt) = admin(&app).post("/schema/reload", json!({})).await;
    assert_eq!(code, 422, "{attempt}");
    let reasons = attempt["reasons"].to_string();
    assert!(reasons.contains("broken.graphql:3:"), "{reasons}");
    assert!(reasons.contains("NoSuchType"), "{reasons}");
    std::fs::write(&broken, "type {{{").unwrap();
    let (code, attempt) = admin(&app).post("/schema/reload", json!({})).await;
    assert_eq!(code, 422);
    assert!(attempt["reasons"].to_string().contains("broken.graphql:1:"), "{attempt}");
    // Still serving the old schema.
    let body = app.graphql("{ title(id: 1) { name } }", json!({})).await;
    assert!(body["data"]["title"]["name"].is_string(), "{body}");
    // Nothing else changed: the reload without the bad file is a no-op.
    std::fs::remove_file(&broken).unwrap();
    let (code, attempt) = admin(&app).post("/schema/reload", json!({})).await;
    assert_eq!((code, attempt["result"].as_str()), (200, Some("unchanged")), "{attempt}");
}

#[tokio::test]
async fn requests_in_flight_across_a_swap_all_succeed() {
    let (_dir, file) = schema_copy();
    let app = Arc::new(serve(file.parent().unwrap(), false, None, "dir").await);
    let reference = app.client.get(format!("{}/v1/tv/home?profileId=1", app.base)).send().await.unwrap();
    assert_eq!(reference.status(), 200);
    let reference = reference.bytes().await.unwrap();
    // Every member lookup now takes a while, so the calls are still running at the swap; each
    // request makes its own (not shared with an identical one in flight), so all 100 are.
    app.set_faults("members", json!({ "latencyMs": 300 })).await;
    let (code, _) = admin(&app)
        .send(reqwest::Method::PATCH, "/backends/members", Some(json!({ "shareInFlight": false })))
        .await;
    assert_eq!(code, 200);
    let done = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let app = app.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let r = app
                    .client
                    .get(format!("{}/v1/tv/home?profileId=1", app.base))
                    .header("x-device-id", format!("d{i}"))
                    .send()
                    .await
                    .unwrap();
                let out = (r.status().as_u16(), r.bytes().await.unwrap());
                done.fetch_add(1, Ordering::SeqCst);
                out
            })
        })
        .collect();
    // Wait until the backend has seen them, then swap.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = app.backend_calls().await;
        if stats["members"] >= 101 {
            break;
        }
        assert!(Instant::now() < deadline, "the calls did not reach the backend: {stats:?}");
        tokio::task::yield_now().await;
    }
    append(&file, EXTRA_FIELD);
    let (code, attempt) = admin(&app).post("/schema/reload", json!({})).await;
    let finished_at_swap = done.load(Ordering::SeqCst);
    assert_eq!((code, attempt["result"].as_str()), (200, Some("applied")), "{attempt}");
    assert!(finished_at_swap < 100, "the calls were in flight at the swap ({finished_at_swap} had finished)");
    for call in calls {
        let (status, body) = call.await.unwrap();
        let shown = String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned();
        assert_eq!(status, 200, "{shown}");
        assert!(body == reference, "a call across the swap answered differently: {shown}");
    }
    eprintln!("{} of 100 calls were in flight when the swap finished", 100 - finished_at_swap);
}

#[tokio::test]
async fn a_field_moves_between_backends_under_load_with_identical_answers() {
    let (_dir, file) = schema_copy();
    let app = Arc::new(serve(file.parent().unwrap(), true, None, "dir").await);
    let one = |app: Arc<TestApp>| async move {
        let r = app.client.get(format!("{}/v1/tv/home?profileId=1", app.base)).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap())
    };
    let ((status, reference), before) = app.calls_during(one(app.clone())).await;
    assert_eq!(status, 200);
    assert_eq!((before["ratings"], before["catalog"]), (1, 1), "{before:?}");

    // Devices keep calling while the schema owner moves the field.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::SeqCst) || answers.len() < 5 {
                    answers.push(one(app.clone()).await);
                }
                answers
            })
        })
        .collect();
    let (_, status) = admin(&app).get("/schema").await;
    let old = status["hash"].as_str().unwrap().to_owned();
    edit(
        &file,
        "@http(backend: \"ratings\", batch: \"POST /ratings/batch\", keys: \"$parent.id\", match: \"titleId\")",
        "@http(backend: \"catalog\", batch: \"POST /titles/ratings\", keys: \"$parent.id\", match: \"titleId\")",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let attempt = loop {
        let (_, status) = admin(&app).get("/schema").await;
        if status["hash"] != old.as_str() {
            break status["lastAttempt"].clone();
        }
        assert!(Instant::now() < deadline, "the edit was not picked up: {status}");
        tokio::task::yield_now().await;
    };
    // Keep the load on a little after the swap, then stop.
    for _ in 0..5 {
        assert_eq!(one(app.clone()).await, (200, reference.clone()));
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for task in load {
        for (status, body) in task.await.unwrap() {
            total += 1;
            assert_eq!(status, 200);
            assert_eq!(body, reference, "an answer changed while the field moved");
        }
    }
    assert_eq!(attempt["result"], "applied", "{attempt}");
    let change =
        attempt["changes"].as_array().unwrap().iter().find(|c| c["coordinate"] == "Title.rating").unwrap();
    assert_eq!(change["level"], "dangerous", "{change}");
    assert!(change["affects"].as_array().unwrap().contains(&json!("tv/home@1")), "{change}");

    let ((status, moved), after) = app.calls_during(one(app.clone())).await;
    assert_eq!((status, moved), (200, reference));
    assert_eq!((after["ratings"], after["catalog"]), (0, 2), "{after:?}");
    eprintln!("backend calls per home call: before {before:?}, after {after:?}; {total} calls under load");
}

#[tokio::test]
async fn instances_on_one_postgres_registry_switch_to_a_published_schema_together() {
    let Some(db) = fresh_postgres().await else { return };
    let (_dir, file) = schema_copy();
    let dir = file.parent().unwrap();
    let one = serve(dir, false, Some(&db), "registry").await;
    let two = serve(dir, false, Some(&db), "registry").await;
    let a = admin(&one);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(EXTRA_FIELD);
    let (code, attempt) =
        a.put("/schema", json!({ "files": { "facade.graphql": text }, "reason": "titleAgain" })).await;
    assert_eq!((code, attempt["result"].as_str()), (200, Some("applied")), "{attempt}");
    let published = Instant::now();
    let hash = attempt["hash"].as_str().unwrap().to_owned();
    let query = "{ titleAgain(id: 1) { name } }";
    let mut switched = Vec::new();
    for app in [&one, &two] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, s) = admin(app).get("/schema").await;
            if s["hash"] == hash.as_str() {
                break;
            }
            assert!(Instant::now() < deadline, "an instance did not switch: {s}");
            tokio::task::yield_now().await;
        }
        switched.push(published.elapsed().as_millis());
        let body = app.graphql(query, json!({})).await;
        assert!(body["data"]["titleAgain"]["name"].is_string(), "{body}");
        let (_, s) = admin(app).get("/schema").await;
        assert_eq!(s["storedVersion"], 1, "{s}");
    }
    eprintln!("instances serving the published schema {switched:?} ms after the publish answered");
    // A breaking publish is refused and stores nothing.
    let (code, attempt) =
        a.put("/schema", json!({ "files": { "facade.graphql": "type Query { x: Int }" } })).await;
    assert_eq!(code, 422, "{attempt}");
    let (_, s) = admin(&two).get("/schema").await;
    assert_eq!(s["hash"], hash.as_str());
}

#[tokio::test]
async fn publishing_a_schema_needs_the_registry_source_and_an_admin() {
    let (_dir, file) = schema_copy();
    let app = serve(file.parent().unwrap(), false, None, "dir").await;
    let a = admin(&app);
    let (code, v) = a.put("/schema", json!({ "files": { "a.graphql": "type Query { x: Int }" } })).await;
    assert_eq!(code, 409, "{v}");
    assert!(v.to_string().contains("source"), "{v}");
    let (code, v) = a.put("/schema", json!({ "files": { "../a.graphql": "" } })).await;
    assert!(code == 400 || code == 409, "{code} {v}");
    // Usage: each live version with what it uses.
    let (code, usage) = a.get("/schema/usage").await;
    assert_eq!(code, 200);
    let users = usage["coordinates"]["Title.rating"].as_array().expect("Title.rating is used");
    assert!(users.iter().any(|u| u["version"] == "tv/home@1"), "{users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_diffs_two_folders_against_the_registrys_live_versions() {
    use crate::cli::{facade, text};
    let (dir, file) = schema_copy();
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("r.db").display());
    let app = serve(dir.path(), false, Some(&db), "dir").await;
    let a = admin(&app);
    assert_eq!(a.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    assert_eq!(
        a.publish("shop", "synopses", "{ title(id: 1) { synopsis rating { average } } }").await.0,
        201
    );

    let (next, next_file) = schema_copy();
    edit(&next_file, "  synopsis: String\n", "");
    append(&next_file, EXTRA_FIELD);
    let (old, new) = (dir.path().to_str().unwrap().to_owned(), next.path().to_str().unwrap().to_owned());
    let config = db_dir.path().join("facade.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{db}\"\n")).unwrap();
    let cfg = config.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        facade(&["schema", "diff", &old, &new, "--json", "--config", &cfg], &[])
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "a breaking change affecting a live version fails: {}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let changes = report["changes"].as_array().unwrap();
    let removed = changes.iter().find(|c| c["coordinate"] == "Title.synopsis").unwrap();
    assert_eq!(removed["level"], "breaking");
    assert_eq!(removed["affects"], json!(["shop/synopses@1"]));
    let added = changes.iter().find(|c| c["coordinate"] == "Query.titleAgain").unwrap();
    assert_eq!((added["level"].as_str(), added["affects"].as_array().unwrap().len()), (Some("safe"), 0));
    assert_eq!(report["breakingAffectingLiveVersions"], 1);

    // Text for people; a safe change passes.
    let (old, new) = (next.path().to_str().unwrap().to_owned(), next.path().to_str().unwrap().to_owned());
    let cfg = config.to_str().unwrap().to_owned();
    let out =
        tokio::task::spawn_blocking(move || facade(&["schema", "diff", &old, &new, "--config", &cfg], &[]))
            .await
            .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 change(s)"), "{}", text(&out));

    // Reload and usage through the running server.
    std::fs::copy(&next_file, &file).unwrap();
    let env = [("FACADE_URL", app.base.clone()), ("FACADE_TOKEN", ADMIN.to_owned())];
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        (facade(&["schema", "reload"], &env), facade(&["schema", "usage"], &env))
    })
    .await
    .unwrap();
    assert!(!out.0.status.success(), "refused: {}", text(&out.0));
    assert!(text(&out.0).contains("shop/synopses@1: field Title.synopsis was removed"), "{}", text(&out.0));
    assert!(out.1.status.success(), "{}", text(&out.1));
    assert!(text(&out.1).contains("shop/synopses@1 (stable, 0/h)"), "{}", text(&out.1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_schema_folder_of_a_running_server() {
    let (dir, file) = schema_copy();
    let server = crate::helpers::ServerProcess::start(&["--schema", dir.path().to_str().unwrap()], &[]).await;
    let (base, pid) = (server.base.clone(), server.pid().to_string());
    let client = reqwest::Client::new();
    let ask = || async {
        let r: Value = client
            .post(format!("{base}/graphql"))
            .json(&json!({ "query": "{ titleAgain(id: 2) { name } }" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r
    };
    assert!(ask().await["errors"].is_array());
    append(&file, EXTRA_FIELD);
    let killed = std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let r = ask().await;
        if r["errors"].is_null() {
            break r;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload: {r}");
        tokio::task::yield_now().await;
    };
    assert!(answer["data"]["titleAgain"]["name"].is_string(), "{answer}");
}

#[tokio::test]
async fn usage_lists_deprecated_fields_in_use_by_client_with_their_traffic() {
    let (_dir, file) = schema_copy();
    let app = serve(file.parent().unwrap(), false, None, "dir").await;
    let a = admin(&app);
    assert_eq!(a.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    assert_eq!(a.publish("shop", "blurb", "{ title(id: 1) { synopsis } }").await.0, 201);
    for _ in 0..3 {
        let r = app.client.get(format!("{}/v1/shop/blurb", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    edit(
        &file,
        "  synopsis: String\n",
        "  synopsis: String @deprecated(reason: \"ask the catalog for a blurb\")\n",
    );
    let (code, attempt) = a.post("/schema/reload", json!({})).await;
    assert_eq!((code, attempt["result"].as_str()), (200, Some("applied")), "{attempt}");
    let change = &attempt["changes"][0];
    assert_eq!(
        (change["level"].as_str(), change["coordinate"].as_str()),
        (Some("safe"), Some("Title.synopsis"))
    );
    assert_eq!(change["affects"], json!(["shop/blurb@1"]));
    let (_, usage) = a.get("/schema/usage").await;
    assert_eq!(
        usage["deprecatedInUse"],
        json!({ "Title.synopsis": { "shop": ["shop/blurb@1"] } }),
        "{usage}"
    );
    let users = usage["coordinates"]["Title.synopsis"].as_array().unwrap();
    assert_eq!(users, &vec![json!({ "version": "shop/blurb@1", "side": "stable", "requestsLastHour": 3 })]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_publishes_a_schema_to_the_registry_and_diffs_registry_versions() {
    use crate::cli::{facade, text};
    let (dir, file) = schema_copy();
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("r.db").display());
    let app = serve(dir.path(), false, Some(&db), "registry").await;
    let (_, status) = admin(&app).get("/schema").await;
    assert_eq!(
        (status["source"].as_str(), status["storedVersion"].as_i64()),
        (Some("registry"), None),
        "{status}"
    );
    let (code, attempt) = admin(&app).post("/schema/reload", json!({})).await;
    assert_eq!(code, 422);
    assert!(attempt["reasons"].to_string().contains("no schema has been published"), "{attempt}");

    let cli = |args: Vec<String>| {
        let env = [
            ("FACADE_URL", app.base.clone()),
            ("FACADE_TOKEN", ADMIN.to_owned()),
            ("FACADE_DATABASE__URL", db.clone()),
        ];
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            facade(&args, &env)
        })
    };
    let d = dir.path().to_str().unwrap().to_owned();
    let out = cli(vec!["schema".into(), "publish".into(), d.clone(), "--reason".into(), "first".into()])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    append(&file, EXTRA_FIELD);
    let out = cli(vec!["schema".into(), "publish".into(), d.clone()]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("applied") && text(&out).contains("Query.titleAgain"), "{}", text(&out));
    let (_, status) = admin(&app).get("/schema").await;
    assert_eq!(status["storedVersion"], 2, "{status}");
    let out =
        cli(vec!["schema".into(), "diff".into(), "registry:1".into(), "registry".into(), "--json".into()])
            .await
            .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["old"]["name"], "registry:1");
    assert_eq!(report["new"]["name"], "registry:2");
    assert_eq!(report["changes"][0]["coordinate"], "Query.titleAgain");
    // Publishing the first folder again rolls back to version 1.
    edit(&file, EXTRA_FIELD, "");
    let out = cli(vec!["schema".into(), "publish".into(), d]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (_, status) = admin(&app).get("/schema").await;
    assert_eq!(status["storedVersion"], 1, "{status}");
}

/// Probe 2, M5 (a): a publish that uses a field and a reload that removes it, at the same
/// moment, a hundred times. Before, a few rounds answered both "201" and "applied", and the
/// endpoint then answered 503 "no longer validates". Now one of the two is refused in every
/// round, and the endpoint always serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_racing_a_reload_that_removes_its_field_never_leaves_the_endpoint_broken() {
    let (_dir, file) = schema_copy();
    let app = serve(file.parent().unwrap(), false, None, "dir").await;
    let a = admin(&app);
    assert_eq!(a.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    let with = std::fs::read_to_string(&file).unwrap();
    let without = with.replacen("  synopsis: String\n", "", 1);
    assert_ne!(with, without);
    let (mut publish_won, mut reload_won) = (0, 0);
    for round in 0..100 {
        // The field is in the schema.
        std::fs::write(&file, &with).unwrap();
        let (code, v) = a.post("/schema/reload", json!({})).await;
        assert!(code == 200, "round {round}: the field restored: {v}");
        // A first version (live at once) that uses it, and a reload that removes it, at once.
        std::fs::write(&file, &without).unwrap();
        let name = format!("race{round}");
        let uses = "{ title(id: 1) { name synopsis } }";
        let (published, reloaded) =
            tokio::join!(a.publish("shop", &name, uses), a.post("/schema/reload", json!({})));
        let applied = reloaded.0 == 200 && reloaded.1["result"] == "applied";
        let device = app.client.get(format!("{}/v1/shop/{name}", app.base)).send().await.unwrap();
        match (published.0, applied) {
            (201, false) => {
                publish_won += 1;
                assert_eq!(device.status(), 200, "round {round}: {}", device.text().await.unwrap());
                // Out of the next rounds' way: a live version that does not use the field.
                let path = format!("/clients/shop/endpoints/{name}");
                assert_eq!(a.publish("shop", &name, "{ title(id: 1) { name } }").await.0, 201);
                assert_eq!(a.put(&format!("{path}/rollout"), json!({ "stable": 2 })).await.0, 200);
            }
            (201, true) => panic!("round {round}: both went through: {} / {}", published.1, reloaded.1),
            (_, true) => {
                reload_won += 1;
                assert!(published.1.to_string().contains("synopsis"), "round {round}: {}", published.1);
                assert_eq!(device.status(), 404, "round {round}: not published");
            }
            (code, false) => panic!("round {round}: neither: {code} {} / {}", published.1, reloaded.1),
        }
    }
    eprintln!("publish first: {publish_won} rounds; reload first: {reload_won} rounds");
}

/// Probe 2, M5 (b) and L2: rollouts, rollbacks and promotions to a version that does not
/// validate on the running schema are refused with the reason, and a refused rollout change
/// stores nothing (its guard included); an accepted one audits its guard.
#[tokio::test]
async fn a_rollout_to_a_version_the_schema_no_longer_serves_is_refused_and_stores_nothing() {
    let (_dir, file) = schema_copy();
    let app = serve(file.parent().unwrap(), false, None, "dir").await;
    let a = admin(&app);
    assert_eq!(a.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    assert_eq!(a.publish("shop", "rb", "{ title(id: 1) { name synopsis } }").await.0, 201);
    assert_eq!(a.publish("shop", "rb", "{ title(id: 1) { name } }").await.0, 201);
    let rollout = "/clients/shop/endpoints/rb/rollout";
    assert_eq!(a.put(rollout, json!({ "stable": 2 })).await.0, 200);
    // Version 1 is not live (only the rollback target): the field can go.
    edit(&file, "  synopsis: String\n", "");
    let (code, attempt) = a.post("/schema/reload", json!({})).await;
    assert_eq!((code, attempt["result"].as_str()), (200, Some("applied")), "{attempt}");
    let (_, before) = a.get(rollout).await;
    assert_eq!(
        (before["stable"].as_i64(), before["previousStable"].as_i64()),
        (Some(2), Some(1)),
        "{before}"
    );

    let (code, v) = a.post("/clients/shop/endpoints/rb/rollback", json!({})).await;
    assert_eq!(code, 409, "{v}");
    let message = v.to_string();
    assert!(
        message.contains("shop/rb: refused: version 1") && message.contains("synopsis"),
        "the reason: {v}"
    );
    let body = json!({ "stable": 2, "canary": 1, "canaryPercent": 10, "guard": { "minRequests": 7 } });
    let (code, v) = a.put(rollout, body).await;
    assert_eq!(code, 409, "{v}");
    let (code, v) = a.put(rollout, json!({ "stable": 1 })).await;
    assert_eq!(code, 409, "{v}");
    // Nothing changed: versions, guard; the endpoint serves.
    let (_, after) = a.get(rollout).await;
    assert_eq!(after, before);
    let r = app.client.get(format!("{}/v1/shop/rb", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A rollout to a version that does not exist stores nothing either (its guard was stored before).
    let (code, v) = a.put(rollout, json!({ "stable": 999, "guard": { "minRequests": 9 } })).await;
    assert!(code == 400 || code == 404 || code == 409, "{code} {v}");
    assert_eq!(a.get(rollout).await.1, before);

    // Accepted, with a guard: stored and audited together.
    assert_eq!(a.publish("shop", "rb", "{ title(id: 1) { name year } }").await.0, 201);
    let body = json!({ "stable": 2, "canary": 3, "canaryPercent": 10, "guard": { "minRequests": 7 } });
    let (code, v) = a.put(rollout, body).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["guard"]["minRequests"], 7, "{v}");
    let (_, audit) = a.get("/audit").await;
    let set = audit.as_array().unwrap().iter().find(|e| e["action"] == "rollout.set").unwrap();
    assert_eq!(set["detail"]["guard"]["minRequests"], 7, "{set}");
}

/// Probe 2, L1: a team token sees the schema's last attempt (its reasons, the versions each
/// change affects) only for its own clients, and a debug waterfall only of its own clients'
/// device calls.
#[tokio::test]
async fn a_team_sees_only_its_own_versions_in_the_schema_status_and_its_own_waterfalls() {
    let (_dir, file) = schema_copy();
    let app = serve(file.parent().unwrap(), false, None, "dir").await;
    let a = admin(&app);
    for (client, team) in [("shop", "shop"), ("kiosk", "kiosk")] {
        assert_eq!(a.post("/clients", json!({ "name": client, "team": team })).await.0, 201);
    }
    assert_eq!(a.publish("kiosk", "secret", "{ title(id: 1) { name synopsis } }").await.0, 201);
    assert_eq!(a.publish("shop", "mine", "{ title(id: 1) { name synopsis } }").await.0, 201);
    let (_, shop) = a.post("/tokens", json!({ "team": "shop", "label": "shop" })).await;
    let shop = Admin { app: &app, token: shop["token"].as_str().unwrap().to_owned() };
    edit(&file, "  synopsis: String\n", "");
    let (code, attempt) = a.post("/schema/reload", json!({})).await;
    assert_eq!(code, 422, "{attempt}");
    let (_, all) = a.get("/schema").await;
    assert!(all.to_string().contains("kiosk/secret@1"), "an admin sees every version: {all}");
    let (code, own) = shop.get("/schema").await;
    assert_eq!(code, 200);
    let text = own.to_string();
    assert!(!text.contains("kiosk/"), "another team's versions are hidden: {own}");
    assert!(text.contains("shop/mine@1"), "its own are shown: {own}");

    // Waterfalls: shop's token on kiosk's endpoint gets the plain answer.
    let debug = |path: &str, token: &str| {
        app.client
            .get(format!("{}{path}", app.base))
            .header("x-facade-debug", "1")
            .bearer_auth(token.to_owned())
            .send()
    };
    let theirs: Value = debug("/v1/kiosk/secret", &shop.token).await.unwrap().json().await.unwrap();
    assert!(theirs.get("debug").is_none() && theirs["data"].is_object(), "{theirs}");
    let mine: Value = debug("/v1/shop/mine", &shop.token).await.unwrap().json().await.unwrap();
    assert!(mine["debug"]["fetches"].is_array(), "{mine}");
    let admins: Value = debug("/v1/kiosk/secret", ADMIN).await.unwrap().json().await.unwrap();
    assert!(admins["debug"]["fetches"].is_array(), "{admins}");
}
