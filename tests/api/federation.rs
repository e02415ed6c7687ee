//! Federation groundwork (issue: federation): the benchmark's four subgraphs as a real server
//! (`facade-bench subgraphs`), and `facade schema compose` composing them, from files or from
//! the running subgraphs, with every problem placed at `subgraph:line:column`.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::cli::{facade, text};

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
