//! The admin CLI against a running server: token create, migrate, publish, endpoints list,
//! rollout.

use std::process::Command;

use serde_json::json;

use crate::helpers::spawn_with;

pub fn facade(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facade"));
    c.args(args).env_remove("FACADE_TOKEN").env_remove("FACADE_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs facade")
}

pub fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_cli_publish_list_and_roll_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("reg.db").display());
    let config = dir.path().join("facade.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{db}\"\n")).unwrap();
    let cfg = config.to_str().unwrap();

    let out = tokio::task::spawn_blocking({
        let cfg = cfg.to_owned();
        move || facade(&["migrate", "--config", &cfg], &[])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = tokio::task::spawn_blocking({
        let cfg = cfg.to_owned();
        move || facade(&["token", "create", "--admin", "--label", "ops", "--config", &cfg], &[])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("fcd_"), "{token}");

    let db2 = db.clone();
    let app = spawn_with(move |c| c.database.url = db2).await;
    let r = app
        .client
        .post(format!("{}/admin/v1/clients", app.base))
        .bearer_auth(&token)
        .json(&json!({"name": "box", "team": "box-team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the CLI's token is an admin token of the server");

    let files = dir.path().join("endpoints");
    std::fs::create_dir_all(files.join("box")).unwrap();
    std::fs::write(files.join("box/ping.graphql"), "query Ping { __typename }").unwrap();
    let (base, t, f) = (app.base.clone(), token.clone(), files.to_str().unwrap().to_owned());
    let run = move |args: Vec<String>| {
        let (base, t) = (base.clone(), t.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            facade(&args, &[("FACADE_URL", &base), ("FACADE_TOKEN", &t)])
        })
    };
    let out = run(vec!["publish".into(), f.clone()]).await.unwrap();
    assert!(out.status.success() && text(&out).contains("box/ping: published version 1"), "{}", text(&out));
    let out = run(vec!["publish".into(), f.clone()]).await.unwrap();
    assert!(text(&out).contains("box/ping: unchanged (version 1)"), "{}", text(&out));
    std::fs::write(files.join("box/ping.graphql"), "query Ping { __typename title(id: 1) { id } }").unwrap();
    assert!(text(&run(vec!["publish".into(), f.clone()]).await.unwrap()).contains("published version 2"));
    let out = run(vec![
        "rollout".into(),
        "box/ping".into(),
        "--stable".into(),
        "1".into(),
        "--canary".into(),
        "2".into(),
        "--percent".into(),
        "25".into(),
    ])
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = run(vec!["endpoints".into(), "list".into()]).await.unwrap();
    let listing = text(&out);
    assert!(listing.lines().any(|l| l.starts_with("box/ping") && l.contains("25%")), "{listing}");
    let out = run(vec![
        "rollout".into(),
        "box/ping".into(),
        "--promote".into(),
        "--reason".into(),
        "looks good".into(),
    ])
    .await
    .unwrap();
    assert!(out.status.success() && text(&out).contains("\"stable\":2"), "{}", text(&out));

    std::fs::write(files.join("box/broken.graphql"), "query { nope }").unwrap();
    let out = run(vec!["publish".into(), f]).await.unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("box/broken: refused (HTTP 400)"), "{}", text(&out));
    let out = tokio::task::spawn_blocking(|| facade(&["endpoints", "list"], &[])).await.unwrap();
    assert!(!out.status.success() && text(&out).contains("no token"), "{}", text(&out));
}

/// Tokens never reach the logs, even at trace level, whether valid, invalid or just created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_the_server_log() {
    use std::io::{BufRead, BufReader};
    const CONFIG_TOKEN: &str = "fcd_config_token_for_log_test";
    let dir = tempfile::tempdir().unwrap();
    /// Kills the server even when an assertion fails first.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_facade"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "trace")
        .env("FACADE_DATABASE__URL", format!("sqlite://{}", dir.path().join("log.db").display()))
        .env("FACADE_ADMIN__TOKEN_SHA256", format!("[\"{}\"]", facade::http::auth::token_hash(CONFIG_TOKEN)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line.split_whitespace().find(|w| w.starts_with("http://")).expect("listening line").to_owned();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{base}/admin/v1/tokens"))
        .bearer_auth(CONFIG_TOKEN)
        .json(&json!({"team": "tv-team", "label": "log-test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let team_token = created["token"].as_str().unwrap().to_owned();
    for token in [CONFIG_TOKEN, team_token.as_str(), "fcd_not_a_real_token"] {
        let _ = client.get(format!("{base}/admin/v1/clients")).bearer_auth(token).send().await.unwrap();
        let _ = client
            .post(format!("{base}/graphql"))
            .bearer_auth(token)
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await
            .unwrap();
    }
    drop(child);
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(log.len() > 1000, "the trace log is there: {} bytes", log.len());
    for token in [CONFIG_TOKEN, team_token.as_str(), "fcd_not_a_real_token"] {
        assert!(!log.contains(token), "a token appears in the log");
        assert!(!log.contains(&token[4..]), "a token's secret part appears in the log");
    }
}
