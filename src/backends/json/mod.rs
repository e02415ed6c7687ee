//! Backend answers as the engine holds them: a [`Keep`] says which fields of a body a
//! request reads, the scanner ([`scan`]) reads a body keeping only those, and a [`Tape`]
//! ([`tape`]) holds what it kept for the executor and the projection to read.
//!
//! Nothing here knows HTTP or GraphQL: bytes in, a tape out. `keep` and `tape` are leaves;
//! `scan` reads both.

pub mod keep;
pub mod scan;
pub mod tape;

pub use keep::{Keep, KeepRef};
pub use scan::{BodyError, TapeShare, parse, parse_sized};
pub use tape::{Held, Items, Marks, NULL, Tape, Val, View};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    /// Parses `bytes` keeping what `keep` says.
    fn keeping(keep: &Keep, bytes: &[u8]) -> Result<Tape, BodyError> {
        parse(bytes, keep)
    }

    #[test]
    fn keeps_only_the_named_fields_at_every_level_and_in_arrays() {
        let body =
            br#"[{"id": 1, "name": "A", "synopsis": "long \u00e9 text", "genres": ["x", {"deep": [1]}],
                         "art": {"url": "u", "width": 3}}, {"id": 2, "other": null}]"#;
        let keep = Keep::fields(["id", "name"]).union(Keep::field(Arc::from("art"), Keep::fields(["url"])));
        let v = keeping(&keep, body).unwrap().root().to_json();
        assert_eq!(v, json!([{"id": 1, "name": "A", "art": {"url": "u"}}, {"id": 2}]));
        assert_eq!(
            keeping(&Keep::All, body).unwrap().root().to_json(),
            serde_json::from_slice::<serde_json::Value>(body).unwrap()
        );
        // A kept field that is not an object stays whole; malformed JSON is still an error.
        assert_eq!(
            keeping(&Keep::fields(["a"]), br#"{"a": [1, {"b": 2}], "c": 3}"#).unwrap().root().to_json(),
            json!({"a": [1, {"b": 2}]})
        );
        assert!(keeping(&Keep::fields(["a"]), br#"{"a": 1, "c": }"#).is_err());
        assert!(keeping(&Keep::fields(["a"]), br#"{"a": 1} x"#).is_err());
        assert_eq!(keeping(&Keep::fields(["a"]), b"7").unwrap().root().as_i64(), Some(7));
        // A later duplicate wins (in its later place), kept or whole, however large the
        // object; bad UTF-8 is an error.
        let text = |keep: &Keep, body: &str| keeping(keep, body.as_bytes()).unwrap().root().to_string();
        assert_eq!(text(&Keep::fields(["a"]), r#"{"a": 1, "a": 2}"#), r#"{"a":2}"#);
        assert_eq!(text(&Keep::All, r#"{"a": 1, "b": 0, "a": 2}"#), r#"{"b":0,"a":2}"#);
        assert_eq!(text(&Keep::All, r#"{"a": {"x": 1, "x": [2]}, "a": 3, "b": {}}"#), r#"{"a":3,"b":{}}"#);
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{}": {i}"#, i % 30)).collect();
        let t = keeping(&Keep::All, format!("{{{}}}", many.join(",")).as_bytes()).unwrap();
        let (v, n) = (t.root(), 30);
        assert_eq!((v.len(), v.to_json().as_object().map(|o| o.len())), (n, Some(n)));
        assert_eq!(v.get("k3").and_then(|x| x.as_i64()), Some(33));
        assert_eq!(v.get("k29").and_then(|x| x.as_i64()), Some(29));
        assert!(keeping(&Keep::All, b"\"\xff\"").is_err());
        // Nesting is bounded (serde_json's 128 levels); numbers read as serde_json reads them;
        // escapes undone.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(keeping(&Keep::All, deep(100).as_bytes()).is_ok());
        assert!(
            keeping(&Keep::All, deep(200).as_bytes()).unwrap_err().to_string().contains("recursion limit")
        );
        let numbers: &[u8] =
            b"[1, -2, 9223372036854775808, 1e2, 0.5, 99999999999999999999999, -0.0, 1.7976931348623157e308]";
        let n = keeping(&Keep::All, numbers).unwrap();
        let n = n.root();
        assert_eq!(n.to_json(), serde_json::from_slice::<serde_json::Value>(numbers).unwrap());
        assert_eq!(n.to_string(), serde_json::from_slice::<serde_json::Value>(numbers).unwrap().to_string());
        assert!(keeping(&Keep::All, b"1e400").is_err(), "out of range, as serde_json says");
        assert_eq!(keeping(&Keep::All, br#""a\"b\u00e9\n""#).unwrap().root().as_str(), Some("a\"b\u{e9}\n"));
        assert!(keeping(&Keep::All, b"").is_err());
        assert!(keeping(&Keep::All, b"[1,]").is_err());
    }
}
