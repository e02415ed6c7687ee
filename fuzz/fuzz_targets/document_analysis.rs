//! Document analysis on any query text: parse, the bounded structure check, then the
//! introspection scan. The structure check's work must stay linear in the text. (The cost is
//! checked on compiled plans, which only validated documents reach: `tests/api` covers it.)
#![no_main]

use facade::config::Limits;
use facade::graphql::document::uses_introspection;
use facade::graphql::limits::analyze;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(doc) = async_graphql::parser::parse_query(text) else { return };
    let limits = Limits::default();
    let visited = match analyze(&doc, &limits) {
        Ok(a) => a.visited,
        Err(refused) => refused.visited,
    };
    // Each visit is a selection or a spread the text spells out, each at least 1 byte.
    assert!(visited <= 2 * text.len() as u64 + 2, "{visited} visits for {} bytes", text.len());
    if analyze(&doc, &limits).is_ok() {
        let _ = uses_introspection(&doc);
    }
});
