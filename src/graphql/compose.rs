//! `facade schema compose`: subgraph SDLs (Apollo Federation, v1 or v2) composed into one
//! Federation 2 supergraph (`@link` join v0.3: `join__Graph`, `@join__type`, `@join__field`),
//! the file a federated router reads. Composition itself is Grafbase's `graphql-composition`
//! (well kept, MPL-2.0, no network); this file gives its errors a place: each is reported as
//! `subgraph:line:column: reason`, the place found by reading the subgraph with async-graphql's
//! parser (a syntax error is reported by it the same way).

use std::collections::HashMap;

use async_graphql::Pos;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

/// One subgraph to compose: its name (the `join__Graph` value it becomes), where a router
/// reaches it, and its SDL.
#[derive(Debug, Clone)]
pub struct Subgraph {
    pub name: String,
    pub url: Option<String>,
    pub sdl: String,
}

/// A composed supergraph, and what composition warned about (each placed as errors are).
#[derive(Debug, Clone)]
pub struct Composed {
    pub supergraph: String,
    pub warnings: Vec<String>,
}

/// Composes `subgraphs`; `Err` lists every problem, each as `subgraph:line:column: reason`
/// where it can be placed (`supergraph: reason` where it cannot).
pub fn compose(subgraphs: &[Subgraph]) -> Result<Composed, Vec<String>> {
    let mut problems = Vec::new();
    if subgraphs.is_empty() {
        return Err(vec!["no subgraphs to compose: give at least one NAME=SOURCE".to_owned()]);
    }
    let mut places = Vec::with_capacity(subgraphs.len());
    for (i, s) in subgraphs.iter().enumerate() {
        if let Err(why) = check_name(&s.name) {
            problems.push(format!("subgraph {:?}: {why}", s.name));
        }
        if subgraphs[..i].iter().any(|o| o.name == s.name) {
            problems.push(format!("subgraph {:?} is given twice", s.name));
        }
        match Places::of(&s.sdl) {
            Ok(p) => places.push(p),
            Err((pos, why)) => {
                problems.push(format!("{}:{}:{}: {why}", s.name, pos.line, pos.column));
                places.push(Places::default());
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut graphs = graphql_composition::Subgraphs::default();
    for s in subgraphs {
        // async-graphql's parser read it already; this one reports in its own words.
        if let Err(e) = graphs.ingest_str(&s.sdl, &s.name, s.url.as_deref()) {
            problems.push(format!("{}: {e}", s.name));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let result = graphql_composition::compose(&mut graphs);
    let place = |message: &str| locate(message, subgraphs, &places);
    let warnings = result.diagnostics().iter_warnings().map(place).collect();
    match result.into_result() {
        Ok(graph) => {
            let supergraph = graphql_composition::render_federated_sdl(&graph)
                .map_err(|e| vec![format!("supergraph: the composed graph could not be written: {e}")])?;
            Ok(Composed { supergraph: root_join_types(&supergraph), warnings })
        }
        Err(diagnostics) => Err(diagnostics.iter_errors().map(place).collect()),
    }
}

/// Gives each root type written without `@join__type` one per subgraph its fields name, as
/// Apollo's composition writes them: routers that plan from the types' subgraphs (Hive
/// Router) find no root field without them. `graphql-composition` leaves them out.
fn root_join_types(sdl: &str) -> String {
    let mut out = sdl.to_owned();
    for root in ["Query", "Mutation", "Subscription"] {
        let head = format!("\ntype {root}\n{{");
        let Some(start) = out.find(&head) else { continue };
        let body_start = start + head.len();
        let Some(len) = out[body_start..].find("\n}") else { continue };
        let mut graphs: Vec<&str> = Vec::new();
        for piece in out[body_start..body_start + len].split("@join__field(graph: ").skip(1) {
            let graph = piece.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("");
            if !graph.is_empty() && !graphs.contains(&graph) {
                graphs.push(graph);
            }
        }
        if graphs.is_empty() {
            continue;
        }
        let directives: String = graphs.iter().map(|g| format!("\n  @join__type(graph: {g})")).collect();
        out.replace_range(start..body_start, &format!("\ntype {root}{directives}\n{{"));
    }
    out
}

/// A subgraph's name becomes a `join__Graph` value and a backend name.
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return Err("a name starts with a letter or _"),
    }
    if name.len() > 64 {
        return Err("a name has at most 64 characters");
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(())
    } else {
        Err("a name holds only letters, digits, _ and -")
    }
}

/// Where each type and field of one subgraph is written.
#[derive(Debug, Default)]
struct Places {
    types: HashMap<String, Pos>,
    fields: HashMap<(String, String), Pos>,
}

impl Places {
    fn of(sdl: &str) -> Result<Self, (Pos, String)> {
        let doc = async_graphql::parser::parse_schema(sdl).map_err(|e| {
            let pos = e.positions().next().unwrap_or_default();
            // The parser's text draws the place; what is expected follows its last `= `.
            let text = e.to_string();
            let why = text.rsplit_once("= ").map_or(text.as_str(), |(_, why)| why).trim();
            (pos, format!("syntax error: {}", why.replace('\n', " ")))
        })?;
        let mut places = Places::default();
        for def in &doc.definitions {
            let TypeSystemDefinition::Type(t) = def else { continue };
            let name = t.node.name.node.to_string();
            places.types.entry(name.clone()).or_insert(t.pos);
            let fields = match &t.node.kind {
                TypeKind::Object(o) => o.fields.iter().map(|f| (f.node.name.node.as_str(), f.pos)).collect(),
                TypeKind::Interface(i) => {
                    i.fields.iter().map(|f| (f.node.name.node.as_str(), f.pos)).collect()
                }
                TypeKind::InputObject(i) => {
                    i.fields.iter().map(|f| (f.node.name.node.as_str(), f.pos)).collect()
                }
                _ => Vec::new(),
            };
            for (field, pos) in fields {
                places.fields.entry((name.clone(), field.to_owned())).or_insert(pos);
            }
        }
        Ok(places)
    }

    /// The place of `Type.field` or `Type`.
    fn find(&self, coordinate: &str) -> Option<Pos> {
        match coordinate.split_once('.') {
            Some((t, f)) => self.fields.get(&(t.to_owned(), f.to_owned())).copied(),
            None => self.types.get(coordinate).copied(),
        }
    }
}

/// Places a composition message: in the subgraph it names (`[name] …`), or else the first
/// subgraph that writes the first coordinate (`Type.field`, then a type) it mentions.
fn locate(message: &str, subgraphs: &[Subgraph], places: &[Places]) -> String {
    let named = message
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(name, _)| subgraphs.iter().position(|s| s.name == name));
    let words: Vec<&str> = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .map(|w| w.trim_matches('.'))
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'))
        .collect();
    // Fields first (the more precise place), then types.
    let candidates =
        words.iter().filter(|w| w.contains('.')).chain(words.iter().filter(|w| !w.contains('.')));
    let order: Vec<usize> = named.into_iter().chain(0..subgraphs.len()).collect();
    for coordinate in candidates {
        for &i in &order {
            if let Some(pos) = places[i].find(coordinate) {
                return format!("{}:{}:{}: {message}", subgraphs[i].name, pos.line, pos.column);
            }
        }
    }
    match named {
        Some(i) => format!("{}: {message}", subgraphs[i].name),
        None => format!("supergraph: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(name: &str, sdl: &str) -> Subgraph {
        Subgraph {
            name: name.to_owned(),
            url: Some(format!("http://127.0.0.1:4200/{name}")),
            sdl: sdl.to_owned(),
        }
    }

    const FED2: &str = "extend schema @link(url: \"https://specs.apollo.dev/federation/v2.3\", import: [\"@key\", \"@shareable\"])\n";

    #[test]
    fn root_types_get_a_join_type_per_subgraph_of_their_fields() {
        let sdl = "scalar x\n\ntype Query\n{\n  a: Int @join__field(graph: B)\n  b: Int @join__field(graph: A_1)\n  c: Int @join__field(graph: B)\n}\n";
        assert_eq!(
            root_join_types(sdl),
            "scalar x\n\ntype Query\n  @join__type(graph: B)\n  @join__type(graph: A_1)\n{\n  a: Int @join__field(graph: B)\n  b: Int @join__field(graph: A_1)\n  c: Int @join__field(graph: B)\n}\n"
        );
    }

    #[test]
    fn two_subgraphs_compose_into_a_join_supergraph() {
        let products = format!(
            "{FED2}type Query {{\n  topProducts: [Product]\n}}\n\ntype Product @key(fields: \"upc\") {{\n  upc: String!\n  name: String\n}}\n"
        );
        let reviews =
            format!("{FED2}type Product @key(fields: \"upc\") {{\n  upc: String!\n  reviews: [String]\n}}\n");
        let composed = compose(&[sub("products", &products), sub("reviews", &reviews)]).unwrap();
        let s = &composed.supergraph;
        assert!(s.contains("join__Graph"), "{s}");
        assert!(
            s.contains("@join__graph(name: \"products\", url: \"http://127.0.0.1:4200/products\")"),
            "{s}"
        );
        assert!(s.contains("@join__type(graph: REVIEWS, key: \"upc\")"), "{s}");
        assert!(s.contains("topProducts"), "{s}");
    }

    #[test]
    fn errors_name_the_subgraph_line_and_column() {
        let e = compose(&[sub("a", "type Query {\n  x: Int\n  y: \n}\n")]).unwrap_err();
        assert_eq!(e, ["a:4:1: syntax error: expected type_"]);
        // The same field with different types in two subgraphs: placed in a subgraph's SDL.
        let a = format!("{FED2}type Query {{\n  x: Int @shareable\n}}\n");
        let b = format!("{FED2}type Query {{\n  y: Int\n\n  x: String @shareable\n}}\n");
        let e = compose(&[sub("a", &a), sub("b", &b)]).unwrap_err();
        assert!(!e.is_empty());
        assert!(
            e.iter().any(|m| m.starts_with("a:3:3: ") || m.starts_with("b:5:3: ")),
            "placed at Query.x in a or b: {e:?}"
        );
        let e = compose(&[sub("bad name", "type Query { x: Int }"), sub("x", "type Query { y: Int }")])
            .unwrap_err();
        assert!(e[0].contains("\"bad name\""), "{e:?}");
        assert!(compose(&[]).is_err());
    }
}
