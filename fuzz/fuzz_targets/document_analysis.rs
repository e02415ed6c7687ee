//! Document analysis on any query text: parse, the bounded structure check, then the cost
//! check against the demo schema. The structure check's work must stay linear in the text.
#![no_main]

use std::sync::OnceLock;

use facade::graphql::limits::{OperationLimits, analyze, check, uses_introspection};
use facade::graphql::model::FacadeSchema;
use facade::graphql::sdl::{SchemaFile, analyze as analyze_sdl};
use libfuzzer_sys::fuzz_target;

fn schema() -> &'static FacadeSchema {
    static SCHEMA: OnceLock<FacadeSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = include_str!("../../schema/facade.graphql").to_owned();
        analyze_sdl(&[SchemaFile { name: "facade.graphql".into(), text }]).expect("the demo schema loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(doc) = async_graphql::parser::parse_query(text) else { return };
    let limits = OperationLimits::default();
    let visited = match analyze(&doc, &limits) {
        Ok(a) => a.visited,
        Err(refused) => refused.visited,
    };
    // Each visit is a selection or a spread the text spells out, each at least 1 byte.
    assert!(visited <= 2 * text.len() as u64 + 2, "{visited} visits for {} bytes", text.len());
    if analyze(&doc, &limits).is_ok() {
        let _ = uses_introspection(&doc);
        let _ = check(&doc, None, schema(), &serde_json::Map::new(), limits);
    }
});
