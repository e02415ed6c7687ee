//! Federation groundwork (issue: federation): the benchmark's four subgraphs as a real server
//! (`facade-bench subgraphs`), and `facade schema compose` composing them, from files or from
//! the running subgraphs, with every problem placed at `subgraph:line:column`.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::cli::{facade, text};
use crate::endpoints::Admin;
use crate::helpers::{TestApp, repo_path, spawn_with};

/// `facade-bench subgraphs` on a free port; killed when dropped.
pub struct Subgraphs {
    child: Child,
    pub base: String,
}

impl Subgraphs {
    pub fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut child = Command::new(env!("CARGO_BIN_EXE_facade-bench"))
            .args(["subgraphs", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("facade-bench runs");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("a first line");
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .and_then(|w| w.split("/{").next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Self { child, base }
    }

    pub async fn query(&self, subgraph: &str, query: &str, variables: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/{subgraph}", self.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

impl Drop for Subgraphs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_benchmark_subgraphs_answer_roots_entities_and_their_sdl() {
    let s = Subgraphs::start();
    let users = s.query("accounts", "{ users { id username name } }", json!({})).await;
    assert_eq!(users["data"]["users"].as_array().unwrap().len(), 6, "{users}");
    assert_eq!(users["data"]["users"][0]["username"], "urigo");
    let top = s.query("products", "{ topProducts { upc name price weight } }", json!({})).await;
    assert_eq!(top["data"]["topProducts"].as_array().unwrap().len(), 5, "{top}");
    // Inventory ignores the price and weight it is sent: shippingEstimate is null (as the
    // benchmark's expected answer has it).
    let entities = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { upc inStock shippingEstimate } } }";
    let reps = json!({ "r": [{ "__typename": "Product", "upc": "1", "price": 899, "weight": 100 }] });
    let inv = s.query("inventory", entities, reps).await;
    assert_eq!(
        inv["data"]["_entities"][0],
        json!({ "upc": "1", "inStock": true, "shippingEstimate": null }),
        "{inv}"
    );
    // Reviews: a product's reviews, and the author every review has.
    let q = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { reviews { id author { id username } } } } }";
    let reviews = s.query("reviews", q, json!({ "r": [{ "__typename": "Product", "upc": "1" }] })).await;
    let list = reviews["data"]["_entities"][0]["reviews"].as_array().unwrap().clone();
    assert_eq!(list.len(), 4, "{reviews}");
    assert!(list.iter().all(|r| r["author"] == json!({ "id": "1", "username": "urigo" })), "{reviews}");
    let sdl = s.query("inventory", "{ _service { sdl } }", json!({})).await;
    let sdl = sdl["data"]["_service"]["sdl"].as_str().unwrap().to_owned();
    assert!(sdl.contains("shippingEstimate") && sdl.contains("@requires"), "{sdl}");
}

#[tokio::test]
async fn compose_reads_running_subgraphs_into_one_supergraph() {
    let s = Subgraphs::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("supergraph.graphql");
    let specs: Vec<String> = ["accounts", "inventory", "products", "reviews"]
        .iter()
        .map(|n| format!("{n}={}/{n}", s.base))
        .collect();
    let mut args = vec!["schema", "compose", "--out", out.to_str().unwrap()];
    args.extend(specs.iter().map(String::as_str));
    let o = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        move || facade(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let supergraph = std::fs::read_to_string(&out).unwrap();
    for name in ["accounts", "inventory", "products", "reviews"] {
        let graph = format!("@join__graph(name: \"{name}\", url: \"{}/{name}\")", s.base);
        assert!(supergraph.contains(&graph), "{graph} missing:\n{supergraph}");
    }
    assert!(supergraph.contains("requires: \"price weight\""), "{supergraph}");
    assert!(supergraph.contains("provides: \"username\""), "{supergraph}");
    assert!(supergraph.contains("key: \"upc\""), "{supergraph}");
}

#[test]
fn compose_places_every_problem_at_subgraph_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, sdl: &str| {
        let path = dir.path().join(format!("{name}.graphql"));
        std::fs::write(&path, sdl).unwrap();
        format!("{name}={}", path.display())
    };
    let fed =
        "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.3\", import: [\"@shareable\"])\n";
    let a = write("a", &format!("{fed}type Query {{\n  x: Int @shareable\n}}\n"));
    let b = write("b", &format!("{fed}type Query {{\n  y: Int\n  x: String @shareable\n}}\n"));
    let broken = write("broken", "type Query {\n  x: \n}\n");
    let o = facade(&["schema", "compose", &a, &broken], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("broken:3:1: syntax error"), "{}", text(&o));
    let o = facade(&["schema", "compose", &a, &b], &[]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("a:3:3: ") || t.contains("b:4:3: "), "placed at Query.x: {t}");
    let o = facade(&["schema", "compose", &a, "--url", "nope=http://x"], &[]);
    assert!(!o.status.success() && text(&o).contains("no subgraph nope"), "{}", text(&o));
}

impl Subgraphs {
    /// Requests each subgraph has served so far.
    pub async fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        reqwest::get(format!("{}/_calls", self.base)).await.unwrap().json().await.unwrap()
    }

    /// Requests each subgraph served while `f` ran (absent: none).
    pub async fn calls_during<F: std::future::Future>(
        &self,
        f: F,
    ) -> (F::Output, std::collections::BTreeMap<String, u64>) {
        let before = self.calls().await;
        let out = f.await;
        let mut delta = self.calls().await;
        for (name, n) in &mut delta {
            *n -= before.get(name).copied().unwrap_or(0);
        }
        delta.retain(|_, n| *n > 0);
        (out, delta)
    }

    async fn gate(&self, action: &str) {
        let r = reqwest::Client::new().post(format!("{}/_{action}", self.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

const ADMIN: &str = "fcd_admin_for_tests";

/// The benchmark's supergraph (`benches/federation/`) bound to these subgraphs, in a schema
/// folder of its own with `extra` files beside it.
fn schema_folder(s: &Subgraphs, extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_path("benches/federation/supergraph.graphql")).unwrap();
    std::fs::write(dir.path().join("supergraph.graphql"), text.replace("http://127.0.0.1:4200", &s.base))
        .unwrap();
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Facade serving that folder (the benchmark query's cost is past the default limit).
async fn serve(schema: &std::path::Path, adjust: impl FnOnce(&mut facade::config::Config)) -> TestApp {
    let schema = schema.to_owned();
    let hash = facade::http::auth::token_hash(ADMIN);
    spawn_with(move |c| {
        c.schema_dir = schema;
        c.schema.watch = false;
        c.admin.token_sha256 = vec![hash];
        c.limits.max_cost = 1_000_000;
        adjust(c);
    })
    .await
}

fn benchmark_query() -> String {
    std::fs::read_to_string(repo_path("benches/federation/query.graphql")).unwrap()
}

#[tokio::test]
async fn the_benchmark_query_chains_entities_across_four_subgraphs_in_seven_calls() {
    let s = Subgraphs::start();
    let dir = schema_folder(&s, &[]);
    let app = serve(dir.path(), |_| {}).await;
    let (r, calls) = s.calls_during(app.graphql(&benchmark_query(), json!({}))).await;
    assert!(r.get("errors").is_none(), "{r}");
    let calls: Vec<(&str, u64)> = calls.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(calls, [("accounts", 2), ("inventory", 2), ("products", 2), ("reviews", 1)]);
    // users (accounts) → reviews (reviews) → product name (products) → inStock (inventory).
    let review = &r["data"]["users"][0]["reviews"][0];
    assert_eq!(review["product"]["name"], "Table", "{review}");
    assert_eq!(review["product"]["inStock"], true, "{review}");
    assert_eq!(review["product"]["shippingEstimate"], Value::Null, "{review}");
    // The author's username comes from reviews (@provides: "user" for any user there), the
    // name from accounts.
    let author = &review["product"]["reviews"][0]["author"];
    assert_eq!(
        (&author["username"], &author["name"]),
        (&json!("urigo"), &json!("Uri Goldshtein")),
        "{author}"
    );
    // Keys in the client's order, hidden fields (__typename, keys, requires) never shown.
    let product = r["data"]["topProducts"][0].as_object().unwrap();
    let keys: Vec<&str> = product.keys().map(String::as_str).collect();
    assert_eq!(keys, ["inStock", "name", "price", "shippingEstimate", "upc", "weight", "reviews"]);
    assert_eq!(r["data"]["topProducts"].as_array().unwrap().len(), 5);

    // The waterfall (`x-facade-debug`) shows each subgraph call, named by what it fetches.
    let r: Value = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("x-facade-debug", "1")
        .bearer_auth(ADMIN)
        .json(&json!({ "query": benchmark_query() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fetches = r["extensions"]["facade"]["fetches"].as_array().unwrap();
    let mut routes: Vec<String> = fetches
        .iter()
        .map(|f| format!("{} {}", f["backend"].as_str().unwrap(), f["route"].as_str().unwrap()))
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            "accounts accounts: _entities(User)",
            "accounts accounts: query",
            "inventory inventory: _entities(Product)",
            "inventory inventory: _entities(Product)",
            "products products: _entities(Product)",
            "products products: query",
            "reviews reviews: _entities(User, Product)"
        ]
    );
    assert!(fetches.iter().all(|f| f["outcome"] == "ok" && f["method"] == "POST"), "{fetches:?}");
    // The subgraphs are backends like any other for operators (policies, breaker, calls).
    let (code, list) = Admin { app: &app, token: ADMIN.to_owned() }.get("/backends").await;
    assert_eq!(code, 200, "{list}");
    let names: Vec<&str> = list.as_array().unwrap().iter().filter_map(|b| b["name"].as_str()).collect();
    for name in ["accounts", "inventory", "products", "reviews"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
}

#[tokio::test]
async fn requires_fetches_hidden_fields_first_and_provides_saves_a_call() {
    let s = Subgraphs::start();
    let dir = schema_folder(&s, &[]);
    let app = serve(dir.path(), |_| {}).await;
    // shippingEstimate @requires price and weight: fetched from products, never shown.
    let (r, calls) =
        s.calls_during(app.graphql("{ topProducts(first: 2) { shippingEstimate } }", json!({}))).await;
    assert_eq!(
        r,
        json!({ "data": { "topProducts": [{ "shippingEstimate": null }, { "shippingEstimate": null }] } })
    );
    assert_eq!(calls.into_iter().collect::<Vec<_>>(), [("inventory".into(), 1), ("products".into(), 1)]);
    // username is provided by reviews at a review's author: accounts is not called.
    let q = "{ topProducts(first: 1) { reviews { author { username } } } }";
    let (r, calls) = s.calls_during(app.graphql(q, json!({}))).await;
    assert_eq!(r["data"]["topProducts"][0]["reviews"][0]["author"]["username"], "urigo", "{r}");
    assert!(!calls.contains_key("accounts"), "{calls:?}");
    // name is not: one accounts call for every author.
    let q = "{ topProducts(first: 2) { reviews { author { name } } } }";
    let (r, calls) = s.calls_during(app.graphql(q, json!({}))).await;
    assert_eq!(r["data"]["topProducts"][1]["reviews"][0]["author"]["name"], "Uri Goldshtein", "{r}");
    assert_eq!(calls.get("accounts"), Some(&1), "{calls:?}");
}

#[tokio::test]
async fn a_subgraph_down_costs_only_its_fields_with_errors_at_the_clients_paths() {
    let s = Subgraphs::start();
    let dir = schema_folder(&s, &[]);
    let app = serve(dir.path(), |c| {
        c.backends.entry("inventory".into()).or_default().url = Some("http://127.0.0.1:1/inventory".into());
    })
    .await;
    let r = app.graphql("{ topProducts(first: 2) { name inStock } }", json!({})).await;
    assert_eq!(r["data"]["topProducts"][0], json!({ "name": "Table", "inStock": null }), "{r}");
    assert_eq!(r["data"]["topProducts"][1], json!({ "name": "Couch", "inStock": null }), "{r}");
    let paths: Vec<&Value> = r["errors"].as_array().unwrap().iter().map(|e| &e["path"]).collect();
    assert_eq!(paths, [&json!(["topProducts", 0, "inStock"]), &json!(["topProducts", 1, "inStock"])], "{r}");
    assert_eq!(r["errors"][0]["extensions"]["code"], "BACKEND_ERROR", "{r}");
}

#[tokio::test]
async fn a_type_mixes_subgraph_fields_and_a_rest_field() {
    let s = Subgraphs::start();
    let rest = r#"
extend schema @backend(name: "ratings", url: "http://127.0.0.1:1")
type Rating {
  titleId: ID!
  average: Float
}
extend type Product {
  "From the REST ratings service, by the product's upc."
  rating: Rating @http(backend: "ratings", batch: "POST /ratings/batch", keys: "$parent.upc", match: "titleId")
}
"#;
    let dir = schema_folder(&s, &[("rest.graphql", rest)]);
    let app = serve(dir.path(), |_| {}).await;
    let (r, calls) = app
        .calls_during(app.graphql("{ topProducts(first: 3) { name rating { average } } }", json!({})))
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    for p in r["data"]["topProducts"].as_array().unwrap() {
        assert!(p["name"].is_string() && p["rating"]["average"].is_number(), "{p}");
        // upc is read for the route, not shown.
        assert!(p.get("upc").is_none(), "{p}");
    }
    assert_eq!(calls["ratings"], 1, "one batch for every product: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_endpoint_with_a_transform_runs_on_the_supergraph_and_a_breaking_change_is_refused() {
    let s = Subgraphs::start();
    let dir = schema_folder(&s, &[]);
    let app = serve(dir.path(), |_| {}).await;
    let a = Admin { app: &app, token: ADMIN.to_owned() };
    assert_eq!(a.post("/clients", json!({ "name": "shop", "team": "shop" })).await.0, 201);
    let script = "export default function (data) {\n  return { inStock: data.topProducts.filter(p => p.inStock).map(p => p.name) };\n}";
    let document = "query Top($n: Int) { topProducts(first: $n) { name inStock } }";
    let (code, v) = a
        .post("/clients/shop/endpoints/top/versions", json!({ "document": document, "script": script }))
        .await;
    assert_eq!(code, 201, "{v}");
    let r: Value =
        app.client.get(format!("{}/v1/shop/top?n=5", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(r, json!({ "inStock": ["Table", "TV"] }));

    // Removing inStock from the supergraph breaks shop/top@1: refused, the old one serves.
    let file = dir.path().join("supergraph.graphql");
    let text = std::fs::read_to_string(&file).unwrap();
    let line = "  inStock: Boolean @join__field(graph: INVENTORY)\n";
    assert!(text.contains(line));
    std::fs::write(&file, text.replace(line, "")).unwrap();
    let (code, attempt) = a.post("/schema/reload", json!({})).await;
    assert_eq!(code, 422, "{attempt}");
    let reasons: Vec<&str> =
        attempt["reasons"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(reasons.contains(&"shop/top@1: field Product.inStock was removed"), "{reasons:?}");
    let r: Value =
        app.client.get(format!("{}/v1/shop/top?n=2", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(r, json!({ "inStock": ["Table"] }));
}

#[tokio::test]
async fn two_identical_requests_in_flight_cost_one_call_per_subgraph_step() {
    let s = Subgraphs::start();
    let dir = schema_folder(&s, &[]);
    let app = serve(dir.path(), |_| {}).await;
    let q = "{ topProducts(first: 3) { name inStock } }";
    // Compiled once before (two first sights of a text compile two plans, whose calls
    // differ in the fields they keep).
    app.graphql(q, json!({})).await;
    let before = s.calls().await;
    s.gate("hold").await;
    // Held at products: the second request joins the first one's call; let through, both
    // go on to inventory, where the same happens; then released.
    let app = &app;
    let shared = |backend: &'static str| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let line = format!("facade_backend_shared_calls_total{{backend=\"{backend}\"}} 1");
        loop {
            let metrics =
                app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
            if metrics.contains(&line) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no shared {backend} call:\n{metrics}");
            tokio::task::yield_now().await;
        }
    };
    let control = async {
        shared("products").await;
        s.gate("step").await;
        shared("inventory").await;
        s.gate("release").await;
    };
    let (a, b, ()) = futures_util::join!(app.graphql(q, json!({})), app.graphql(q, json!({})), control);
    assert_eq!(a, b);
    assert_eq!(a["data"]["topProducts"][0], json!({ "name": "Table", "inStock": true }), "{a}");
    let after = s.calls().await;
    let delta = |n: &str| after.get(n).copied().unwrap_or(0) - before.get(n).copied().unwrap_or(0);
    assert_eq!((delta("products"), delta("inventory")), (1, 1), "{after:?}");
}

/// A supergraph of two hand-written subgraphs (`one`, `two`) at `base`.
const TWO_SUBGRAPHS: &str = r#"schema
  @link(url: "https://specs.apollo.dev/link/v1.0")
  @link(url: "https://specs.apollo.dev/join/v0.3", for: EXECUTION)
{
  query: Query
  mutation: Mutation
}
enum join__Graph {
  ONE @join__graph(name: "one", url: "BASE/one")
  TWO @join__graph(name: "two", url: "BASE/two")
}
type Query @join__type(graph: ONE) {
  things: [Thing] @join__field(graph: ONE)
}
type Mutation @join__type(graph: ONE) {
  bump: Int @join__field(graph: ONE)
}
type Thing @join__type(graph: ONE, key: "id") @join__type(graph: TWO, key: "id") {
  id: ID!
  name: String @join__field(graph: ONE)
  score: Int @join__field(graph: TWO)
  note: String @join__field(graph: TWO)
}
"#;

/// Two subgraphs that answer with errors beside their data (`one`: a root field's error;
/// `two`: an entity's field failed, another entity missing), and count `bump`s; each
/// request's body is kept.
async fn erring_subgraphs() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = |seen: std::sync::Arc<std::sync::Mutex<Vec<Value>>>, answer: fn(&Value) -> Value| {
        move |axum::Json(body): axum::Json<Value>| async move {
            let out = answer(&body);
            seen.lock().unwrap().push(body);
            axum::Json(out)
        }
    };
    let one = |body: &Value| {
        if body["query"].as_str().unwrap().starts_with("mutation") {
            // As a subgraph would answer `a:bump` or `b:bump`.
            return json!({ "data": { "a": 1, "b": 1 } });
        }
        json!({
            "data": { "things": [{ "id": "1", "name": "a" }, { "id": "2", "name": null }] },
            "errors": [{ "message": "name 2 failed", "path": ["things", 1, "name"] }]
        })
    };
    let two = |_: &Value| {
        json!({
            "data": { "_e0": [{ "score": 1, "note": null }, null] },
            "errors": [
                { "message": "note failed", "path": ["_e0", 0, "note"] },
                { "message": "thing 2 is gone", "path": ["_e0", 1] }
            ]
        })
    };
    let app = axum::Router::new()
        .route("/one", post(keep(seen.clone(), one)))
        .route("/two", post(keep(seen.clone(), two)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

#[tokio::test]
async fn subgraph_errors_are_written_at_the_clients_paths_and_mutations_run_once_each_in_order() {
    let (base, seen) = erring_subgraphs().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("supergraph.graphql"), TWO_SUBGRAPHS.replace("BASE", &base)).unwrap();
    let app = serve(dir.path(), |_| {}).await;
    let r = app.graphql("{ things { id name score note } }", json!({})).await;
    assert_eq!(
        r["data"],
        json!({ "things": [
            { "id": "1", "name": "a", "score": 1, "note": null },
            { "id": "2", "name": null, "score": null, "note": null }
        ] }),
        "{r}"
    );
    let errors: Vec<(String, Value)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["message"].as_str().unwrap().to_owned(), e["path"].clone()))
        .collect();
    let expect =
        |m: &str, p: Value| assert!(errors.contains(&(m.to_owned(), p.clone())), "{m} at {p}: {errors:?}");
    expect("name 2 failed", json!(["things", 1, "name"]));
    expect("note failed", json!(["things", 0, "note"]));
    expect("Thing@two: thing 2 is gone", json!(["things", 1, "score"]));
    expect("Thing@two: thing 2 is gone", json!(["things", 1, "note"]));
    assert_eq!(errors.len(), 4, "{errors:?}");
    // Both things' representations went in one call.
    let bodies = seen.lock().unwrap().clone();
    let reps = &bodies.iter().find(|b| b["query"].as_str().unwrap().contains("_entities")).unwrap()["variables"]
        ["r0"];
    assert_eq!(reps, &json!([{ "__typename": "Thing", "id": "1" }, { "__typename": "Thing", "id": "2" }]));

    // Two mutation fields: two calls, one after the other, each a mutation document.
    seen.lock().unwrap().clear();
    let r = app.graphql("mutation { a: bump b: bump }", json!({})).await;
    assert_eq!(r, json!({ "data": { "a": 1, "b": 1 } }));
    let bodies = seen.lock().unwrap().clone();
    let docs: Vec<&str> = bodies.iter().map(|b| b["query"].as_str().unwrap()).collect();
    assert_eq!(docs, ["mutation{a:bump}", "mutation{b:bump}"]);
}

/// The same subgraphs bound by hand in a facade schema of its own (no supergraph): `@graphql`
/// fields, `@entity` keys, a REST field on the same type.
const HAND_WRITTEN: &str = r#"
extend schema
  @backend(name: "products", url: "BASE/products", protocol: "graphql")
  @backend(name: "inventory", url: "BASE/inventory", protocol: "graphql")
  @backend(name: "reviews", url: "BASE/reviews", protocol: "graphql")
  @backend(name: "ratings", url: "http://127.0.0.1:1")
type Query {
  topProducts(first: Int = 5): [Product] @graphql(backend: "products")
}
type Product
  @entity(backend: "products", key: "upc")
  @entity(backend: "inventory", key: "upc")
  @entity(backend: "reviews", key: "upc") {
  upc: String!
  name: String @graphql(backend: "products")
  price: Int @graphql(backend: "products")
  weight: Int @graphql(backend: "products")
  inStock: Boolean @graphql(backend: "inventory")
  shippingEstimate: Int @graphql(backend: "inventory", requires: "price weight")
  reviews: [Review] @graphql(backend: "reviews")
  rating: Rating @http(backend: "ratings", batch: "POST /ratings/batch", keys: "$parent.upc", match: "titleId")
}
type Review {
  id: ID!
  body: String
}
type Rating {
  titleId: ID!
  average: Float
}
"#;

#[tokio::test]
async fn hand_written_graphql_bindings_mix_subgraph_and_rest_fields_on_one_type() {
    let s = Subgraphs::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.graphql"), HAND_WRITTEN.replace("BASE", &s.base)).unwrap();
    let app = serve(dir.path(), |_| {}).await;
    let q = "{ topProducts(first: 2) { name inStock shippingEstimate reviews { body } rating { average } } }";
    let (r, calls) = s.calls_during(app.graphql(q, json!({}))).await;
    assert!(r.get("errors").is_none(), "{r}");
    let first = &r["data"]["topProducts"][0];
    assert_eq!((&first["name"], &first["inStock"]), (&json!("Table"), &json!(true)), "{r}");
    assert!(first["reviews"][0]["body"].is_string() && first["rating"]["average"].is_number(), "{r}");
    let calls: Vec<(&str, u64)> = calls.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(calls, [("inventory", 1), ("products", 1), ("reviews", 1)]);
}

#[test]
fn hand_written_bindings_are_checked_at_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "extend schema\n  @backend(name: \"rest\", url: \"http://127.0.0.1:1\")\n  @backend(name: \"sub\", url: \"http://127.0.0.1:1\", protocol: \"graphql\")\ntype Query {\n  a: A @graphql(backend: \"rest\")\n  b: A @graphql(backend: \"sub\")\n}\ntype A {\n  x: Int @graphql(backend: \"sub\")\n}\n";
    std::fs::write(dir.path().join("s.graphql"), bad).unwrap();
    let o = facade(&["schema", "check", "--schema", dir.path().to_str().unwrap()], &[]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("s.graphql:5:26: Query.a @graphql: backend \"rest\" is not a subgraph"), "{t}");
    assert!(t.contains("s.graphql:9:10: A.x: A has no @entity(backend: \"sub\""), "{t}");
}
