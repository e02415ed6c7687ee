//! GraphQL-over-HTTP request parsing: the first byte picks GET (query string) or POST (the
//! rest is the body, sent as JSON). Every input is either a request or a clear error.
#![no_main]

use facade::http::graphql::{RequestError, parse_get, parse_post};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let result = if first % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(raw) => parse_get(raw),
            Err(_) => return,
        }
    } else {
        parse_post("application/json", rest)
    };
    if let Err(RequestError::Malformed(message)) = &result {
        assert!(!message.is_empty());
    }
});
