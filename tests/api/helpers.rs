//! `spawn_app()` and typed helpers over a running instance.

use std::collections::HashMap;
use std::path::PathBuf;

use facade::app::App;
use facade::config::Config;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The reference home-screen query, published as the `tv/home` sample endpoint.
pub fn home_query() -> String {
    std::fs::read_to_string(repo_path("resolvers-js/endpoints/tv/home.graphql")).expect("home query")
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// Holds the SQLite registry file of this instance for as long as it runs.
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

/// A demo-mode config on an ephemeral port with the repository's schema.
pub fn test_config() -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        schema_dir: repo_path("schema"),
        ..Config::default()
    };
    config.demo.enabled = true;
    // The test binary is not `facade`: script workers run the real binary.
    config.scripts.worker_program = Some(env!("CARGO_BIN_EXE_facade").into());
    config
}

/// A script pool whose workers run the `facade` binary.
pub fn script_pool(workers: usize, limits: facade::scripts::ScriptLimits) -> facade::scripts::ScriptPool {
    let program = facade::scripts::WorkerProgram(env!("CARGO_BIN_EXE_facade").into());
    facade::scripts::ScriptPool::with_program(program, workers, limits).expect("script workers start")
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.database.url = format!("sqlite://{}", dir.path().join("facade.db").display());
    adjust(&mut config);
    let app = App::build(&config).await.expect("app builds");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp { base, client: reqwest::Client::new(), _dir: dir, _stop: stop }
}

impl TestApp {
    /// GETs `path` and parses the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap().json().await.unwrap()
    }

    /// Requests served so far by each demo backend.
    pub async fn backend_calls(&self) -> HashMap<String, u64> {
        let list: Vec<Value> = self.get_json("/demo/backends").await;
        list.iter()
            .map(|b| (b["name"].as_str().unwrap().to_owned(), b["requests"].as_u64().unwrap()))
            .collect()
    }

    /// Runs `f` and returns how many calls each backend received meanwhile.
    pub async fn calls_during<F: std::future::Future>(&self, f: F) -> (F::Output, HashMap<String, u64>) {
        let before = self.backend_calls().await;
        let out = f.await;
        let after = self.backend_calls().await;
        let delta = after.iter().map(|(k, v)| (k.clone(), v - before[k])).collect();
        (out, delta)
    }

    pub async fn set_faults(&self, backend: &str, faults: Value) {
        let response = self
            .client
            .post(format!("{}/demo/backends/{backend}/faults", self.base))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    /// POSTs a GraphQL request and returns the parsed body (asserting HTTP 200).
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        let response = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// `facade serve --demo` as a real process (the binary, its signals, its own tracing setup) on
/// 127.0.0.1:0 with a SQLite file of its own and the schema watch off; killed when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    pub base: String,
    _db: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts it with `args` after `serve --demo --listen 127.0.0.1:0` and `env` (the
    /// OpenTelemetry variables of the test's own environment are not passed on), and waits
    /// for the line that says where it listens.
    pub async fn start(args: &[&str], env: &[(&str, String)]) -> Self {
        use std::io::BufRead;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_facade"));
        command
            .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(repo_path("."))
            .env("FACADE_DATABASE__URL", format!("sqlite://{}", db.path().join("r.db").display()))
            .env("FACADE_SCHEMA__WATCH", "false")
            .env("FACADE_LOG__FILTER", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for k in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME"] {
            command.env_remove(k);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let base = tokio::task::spawn_blocking(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .find_map(|l| l.ok()?.strip_prefix("facade listening on ").map(str::to_owned))
                .expect("the server says where it listens")
        })
        .await
        .unwrap();
        Self { child, base, _db: db }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
