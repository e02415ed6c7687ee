//! The playground: served from the binary with its security headers, and end to end in a real
//! headless Chromium (`playground/e2e/`, playwright-core driving Debian's `chromium`): a team's
//! author-to-rollback flow, and an admin tripping a breaker from the ops page.

use std::path::Path;

use serde_json::{Value, json};

use crate::endpoints::Admin;
use crate::helpers::{repo_path, spawn_with};

const ADMIN: &str = "fcd_admin_for_tests";

#[tokio::test]
async fn the_playground_is_served_from_the_binary_with_a_strict_policy() {
    let app = spawn_with(|_| {}).await;
    for path in ["/playground", "/playground/"] {
        let r = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let html = r.text().await.unwrap();
        assert!(html.contains("<title>Facade playground</title>"), "{html}");
        // Every asset the page names is served, from this origin only.
        for asset in html.split('"').filter(|s| s.starts_with("/playground/assets/")) {
            let r = app.client.get(format!("{}{asset}", app.base)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{asset}");
            assert!(r.headers()["cache-control"].to_str().unwrap().contains("immutable"), "{asset}");
            let body = r.text().await.unwrap();
            assert!(
                !body.contains("https://unpkg.com") && !body.contains("cdn.jsdelivr"),
                "{asset} names a CDN"
            );
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "no other origin in the page");
    }
    let r = app.client.get(format!("{}/playground/nope.js", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// Whether the browser test can run here: Chromium and the playground's npm packages.
fn browser() -> Result<String, String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).exists() {
        return Err(format!("no Chromium at {chromium} (apt-get install chromium, or set CHROMIUM)"));
    }
    if !repo_path("playground/node_modules/playwright-core").exists() {
        return Err("playground/node_modules is missing (cd playground && npm ci)".to_owned());
    }
    Ok(chromium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_end_to_end_in_chromium() {
    let chromium = match browser() {
        Ok(c) => c,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED the playground in Chromium: {why}");
            return;
        }
        Err(why) => panic!("CI must run the playground in Chromium: {why}"),
    };
    let hash = facade::http::auth::token_hash(ADMIN);
    let app = spawn_with(move |c| c.admin.token_sha256 = vec![hash]).await;
    let admin = Admin { app: &app, token: ADMIN.to_owned() };
    assert_eq!(admin.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    let (code, created) = admin.post("/tokens", json!({ "team": "shop", "label": "playground" })).await;
    assert_eq!(code, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let base = app.base.clone();
    // Bounded: a browser that never answers fails the test instead of holding CI (the node
    // process is killed when the wait is dropped).
    let mut node = tokio::process::Command::new("node");
    node.args(["--test", "--test-force-exit", "e2e/"])
        .current_dir(repo_path("playground"))
        .env("FACADE_URL", &base)
        .env("FACADE_TOKEN", &token)
        .env("FACADE_ADMIN_TOKEN", ADMIN)
        .env("CHROMIUM", &chromium)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Ok(dir) = std::env::var("PLAYGROUND_SCREENSHOTS") {
        node.env("PLAYGROUND_SCREENSHOTS", dir);
    }
    let child = node.spawn().expect("node runs");
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the playground's browser tests finish within 5 minutes")
        .expect("node's output is read");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let figures: Option<Value> = stdout
        .lines()
        .find_map(|l| {
            l.trim_start_matches("# ").strip_prefix("{\"figures\"").map(|rest| format!("{{\"figures\"{rest}"))
        })
        .and_then(|l| serde_json::from_str(&l).ok());
    eprintln!("playground figures: {figures:?}");
    // Everything the flow did is in the audit log, as the page showed it.
    let (_, audit) = admin.get("/audit?client=shop").await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["rollout.rollback", "rollout.set", "version.publish", "version.publish", "client.create"],
        "{audit}"
    );
}
