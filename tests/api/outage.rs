//! A registry outage costs only writes (issue: hardening 2, item 8). Facade talks to
//! PostgreSQL through a TCP proxy the test controls; cutting it turns every connection into a
//! black hole (nothing passes, nothing closes) and refuses nothing, which is what a network
//! partition looks like. While cut: devices are served from the snapshot, `/readyz` answers
//! (ready, the store unreachable), token holders seen recently keep working, admin writes
//! answer 503 "registry unavailable". Restored: everything works again by itself.
//!
//! No wall-clock time is asserted: each request runs under a client timeout of 5 s, so a
//! request that hangs as before (10 s and more) fails the test; the times are printed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::endpoints::{Admin, app_on, fresh_postgres};
use crate::helpers::TestApp;

const ADMIN: &str = "fcd_admin_for_tests";

/// A TCP proxy to one upstream that can be cut (a black hole) and restored (the sockets of
/// the cut are closed, new connections pass again).
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, state) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut state = state.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let cut_now = *state.borrow();
                    if cut_now {
                        // Accepted, never answered, closed when restored.
                        let _ = state.wait_for(|cut| !*cut).await.map(|_| ());
                        drop(client);
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let pipe = async {
                        tokio::join!(tokio::io::copy(&mut cr, &mut sw), tokio::io::copy(&mut sr, &mut cw))
                    };
                    let cut = async {
                        let _ = state.wait_for(|cut| *cut).await.map(|_| ());
                    };
                    tokio::select! {
                        _ = pipe => return,
                        () = cut => {}
                    }
                    // Nothing passes; both sockets stay open until restored.
                    let _ = state.wait_for(|cut| !*cut).await.map(|_| ());
                });
            }
        });
        Proxy { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

async fn timed(what: &str, request: reqwest::RequestBuilder) -> (u16, Value) {
    let started = Instant::now();
    let r = request
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer within 5 s: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    eprintln!("{what}: {status} after {} ms", started.elapsed().as_millis());
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn get(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let r = app.client.get(format!("{}{path}", app.base));
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_costs_only_writes_and_heals_by_itself() {
    let Some(db) = fresh_postgres().await else { return };
    let mut url = reqwest::Url::parse(&db).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    let app = app_on(Some(url.as_str())).await;
    let a = Admin { app: &app, token: ADMIN.to_owned() };
    assert_eq!(a.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    assert_eq!(a.publish("shop", "title", "{ title(id: 1) { name } }").await.0, 201);
    let (code, created) = a.post("/tokens", json!({ "team": "shop", "label": "seen" })).await;
    assert_eq!(code, 201, "{created}");
    let seen = created["token"].as_str().unwrap().to_owned();
    let (code, created) = a.post("/tokens", json!({ "team": "shop", "label": "unseen" })).await;
    assert_eq!(code, 201, "{created}");
    let unseen = created["token"].as_str().unwrap().to_owned();
    // The team token is used once before the cut.
    assert_eq!(timed("team token, before", get(&app, "/admin/v1/clients", Some(&seen))).await.0, 200);
    let (code, ready) = timed("/readyz, before", get(&app, "/readyz", None)).await;
    assert_eq!((code, ready["storeState"].as_str()), (200, Some("ok")), "{ready}");

    proxy.set_cut(true);
    let (code, ready) = timed("/readyz, cut", get(&app, "/readyz", None)).await;
    assert_eq!((code, ready["storeState"].as_str()), (200, Some("unreachable")), "{ready}");
    assert!(ready["reason"].is_string(), "{ready}");
    for i in 0..5 {
        let (code, body) = timed("device call, cut", get(&app, "/v1/shop/title", None)).await;
        assert_eq!(code, 200, "call {i}: {body}");
        assert_eq!(body["data"]["title"]["name"].as_str().map(str::is_empty), Some(false), "{body}");
    }
    let publish = app
        .client
        .post(format!("{}/admin/v1/clients/shop/endpoints/more/versions", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "document": "{ title(id: 2) { name } }" }));
    let (code, body) = timed("admin publish, cut", publish).await;
    assert_eq!(code, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("registry unavailable"), "{body}");
    let (code, body) = timed("admin read of the store, cut", get(&app, "/admin/v1/audit", Some(ADMIN))).await;
    assert_eq!(code, 503, "{body}");
    // A token seen before keeps its last answer; one never seen cannot be checked: 503, not 401.
    let (code, body) = timed("team token seen, cut", get(&app, "/admin/v1/clients", Some(&seen))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, json!([{ "name": "shop", "team": "shop" }]));
    let (code, body) = timed("team token unseen, cut", get(&app, "/admin/v1/clients", Some(&unseen))).await;
    assert_eq!(code, 503, "{body}");

    proxy.set_cut(false);
    // Heals by itself: poll (with a deadline) until a publish goes through.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = a.publish("shop", "more", "{ title(id: 2) { name } }").await;
        if code == 201 {
            break;
        }
        assert_eq!(code, 503, "only unavailable while healing: {body}");
        assert!(Instant::now() < deadline, "the registry did not come back: {body}");
        tokio::task::yield_now().await;
    }
    let (code, ready) = timed("/readyz, restored", get(&app, "/readyz", None)).await;
    assert_eq!((code, ready["storeState"].as_str()), (200, Some("ok")), "{ready}");
    let (code, body) = timed("the new endpoint, restored", get(&app, "/v1/shop/more", None)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["title"]["name"].as_str().map(str::is_empty), Some(false), "{body}");
    assert_eq!(
        timed("team token unseen, restored", get(&app, "/admin/v1/clients", Some(&unseen))).await.0,
        200
    );
}
