//! Parsing a backend body keeping only the fields a request uses.
//!
//! A catalog title carries a synopsis, genres and more; a home screen asks for its name and
//! year. The engine knows, per route, which fields of the answer anything reads (selected
//! fields, keys, route values, the match field, a discriminator), and passes that as a
//! [`Keep`]: every other field is only stepped over while parsing ([`super::scan`]: checked,
//! never decoded or allocated), which is where most of a request's instructions went.

use std::sync::Arc;

use super::data::Tape;

/// Which parts of a JSON value to keep. Applies to every element of an array.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Keep {
    /// The whole value.
    All,
    /// Of an object, only these fields (sorted by name), each kept as its `Keep` says.
    Fields(Names),
}

/// An object's kept fields, sorted by name, with the [`Probe`]s of the first eight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Names {
    fields: Vec<(Arc<str>, Keep)>,
    probes: Vec<Probe>,
}

impl Names {
    fn new(fields: Vec<(Arc<str>, Keep)>) -> Self {
        let probes = fields.iter().take(8).map(|(name, _)| Probe::of(name.as_bytes())).collect();
        Self { fields, probes }
    }

    /// How the first eight names are matched in place (see [`Probe`]).
    pub fn probes(&self) -> &[Probe] {
        &self.probes
    }
}

impl std::ops::Deref for Names {
    type Target = [(Arc<str>, Keep)];
    fn deref(&self) -> &Self::Target {
        &self.fields
    }
}

/// A kept name as the scanner matches an object's key in place: the key's first eight bytes,
/// read as one word, are compared under `mask` with the name followed by its closing quote
/// (a name of eight bytes or more: its first eight, the rest compared after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Probe {
    pub word: u64,
    pub mask: u64,
}

impl Probe {
    fn of(name: &[u8]) -> Self {
        let mut bytes = [0u8; 8];
        let quoted = name.iter().chain(std::iter::once(&b'"'));
        let mut len = 0;
        for (slot, b) in bytes.iter_mut().zip(quoted) {
            *slot = *b;
            len += 1;
        }
        let mask = if len == 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
        Self { word: u64::from_le_bytes(bytes), mask }
    }
}

impl Keep {
    /// Only these fields, each whole.
    pub fn fields<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Keep::shared(names.into_iter().map(Arc::from))
    }

    /// Only these fields, each whole, named by the texts given (the schema's shared names:
    /// the scanner finds them in the tape by address).
    pub fn shared(names: impl IntoIterator<Item = Arc<str>>) -> Self {
        names.into_iter().fold(Keep::nothing(), |keep, name| keep.union(Keep::field(name, Keep::All)))
    }

    /// Of an object, only `name`, kept as `keep` says.
    pub fn field(name: Arc<str>, keep: Keep) -> Self {
        Keep::Fields(Names::new(vec![(name, keep)]))
    }

    /// Of an object, no field.
    pub fn nothing() -> Self {
        Keep::Fields(Names::default())
    }

    /// What either keeps.
    pub fn union(self, other: Keep) -> Keep {
        match (self, other) {
            (Keep::All, _) | (_, Keep::All) => Keep::All,
            (Keep::Fields(a), Keep::Fields(b)) => {
                let mut a = a.fields;
                for (name, keep) in b.fields {
                    match a.binary_search_by(|(n, _)| n.as_ref().cmp(&name)) {
                        Ok(i) => {
                            let old = std::mem::replace(&mut a[i].1, Keep::All);
                            a[i].1 = old.union(keep);
                        }
                        Err(i) => a.insert(i, (name, keep)),
                    }
                }
                Keep::Fields(Names::new(a))
            }
        }
    }

    /// Parses `bytes` keeping what this says (see [`super::scan`]).
    pub fn parse(&self, bytes: &[u8]) -> Result<Tape, super::scan::BodyError> {
        super::scan::parse(bytes, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_the_named_fields_at_every_level_and_in_arrays() {
        let body =
            br#"[{"id": 1, "name": "A", "synopsis": "long \u00e9 text", "genres": ["x", {"deep": [1]}],
                         "art": {"url": "u", "width": 3}}, {"id": 2, "other": null}]"#;
        let keep = Keep::fields(["id", "name"]).union(Keep::field(Arc::from("art"), Keep::fields(["url"])));
        let v = keep.parse(body).unwrap().root().to_json();
        assert_eq!(v, json!([{"id": 1, "name": "A", "art": {"url": "u"}}, {"id": 2}]));
        assert_eq!(
            Keep::All.parse(body).unwrap().root().to_json(),
            serde_json::from_slice::<serde_json::Value>(body).unwrap()
        );
        // A kept field that is not an object stays whole; malformed JSON is still an error.
        assert_eq!(
            Keep::fields(["a"]).parse(br#"{"a": [1, {"b": 2}], "c": 3}"#).unwrap().root().to_json(),
            json!({"a": [1, {"b": 2}]})
        );
        assert!(Keep::fields(["a"]).parse(br#"{"a": 1, "c": }"#).is_err());
        assert!(Keep::fields(["a"]).parse(br#"{"a": 1} x"#).is_err());
        assert_eq!(Keep::fields(["a"]).parse(b"7").unwrap().root().as_i64(), Some(7));
        // A later duplicate wins (in its later place), kept or whole, however large the
        // object; bad UTF-8 is an error.
        let text = |keep: &Keep, body: &str| keep.parse(body.as_bytes()).unwrap().root().to_string();
        assert_eq!(text(&Keep::fields(["a"]), r#"{"a": 1, "a": 2}"#), r#"{"a":2}"#);
        assert_eq!(text(&Keep::All, r#"{"a": 1, "b": 0, "a": 2}"#), r#"{"b":0,"a":2}"#);
        assert_eq!(text(&Keep::All, r#"{"a": {"x": 1, "x": [2]}, "a": 3, "b": {}}"#), r#"{"a":3,"b":{}}"#);
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{}": {i}"#, i % 30)).collect();
        let t = Keep::All.parse(format!("{{{}}}", many.join(",")).as_bytes()).unwrap();
        let (v, n) = (t.root(), 30);
        assert_eq!((v.len(), v.to_json().as_object().map(|o| o.len())), (n, Some(n)));
        assert_eq!(v.get("k3").and_then(|x| x.as_i64()), Some(33));
        assert_eq!(v.get("k29").and_then(|x| x.as_i64()), Some(29));
        assert!(Keep::All.parse(b"\"\xff\"").is_err());
        // Nesting is bounded (serde_json's 128 levels); numbers read as serde_json reads them;
        // escapes undone.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(Keep::All.parse(deep(100).as_bytes()).is_ok());
        assert!(Keep::All.parse(deep(200).as_bytes()).unwrap_err().to_string().contains("recursion limit"));
        let numbers: &[u8] =
            b"[1, -2, 9223372036854775808, 1e2, 0.5, 99999999999999999999999, -0.0, 1.7976931348623157e308]";
        let n = Keep::All.parse(numbers).unwrap();
        let n = n.root();
        assert_eq!(n.to_json(), serde_json::from_slice::<serde_json::Value>(numbers).unwrap());
        assert_eq!(n.to_string(), serde_json::from_slice::<serde_json::Value>(numbers).unwrap().to_string());
        assert!(Keep::All.parse(b"1e400").is_err(), "out of range, as serde_json says");
        assert_eq!(Keep::All.parse(br#""a\"b\u00e9\n""#).unwrap().root().as_str(), Some("a\"b\u{e9}\n"));
        assert!(Keep::All.parse(b"").is_err());
        assert!(Keep::All.parse(b"[1,]").is_err());
    }

    #[test]
    fn union_is_all_when_either_is_and_merges_fields() {
        assert_eq!(Keep::fields(["a"]).union(Keep::All), Keep::All);
        let u = Keep::fields(["b", "a"]).union(Keep::fields(["c", "a"]));
        assert_eq!(u, Keep::fields(["a", "b", "c"]));
    }
}

/// A [`Keep`] shared by every fetch of one binding in one plan, compared by identity (a
/// batched route is hashed once per key; its keep need not be).
#[derive(Debug, Clone)]
pub struct KeepRef(pub Arc<Keep>);

impl PartialEq for KeepRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for KeepRef {}

impl std::hash::Hash for KeepRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}
