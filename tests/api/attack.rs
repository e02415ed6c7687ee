//! Helpers for hostile and careless input (the security probes' cases, filed with the feature
//! each protects): a query posted with the media type that makes request errors 400, and
//! checks that the server keeps serving while an attack is handled.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::endpoints::Admin;
use crate::helpers::TestApp;

pub const TOKEN: &str = "fcd_admin_for_tests";

pub fn admin(app: &TestApp) -> Admin<'_> {
    Admin { app, token: TOKEN.to_owned() }
}

/// POSTs a query with the media type that makes request errors 400.
pub async fn post(app: &TestApp, body: Value) -> (u16, Value) {
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

pub async fn healthy(app: &TestApp) {
    let r = app.client.get(format!("{}/healthz", app.base)).timeout(Duration::from_secs(10)).send().await;
    assert_eq!(r.expect("/healthz answers").status(), 200);
}

/// Sends `body` while `/healthz` is asked at the same time; returns the hostile answer.
pub async fn while_healthy(app: &TestApp, body: Value) -> (u16, Value) {
    let (answer, ()) = tokio::join!(post(app, body), healthy(app));
    healthy(app).await;
    answer
}

pub fn message(body: &Value) -> String {
    body["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
}

/// Publishes `script` for `client/name` with a team token and returns the status.
pub async fn publish_script(
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

pub async fn team_token(app: &TestApp, team: &str) -> String {
    let (status, body) = admin(app).post("/tokens", json!({ "team": team, "label": team })).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Reads until the server closes the connection; `Err` if it is still open at the deadline.
pub async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> Result<Vec<u8>, ()> {
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
