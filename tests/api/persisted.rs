//! `/graphql` with automatic persisted queries, stored documents by ID, safelist mode and
//! introspection switched off for devices.

use serde_json::{Value, json};

use crate::helpers::{TestApp, home_query, repo_path, spawn_with};

fn sha256(text: &str) -> String {
    facade::registry::sha256_hex(&[text])
}

async fn post(app: &TestApp, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut r = app.client.post(format!("{}/graphql", app.base)).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn automatic_persisted_queries_as_apollo_clients_expect() {
    let app = spawn_with(|_| {}).await;
    let query = "{ title(id: 11) { name } }";
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(query) } });
    let (status, body) = post(&app, json!({ "extensions": ext }), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
    let (status, body) = post(&app, json!({ "query": query, "extensions": ext }), None).await;
    assert_eq!((status, body["data"]["title"]["name"].is_string()), (200, true));
    let (_, by_hash) = post(&app, json!({ "extensions": ext }), None).await;
    assert_eq!(by_hash, body);
    // GET with the hash alone, as Apollo's GET mode sends it.
    let r = app
        .client
        .get(format!("{}/graphql", app.base))
        .query(&[("extensions", ext.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), body);
    let wrong = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256("something else") } });
    let (status, body) = post(&app, json!({ "query": query, "extensions": wrong }), None).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("not the SHA-256 of the query"));
}

#[tokio::test]
async fn stored_documents_run_by_id() {
    let app = spawn_with(|_| {}).await;
    // tv/home is a sample endpoint published in demo mode.
    let text = std::fs::read_to_string(repo_path("resolvers-js/endpoints/tv/home.graphql")).unwrap();
    let id = format!("sha256:{}", sha256(&text));
    let (status, body) = post(&app, json!({ "documentId": id, "variables": {"profileId": "1"} }), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["profile"]["rows"].as_array().unwrap().len(), 10);
    let (_, body) = post(&app, json!({ "documentId": "sha256:00" }), None).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND");
}

#[tokio::test]
async fn safelist_mode_runs_only_published_documents_for_devices() {
    const TOKEN: &str = "fcd_safelist_admin";
    let hash = facade::http::auth::token_hash(TOKEN);
    let app = spawn_with(move |c| {
        c.graphql.safelist = true;
        c.graphql.introspection = false;
        c.admin.token_sha256 = vec![hash];
    })
    .await;
    let adhoc = json!({ "query": "{ title(id: 1) { name } }" });
    let (status, body) = post(&app, adhoc.clone(), None).await;
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_ALLOWED");
    let (status, _) = post(&app, adhoc, Some(TOKEN)).await;
    assert_eq!(status, 200, "a token may run ad-hoc queries");
    // A published document, sent as text, by ID or by hash, runs.
    let text = home_query();
    let published = std::fs::read_to_string(repo_path("resolvers-js/endpoints/tv/home.graphql")).unwrap();
    assert_eq!(text, published);
    let vars = json!({"profileId": "1"});
    let (status, _) = post(&app, json!({ "query": text, "variables": vars }), None).await;
    assert_eq!(status, 200);
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(&text) } });
    let (status, body) = post(&app, json!({ "extensions": ext, "variables": vars }), None).await;
    assert_eq!(status, 200, "{body}");
    // Devices cannot register new queries through APQ in safelist mode.
    let q = "{ title(id: 2) { name } }";
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(q) } });
    assert_eq!(post(&app, json!({ "query": q, "extensions": ext }), None).await.0, 403);
    assert_eq!(
        post(&app, json!({ "extensions": ext }), None).await.1["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
}

#[tokio::test]
async fn introspection_can_be_off_for_devices() {
    const TOKEN: &str = "fcd_introspect";
    let hash = facade::http::auth::token_hash(TOKEN);
    let app = spawn_with(move |c| {
        c.graphql.introspection = false;
        c.admin.token_sha256 = vec![hash];
    })
    .await;
    let q = json!({ "query": "{ __schema { queryType { name } } }" });
    let (first_status, refused) = post(&app, q.clone(), None).await;
    let body = refused.clone();
    assert!(
        body["errors"][0]["message"].as_str().unwrap().to_lowercase().contains("introspection"),
        "{body}"
    );
    let (_, body) = post(&app, q.clone(), Some(TOKEN)).await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    // The text is compiled and cached now; a device without a token is still refused.
    let (status, body) = post(&app, q, None).await;
    assert_eq!((status, body), (first_status, refused));
}

/// Hostile and careless input against this feature (the security probes' cases): each gets a
/// clear answer, the server keeps serving, and no other tenant or device is affected.
mod hostile_input {

    use serde_json::json;

    use crate::attack::*;

    use crate::helpers::spawn_with;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn apq_texts_are_capped_bounded_in_bytes_and_stored_only_when_valid() {
        let app = spawn_with(|c| c.graphql.apq_max_bytes = 200_000).await;
        let sha = |q: &str| facade::registry::sha256_hex(&[q]);
        let register = |q: String| {
            let h = sha(&q);
            post(
                &app,
                json!({ "query": q, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": h } } }),
            )
        };
        let by_hash = |q: &str| {
            post(&app, json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": sha(q) } } }))
        };
        // Over the one-text cap: refused before anything is stored.
        let big = format!("#{}\n{{ __typename }}", "x".repeat(70_000));
        let (status, body) = register(big.clone()).await;
        assert_eq!(status, 400);
        assert!(message(&body).contains("at most 65536 bytes"), "{body}");
        // Ten texts of ~60 KB into a 200 KB budget: the oldest are gone, the newest kept.
        let texts: Vec<String> =
            (0..10).map(|i| format!("#{i:02}{}\n{{ __typename }}", "x".repeat(60_000))).collect();
        for t in &texts {
            assert_eq!(register(t.clone()).await.0, 200);
        }
        assert_eq!(message(&by_hash(&texts[0]).await.1), "PersistedQueryNotFound");
        assert_eq!(by_hash(&texts[9]).await.1["data"]["__typename"], "Query");
        // A text that does not validate is not stored.
        let invalid = "{ noSuchField }".to_owned();
        assert_eq!(register(invalid.clone()).await.0, 400);
        assert_eq!(message(&by_hash(&invalid).await.1), "PersistedQueryNotFound");
    }
}
