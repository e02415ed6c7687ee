//! OpenTelemetry traces from a real `facade serve` process: an in-process OTLP/HTTP collector
//! receives one home query's spans with their parent-child structure and attributes, the
//! caller's `traceparent` is continued and passed on to the backends, and a collector that
//! never answers costs requests nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use serde_json::{Value, json};

use crate::helpers::{ServerProcess, home_query};

/// `facade serve --demo` in a process of its own, with `env` (traces off unless it says so).
async fn serve(env: &[(&str, String)]) -> ServerProcess {
    ServerProcess::start(&[], env).await
}

/// An OTLP/HTTP collector (JSON): every span it received.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let request: Value = serde_json::from_slice(&body).expect("OTLP/JSON");
                let mut out = sink.lock().unwrap();
                for rs in request["resourceSpans"].as_array().into_iter().flatten() {
                    let service = attr(&rs["resource"], "service.name");
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for span in ss["spans"].as_array().into_iter().flatten() {
                            let mut span = span.clone();
                            span["service"] = service.clone();
                            out.push(span);
                        }
                    }
                }
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

/// An attribute's value (string, int or bool) by key.
fn attr(holder: &Value, key: &str) -> Value {
    let found = holder["attributes"].as_array().into_iter().flatten().find(|a| a["key"] == key);
    let Some(v) = found.map(|a| &a["value"]) else { return Value::Null };
    for kind in ["stringValue", "boolValue", "doubleValue"] {
        if !v[kind].is_null() {
            return v[kind].clone();
        }
    }
    match &v["intValue"] {
        Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_home_query_arrives_as_one_trace_with_its_structure_and_attributes() {
    let (collector, spans) = collector().await;
    let server = serve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
        ("OTEL_SERVICE_NAME", "facade-under-test".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ])
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/graphql", server.base))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({ "query": home_query(), "operationName": "Home", "variables": { "profileId": "1" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"].is_null(), "{body}");

    // Wait for the batch to arrive: the request, the execution, its steps and six calls.
    let deadline = Instant::now() + Duration::from_secs(30);
    let trace: Vec<Value> = loop {
        let got: Vec<Value> =
            spans.lock().unwrap().iter().filter(|s| s["traceId"] == trace_id).cloned().collect();
        if got.iter().filter(|s| s["name"] == "backend fetch").count() >= 6
            && got.iter().any(|s| s["kind"] == 2)
        {
            break got;
        }
        assert!(Instant::now() < deadline, "spans did not arrive: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let by_id: HashMap<&str, &Value> = trace.iter().map(|s| (s["spanId"].as_str().unwrap(), s)).collect();
    let named = |n: &str| trace.iter().filter(move |s| s["name"] == n).collect::<Vec<_>>();
    let parent_name = |s: &Value| {
        by_id.get(s["parentSpanId"].as_str().unwrap_or("")).map(|p| p["name"].as_str().unwrap().to_owned())
    };

    // The server span, named after OpenTelemetry's HTTP conventions.
    let request: Vec<&Value> = trace.iter().filter(|s| s["kind"] == 2).collect();
    assert_eq!(request.len(), 1);
    assert_eq!(request[0]["name"], "POST /graphql");
    assert_eq!(request[0]["parentSpanId"], caller_span, "continues the caller's traceparent");
    assert_eq!(request[0]["service"], "facade-under-test", "OTEL_SERVICE_NAME");
    assert_eq!(attr(request[0], "http.request.method"), "POST");
    assert_eq!(attr(request[0], "url.path"), "/graphql");
    assert_eq!(attr(request[0], "http.response.status_code"), 200);
    let execute = named("graphql execute");
    assert_eq!(execute.len(), 1);
    assert_eq!(parent_name(execute[0]).as_deref(), Some("POST /graphql"));
    assert_eq!(attr(execute[0], "graphql.operation.name"), "Home");
    let steps = named("fetch step");
    assert!(steps.len() >= 6, "{} steps", steps.len());
    for step in &steps {
        assert_eq!(parent_name(step).as_deref(), Some("graphql execute"), "{step}");
        assert!(attr(step, "facade.field").is_string() && attr(step, "facade.parents").is_i64(), "{step}");
    }
    let calls = named("backend fetch");
    let mut backends: Vec<String> =
        calls.iter().map(|c| attr(c, "facade.backend").as_str().unwrap().to_owned()).collect();
    backends.sort();
    assert_eq!(backends, ["artwork", "catalog", "history", "lists", "members", "ratings"]);
    for call in &calls {
        assert_eq!(parent_name(call).as_deref(), Some("fetch step"), "{call}");
        assert_eq!(attr(call, "facade.outcome"), "ok", "{call}");
        assert_eq!(attr(call, "facade.breaker.state"), "closed");
        assert_eq!(attr(call, "http.response.status_code"), 200);
        assert_eq!(attr(call, "facade.attempts"), 1);
        assert!(
            attr(call, "http.request.method").is_string() && attr(call, "url.path").is_string(),
            "{call}"
        );
        assert!(attr(call, "facade.batch.size").is_i64(), "{call}");
    }
    // The titles of ten rows went out in one call of 200 keys... batched calls say how many.
    assert!(calls.iter().any(|c| attr(c, "facade.batch.size").as_i64().unwrap() > 1));
    // The backends got the trace's context.
    let demo: Vec<Value> =
        client.get(format!("{}/demo/backends", server.base)).send().await.unwrap().json().await.unwrap();
    for b in &demo {
        let tp = b["lastTraceparent"].as_str().unwrap_or_default();
        assert!(tp.contains(trace_id), "{} got {tp:?}", b["name"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_requests_nothing() {
    // Accepts connections and never reads or answers them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let server = serve(&[
        ("FACADE_TELEMETRY__OTLP__ENDPOINT", url),
        ("FACADE_TELEMETRY__OTLP__PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
    ])
    .await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let body = json!({ "query": home_query(), "variables": { "profileId": "1" } });
    // Enough requests to fill the exporter's queue (2,048 spans) several times over.
    let mut answered = 0;
    for chunk in 0..20 {
        let calls: Vec<_> =
            (0..25).map(|_| client.post(format!("{}/graphql", server.base)).json(&body).send()).collect();
        for r in futures_util::future::join_all(calls).await {
            let r = r.unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
            assert_eq!(r.status(), 200);
            answered += 1;
        }
    }
    assert_eq!(answered, 500);
    assert!(!held.lock().unwrap().is_empty(), "the exporter did try the collector");
}
