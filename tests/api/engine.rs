//! The engine against the demo backends: batching, deduplication, failure isolation.

use std::collections::BTreeSet;

use facade::demo::{DemoData, TITLES_PER_ROW};
use serde_json::{Value, json};

use crate::helpers::{home_query, spawn_app, spawn_with};

const BACKENDS: [&str; 6] = ["members", "lists", "catalog", "artwork", "ratings", "history"];

/// Distinct title IDs on the first `rows` rows (first `per_row` titles each) of a profile.
fn distinct_titles(profile: u64, rows: usize, per_row: usize) -> usize {
    let data = DemoData::new(1);
    let ids: BTreeSet<u64> = data
        .rows(profile, rows)
        .unwrap()
        .into_iter()
        .flat_map(|r| r.title_ids.into_iter().take(per_row))
        .collect();
    ids.len()
}

fn titles(body: &Value) -> Vec<&Value> {
    body["data"]["profile"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["titles"].as_array().unwrap())
        .collect()
}

#[tokio::test]
async fn home_query_makes_one_call_per_level_and_backend() {
    let app = spawn_app().await;
    let (body, calls) = app.calls_during(app.graphql(&home_query(), json!({"profileId": "1"}))).await;
    assert!(body.get("errors").is_none(), "{}", body["errors"]);
    for backend in BACKENDS {
        assert_eq!(calls[backend], 1, "calls to {backend}: {calls:?}");
    }
    let rows = body["data"]["profile"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r["titles"].as_array().unwrap().len() == 20));
    let all = titles(&body);
    assert!(all.iter().all(|t| t["name"].is_string() && t["artwork"]["url"].is_string()));
    assert!(all.iter().all(|t| t["rating"]["average"].is_f64()));
    // About half of the (profile, title) pairs have a bookmark in the demo data.
    let bookmarked = all.iter().filter(|t| t["bookmark"].is_object()).count();
    assert!(bookmarked > 40 && bookmarked < 160, "{bookmarked} bookmarks");
}

#[tokio::test]
async fn response_keeps_the_query_field_order() {
    let app = spawn_app().await;
    let body = app.graphql("{ title(id: 7) { year name id } }", json!({})).await;
    let keys: Vec<&String> = body["data"]["title"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["year", "name", "id"]);
}

#[tokio::test]
async fn one_call_per_item_when_batches_hold_one_key() {
    // 198 single-key calls at once: lift the bulkhead (64 in flight by default) for this case.
    let app = spawn_with(|c| {
        c.engine.max_batch_size = 1;
        c.engine.max_concurrent = 1000;
    })
    .await;
    let (body, calls) = app.calls_during(app.graphql(&home_query(), json!({"profileId": "1"}))).await;
    assert!(body.get("errors").is_none(), "{}", body["errors"]);
    let distinct = distinct_titles(1, 10, 20) as u64;
    assert_eq!(calls["members"], 1);
    assert_eq!(calls["lists"], 1);
    for backend in ["catalog", "artwork", "ratings", "history"] {
        assert_eq!(calls[backend], distinct, "{backend}: {calls:?}");
    }
}

#[tokio::test]
async fn large_home_screen_splits_batches_as_predicted() {
    const MAX: usize = 100;
    let app = spawn_with(|c| c.engine.max_batch_size = MAX).await;
    let query = home_query()
        .replace("rows(first: 10)", "rows(first: 50)")
        .replace("titles(first: 20)", "titles(first: 40)");
    const { assert!(40 <= TITLES_PER_ROW) };
    let (body, calls) = app.calls_during(app.graphql(&query, json!({"profileId": "3"}))).await;
    assert!(body.get("errors").is_none(), "{}", &body.to_string()[..500]);
    assert_eq!(titles(&body).len(), 50 * 40);
    let expected = distinct_titles(3, 50, 40).div_ceil(MAX) as u64;
    assert!(expected >= 18, "the case must split: {expected}");
    assert_eq!(calls["members"], 1);
    assert_eq!(calls["lists"], 1);
    for backend in ["catalog", "artwork", "ratings", "history"] {
        assert_eq!(calls[backend], expected, "{backend}: {calls:?}");
    }
}

#[tokio::test]
async fn identical_fetches_in_one_request_are_made_once() {
    let app = spawn_app().await;
    let query = r#"{
        a: profile(id: 2) { name rows(first: 2) { name } }
        b: profile(id: 2) { id rows(first: 2) { titleIds } }
        t1: title(id: 5) { name } t2: title(id: 5) { year }
    }"#;
    let (body, calls) = app.calls_during(app.graphql(query, json!({}))).await;
    assert!(body.get("errors").is_none(), "{}", body["errors"]);
    assert_eq!(body["data"]["a"]["rows"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"]["b"]["rows"][0]["titleIds"].as_array().unwrap().len(), 60);
    assert!(body["data"]["t1"]["name"].is_string());
    assert!(body["data"]["t2"]["year"].is_i64());
    assert_eq!(calls["members"], 1, "{calls:?}");
    assert_eq!(calls["lists"], 1, "{calls:?}");
    assert_eq!(calls["catalog"], 1, "{calls:?}");
}

#[tokio::test]
async fn failing_backend_costs_only_its_own_fields() {
    let app = spawn_app().await;
    app.set_faults("ratings", json!({"errorRate": 1.0})).await;
    let body = app.graphql(&home_query(), json!({"profileId": "1"})).await;
    let all = titles(&body);
    assert_eq!(all.len(), 200);
    assert!(all.iter().all(|t| t["rating"].is_null()));
    assert!(all.iter().all(|t| t["name"].is_string() && t["artwork"]["url"].is_string()));
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 200, "one error per failed path");
    let paths: BTreeSet<String> = errors.iter().map(|e| e["path"].to_string()).collect();
    assert_eq!(paths.len(), 200, "distinct paths");
    for e in errors {
        let path = e["path"].as_array().unwrap();
        assert_eq!(path.last().unwrap(), "rating");
        assert_eq!(e["extensions"]["code"], "BACKEND_ERROR");
        assert!(e["message"].as_str().unwrap().contains("backend ratings"), "{e}");
    }
}

#[tokio::test]
async fn timed_out_backend_is_a_timeout_error_and_the_rest_arrives() {
    let app = spawn_with(|c| {
        c.backends.entry("artwork".into()).or_default().policy.timeout_ms = Some(100);
    })
    .await;
    app.set_faults("artwork", json!({"hang": true})).await;
    let body = app.graphql(&home_query(), json!({"profileId": "1"})).await;
    app.set_faults("artwork", json!({})).await;
    let all = titles(&body);
    assert_eq!(all.len(), 200);
    assert!(all.iter().all(|t| t["artwork"].is_null() && t["rating"].is_object()));
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 200);
    assert!(errors.iter().all(|e| e["extensions"]["code"] == "TIMEOUT"), "{}", errors[0]);
}

#[tokio::test]
async fn unknown_ids_are_null_without_errors() {
    let app = spawn_app().await;
    let body = app.graphql("{ profile(id: 999999) { name } title(id: 0) { name } }", json!({})).await;
    assert_eq!(body, json!({"data": {"profile": null, "title": null}}));
}

#[tokio::test]
async fn faults_endpoint_rejects_bad_input_and_unknown_backends() {
    let app = spawn_app().await;
    let url = |name: &str| format!("{}/demo/backends/{name}/faults", app.base);
    let r = app.client.post(url("ratings")).json(&json!({"errorRate": 1.5})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("errorRate"));
    let r = app.client.post(url("nope")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = app.client.post(url("ratings")).json(&json!({"latency": 5})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("latency"));
}

#[tokio::test]
async fn a_failed_non_null_field_nulls_its_nearest_nullable_parent() {
    let dir = tempfile::tempdir().unwrap();
    let sdl = std::fs::read_to_string(crate::helpers::repo_path("schema/facade.graphql")).unwrap();
    assert!(sdl.contains("  rating: Rating\n"));
    std::fs::write(
        dir.path().join("facade.graphql"),
        sdl.replace("  rating: Rating\n", "  rating: Rating!\n"),
    )
    .unwrap();
    let app = spawn_with(|c| c.schema_dir = dir.path().to_owned()).await;
    app.set_faults("ratings", json!({"errorRate": 1.0})).await;
    let body = app.graphql(&home_query(), json!({"profileId": "1"})).await;
    let rows = body["data"]["profile"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    // Title! items cannot be null, so each row's nullable titles list takes the null.
    assert!(rows.iter().all(|r| r["name"].is_string() && r["titles"].is_null()), "{:?}", rows[0]);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 200, "one error per failed path");
    for (i, e) in errors.iter().enumerate() {
        let path = e["path"].as_array().unwrap();
        assert_eq!(path[..3], [json!("profile"), json!("rows"), json!(path[2].as_u64().unwrap())]);
        assert_eq!(path.last().unwrap(), "rating", "error {i}: {e}");
    }
    let mut rows_hit: Vec<u64> = errors.iter().map(|e| e["path"][2].as_u64().unwrap()).collect();
    rows_hit.sort_unstable();
    rows_hit.dedup();
    assert_eq!(rows_hit.len(), 10);
}

#[tokio::test]
async fn sibling_fetches_run_concurrently() {
    // artwork hangs (with a long timeout); if title fields were fetched one after another,
    // ratings and history would not be called until artwork answered.
    let app = std::sync::Arc::new(
        spawn_with(|c| {
            c.backends.entry("artwork".into()).or_default().policy.timeout_ms = Some(60_000);
        })
        .await,
    );
    app.set_faults("artwork", json!({"hang": true})).await;
    let before = app.backend_calls().await;
    let query = {
        let app = app.clone();
        tokio::spawn(async move { app.graphql(&home_query(), json!({"profileId": "1"})).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = app.backend_calls().await;
        let called = |b: &str| now[b] > before[b];
        if called("artwork") && called("ratings") && called("history") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ratings and history were not called while artwork hung"
        );
        tokio::task::yield_now().await;
    }
    app.set_faults("artwork", json!({})).await;
    let body = query.await.unwrap();
    assert!(body.get("errors").is_none(), "{}", body["errors"]);
    assert!(titles(&body).iter().all(|t| t["artwork"]["url"].is_string()));
}

/// The keys of a JSON object in the order they were written.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[tokio::test]
async fn response_keys_follow_the_selection_order_whatever_finishes_first() {
    let app = spawn_app().await;
    // The first root field waits for a slow backend, the last fails at once.
    app.set_faults("catalog", json!({"latencyMs": 15})).await;
    app.set_faults("ratings", json!({"errorRate": 1.0, "errorStatus": 403})).await;
    let query = r#"{
        slow: title(id: 1) { name id rating { average } year }
        fast: profile(id: "1") { name id }
        __typename
        broken: title(id: 2) { rating { average } id }
    }"#;
    for run in 0..100 {
        let body = app.graphql(query, json!({})).await;
        let data = &body["data"];
        assert_eq!(keys(data), ["slow", "fast", "__typename", "broken"], "run {run}: {body}");
        assert_eq!(keys(&data["slow"]), ["name", "id", "rating", "year"], "run {run}");
        assert_eq!(keys(&data["fast"]), ["name", "id"], "run {run}");
        assert_eq!(keys(&data["broken"]), ["rating", "id"], "run {run}");
        assert!(data["broken"]["rating"].is_null());
        assert_eq!(keys(&body), ["data", "errors"]);
    }
}

#[tokio::test]
async fn fields_under_one_key_are_merged_and_conflicts_refused() {
    let app = spawn_app().await;
    let body = app
        .graphql(
            "{ title(id: 1) { id } ...F title(id: 1) { artwork { url } name } } fragment F on Query { title(id: 1) { year id } }",
            json!({}),
        )
        .await;
    assert_eq!(keys(&body["data"]["title"]), ["id", "year", "artwork", "name"], "{body}");
    // Every field skipped: an empty object, as the spec says.
    let body = app.graphql("{ title(id: 1) { id @skip(if: true) } }", json!({})).await;
    assert_eq!(body, json!({"data": {"title": {}}}));
    // One key, two different arguments: refused before anything runs.
    let body = app
        .graphql("{ title(id: 1) { id } ...G } fragment G on Query { title(id: 2) { id } }", json!({}))
        .await;
    assert!(body["data"].is_null(), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("use an alias"), "{body}");
    // A null variable where a value is required names the variable.
    let body =
        app.graphql("query($x: Boolean) { title(id: 1) { id @include(if: $x) } }", json!({"x": null})).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("$x"), "{body}");
    // A variable of the wrong type names it and its type.
    let body = app.graphql("query($id: ID!) { title(id: $id) { id } }", json!({"id": [1, 2]})).await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("$id") && message.contains("ID!"), "{body}");
}

#[tokio::test]
async fn mutations_run_in_order_once_each_and_their_answers_are_projected() {
    let app = spawn_app().await;
    let mutation = r#"mutation($input: BookmarkInput!) {
        first: rateTitle(titleId: 7, stars: 5) { titleId count }
        again: rateTitle(titleId: 7, stars: 1) { count average }
        saveBookmark(input: $input) { titleId positionSeconds }
        addToMyList(profileId: 3, titleId: 7) { profileId titles { id name } }
        __typename
    }"#;
    let input = json!({"input": {"profileId": "3", "titleId": "7", "positionSeconds": 321}});
    let (body, calls) = app.calls_during(app.graphql(mutation, input)).await;
    assert!(body.get("errors").is_none(), "{body}");
    let data = &body["data"];
    assert_eq!(keys(data), ["first", "again", "saveBookmark", "addToMyList", "__typename"]);
    // Two identical-looking votes are two calls, made one after the other.
    let first = data["first"]["count"].as_u64().unwrap();
    assert_eq!(data["again"]["count"].as_u64().unwrap(), first + 1, "{body}");
    assert_eq!(calls["ratings"], 2);
    assert_eq!(data["saveBookmark"], json!({"titleId": "7", "positionSeconds": 321}));
    assert_eq!(
        data["addToMyList"]["titles"],
        json!([{"id": "7", "name": data["addToMyList"]["titles"][0]["name"]}])
    );
    assert_eq!(data["__typename"], "Mutation");
    // What the mutations wrote, read back by a query.
    let body = app
        .graphql(
            r#"{ profile(id: 3) { myList { titleIds } } title(id: 7) { bookmark(profileId: 3) { positionSeconds } rating { count } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["profile"]["myList"]["titleIds"], json!(["7"]));
    assert_eq!(body["data"]["title"]["bookmark"]["positionSeconds"], 321);
    assert_eq!(body["data"]["title"]["rating"]["count"].as_u64().unwrap(), first + 1);
    // A bad input is the backend's 400, on that field only; a mistyped input object is refused.
    let body = app.graphql("mutation { rateTitle(titleId: 7, stars: 9) { count } }", json!({})).await;
    assert_eq!(body["errors"][0]["path"], json!(["rateTitle"]), "{body}");
    let body = app
        .graphql(
            "mutation($input: BookmarkInput!) { saveBookmark(input: $input) { titleId } }",
            json!({"input": {"titleId": 1}}),
        )
        .await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("BookmarkInput") && message.contains("profileId"), "{body}");
}

#[tokio::test]
async fn interfaces_and_unions_resolve_the_concrete_type_from_backend_json() {
    let app = spawn_app().await;
    let query = r#"query($id: ID!) {
        series: video(id: $id) {
            __typename id name
            ... on Show { seasons { number episodes(first: 2) { id number name } } }
            ... on Title { runtimeMinutes }
        }
        film: video(id: 7) { __typename id ...Film }
        missing: video(id: "s999") { id }
        search(term: "the", first: 6) {
            __typename
            ... on Video { name }
            ... on Show { seasonIds }
            ... on Title { year rating { average } }
        }
    }
    fragment Film on Title { name runtime }"#;
    let (body, calls) = app.calls_during(app.graphql(query, json!({"id": "s3"}))).await;
    assert!(body.get("errors").is_none(), "{body}");
    let data = &body["data"];
    let series = &data["series"];
    assert_eq!(keys(series), ["__typename", "id", "name", "seasons"], "{series}");
    assert_eq!(series["__typename"], "Show");
    let seasons = series["seasons"].as_array().unwrap();
    assert!(!seasons.is_empty());
    for (i, season) in seasons.iter().enumerate() {
        assert_eq!(season["number"], i + 1);
        let episodes = season["episodes"].as_array().unwrap();
        assert_eq!(episodes.len(), 2);
        assert_eq!(episodes[0]["id"], format!("s3-{}-1", i + 1));
    }
    assert_eq!(data["film"]["__typename"], "Title");
    assert_eq!(keys(&data["film"]), ["__typename", "id", "name", "runtime"]);
    assert!(data["missing"].is_null());
    let found = data["search"].as_array().unwrap();
    assert_eq!(found.len(), 6);
    for item in found {
        match item["__typename"].as_str().unwrap() {
            "Show" => assert_eq!(keys(item), ["__typename", "name", "seasonIds"], "{item}"),
            "Title" => {
                assert_eq!(keys(item), ["__typename", "name", "year", "rating"], "{item}");
                assert!(item["rating"]["average"].is_number());
            }
            other => panic!("unexpected type {other}"),
        }
        assert!(item["name"].as_str().unwrap().to_lowercase().contains("the"));
    }
    // One call per level: 3 videos and the search, then seasons and ratings, then episodes.
    assert_eq!(calls["catalog"], 3 + 1 + 1 + 1, "{calls:?}");
    assert!(calls["ratings"] <= 1, "{calls:?}");
    // A fragment on a type the value is not stays out; an unknown kind is an error on that path.
    let body = app.graphql(r#"{ video(id: 7) { ... on Show { seasonIds } id } }"#, json!({})).await;
    assert_eq!(body["data"]["video"], json!({"id": "7"}));
}

#[tokio::test]
async fn a_schema_with_a_bad_interface_is_refused_with_every_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.graphql"),
        r#"extend schema @backend(name: "b", url: "http://127.0.0.1:9")
type Query { v: V @http(backend: "b", get: "/v") u: U @http(backend: "b", get: "/u") }
interface V { id: ID! }
type A implements V { name: String }
type B implements V { id: Int }
union U @discriminator(field: "kind") = A | V
"#,
    )
    .unwrap();
    let e = facade::graphql::check_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("V: an interface or union needs @discriminator"), "{e}");
    assert!(e.contains("type A implements V but has no field id"), "{e}");
    assert!(e.contains("B.id: type Int differs from V.id: ID!"), "{e}");
    assert!(e.contains("union U: member V is not an object type"), "{e}");
    assert!(e.contains("s.graphql:"), "{e}");
}

#[tokio::test]
async fn a_reload_compiles_only_versions_that_were_not_live_before() {
    use facade::registry::Registry;
    use facade::registry::model::{ClientName, EndpointName};
    use facade::registry::publish::{PublishRequest, publish};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config();
    let limits = facade::scripts::ScriptLimits::default();
    let pool = crate::helpers::script_pool(1, limits);
    let js =
        facade::graphql::js::JsFunctions::load(&config.scripts.resolvers_dir, pool.clone()).await.unwrap();
    let options = facade::app::engine_options(&config, None, Some(js));
    let engine = std::sync::Arc::new(facade::graphql::Engine::load(&config.schema_dir, &options).unwrap());
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let registry = Registry::open(&url, engine).await.unwrap();
    registry.store().create_client("tv", "tv", "test", None).await.unwrap();
    let client = ClientName::parse("tv").unwrap();
    for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let endpoint = EndpointName::parse(name).unwrap();
        let before = registry.compiled_versions();
        let request = PublishRequest {
            draft: facade::registry::publish::Draft {
                client: &client,
                endpoint: &endpoint,
                document: "{ title(id: 1) { name } }",
                operation_name: None,
                script: None,
                allow_introspection: false,
            },
            sample_variables: None,
            trial: true,
            author: "test",
            reason: None,
        };
        publish(&registry, &pool, request).await.unwrap();
        // Only the new version: the i versions live before are carried over.
        assert_eq!(registry.compiled_versions() - before, 1, "publish {i}");
    }
    registry.reload().await.unwrap();
    assert_eq!(registry.compiled_versions(), 4, "a reload with nothing new compiles nothing");
}

#[tokio::test]
async fn introspection_is_answered_beside_data_in_selection_order() {
    let app = spawn_app().await;
    let body = app
        .graphql(
            r#"query($t: String!) { __typename title(id: 1) { id } __schema { queryType { name } } t: __type(name: $t) { name kind } }"#,
            json!({"t": "Video"}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(keys(&body["data"]), ["__typename", "title", "__schema", "t"]);
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    assert_eq!(body["data"]["t"], json!({"name": "Video", "kind": "INTERFACE"}));
    assert_eq!(body["data"]["title"]["id"], "1");
}

#[tokio::test]
async fn a_literal_argument_of_the_wrong_type_is_refused_with_its_place() {
    let app = spawn_app().await;
    let (body, calls) = app
        .calls_during(app.graphql("{ title(id: 7) { artwork(size: HUGE) { url } } rows: profile(id: 1) { rows(first: \"x\") { name } } }", json!({})))
        .await;
    assert!(body["data"].is_null(), "{body}");
    let messages: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("argument size of Title.artwork (ArtworkSize)") && m.contains("HUGE")),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m.contains("argument first of Profile.rows (Int)")), "{messages:?}");
    assert!(messages.iter().all(|m| m.starts_with("1:")), "with line:column: {messages:?}");
    assert!(calls.values().all(|n| *n == 0), "nothing was fetched: {calls:?}");
}

/// Hostile and careless input against this feature (the security probes' cases): each gets a
/// clear answer, the server keeps serving, and no other tenant or device is affected.
mod hostile_input {

    use serde_json::{Value, json};

    use crate::attack::*;
    use crate::endpoints::app_on;
    use crate::helpers::spawn_with;

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
}
