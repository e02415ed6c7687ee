//! The SDL loader and checker on any text: it must answer (a model or diagnostics), never
//! panic or overflow its stack.
#![no_main]

use facade::graphql::sdl::{SchemaFile, analyze};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let files = [SchemaFile { name: "fuzz.graphql".into(), text: text.to_owned() }];
    if let Err(diagnostics) = analyze(&files) {
        // Every problem says where (the file, or "schema" for the whole) and what.
        assert!(!diagnostics.0.is_empty());
        assert!(diagnostics.0.iter().all(|d| !d.message.is_empty()), "{diagnostics:?}");
    }
});
