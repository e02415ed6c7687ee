//! Parsing a backend body keeping only the fields a request uses.
//!
//! A catalog title carries a synopsis, genres and more; a home screen asks for its name and
//! year. The engine knows, per route, which fields of the answer anything reads (selected
//! fields, keys, route values, the match field, a discriminator), and passes that as a
//! [`Keep`]: every other field is skipped while parsing (`IgnoredAny`: scanned, never
//! allocated), which is where most of a request's instructions went. Written here because
//! serde_json parses either everything (`Value`) or a fixed type; what is kept is only known
//! at run time. Recursion follows the JSON, which serde_json bounds (128 levels).

use std::fmt;
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Which parts of a JSON value to keep. Applies to every element of an array.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Keep {
    /// The whole value.
    All,
    /// Of an object, only these fields (sorted by name), each kept as its `Keep` says.
    Fields(Vec<(Arc<str>, Keep)>),
}

impl Keep {
    /// Only these fields, each whole.
    pub fn fields<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut keep = Keep::Fields(Vec::new());
        for name in names {
            keep = keep.union(Keep::Fields(vec![(Arc::from(name), Keep::All)]));
        }
        keep
    }

    /// What either keeps.
    pub fn union(self, other: Keep) -> Keep {
        match (self, other) {
            (Keep::All, _) | (_, Keep::All) => Keep::All,
            (Keep::Fields(mut a), Keep::Fields(b)) => {
                for (name, keep) in b {
                    match a.binary_search_by(|(n, _)| n.as_ref().cmp(&name)) {
                        Ok(i) => {
                            let old = std::mem::replace(&mut a[i].1, Keep::All);
                            a[i].1 = old.union(keep);
                        }
                        Err(i) => a.insert(i, (name, keep)),
                    }
                }
                Keep::Fields(a)
            }
        }
    }

    /// Parses `bytes` keeping what this says.
    pub fn parse(&self, bytes: &[u8]) -> serde_json::Result<Value> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = Seed(self).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

struct Seed<'k>(&'k Keep);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            Keep::All => serde::Deserialize::deserialize(d),
            Keep::Fields(fields) => FieldsSeed(fields).deserialize(d),
        }
    }
}

/// Each element of an array, keeping the same fields.
struct FieldsSeed<'k>(&'k [(Arc<str>, Keep)]);

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(Pruned(self.0))
    }
}

/// An object keeping `fields`; arrays keep the same in each element; scalars stay whole.
struct Pruned<'k>(&'k [(Arc<str>, Keep)]);

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(index) = map.next_key_seed(KeyOf(self.0))? {
            match index {
                Some((i, name)) => {
                    let value = map.next_value_seed(Seed(&self.0[i].1))?;
                    out.insert(name, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(FieldsSeed(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A key: the index and name of a kept field, or `None` for one to skip (not allocated).
struct KeyOf<'k>(&'k [(Arc<str>, Keep)]);

impl<'de> DeserializeSeed<'de> for KeyOf<'_> {
    type Value = Option<(usize, String)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyOf<'_> {
    type Value = Option<(usize, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.binary_search_by(|(n, _)| n.as_ref().cmp(v)).ok().map(|i| (i, v.to_owned())))
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
        let keep =
            Keep::fields(["id", "name"]).union(Keep::Fields(vec![(Arc::from("art"), Keep::fields(["url"]))]));
        let v = keep.parse(body).unwrap();
        assert_eq!(v, json!([{"id": 1, "name": "A", "art": {"url": "u"}}, {"id": 2}]));
        assert_eq!(Keep::All.parse(body).unwrap(), serde_json::from_slice::<Value>(body).unwrap());
        // A kept field that is not an object stays whole; malformed JSON is still an error.
        assert_eq!(
            Keep::fields(["a"]).parse(br#"{"a": [1, {"b": 2}], "c": 3}"#).unwrap(),
            json!({"a": [1, {"b": 2}]})
        );
        assert!(Keep::fields(["a"]).parse(br#"{"a": 1, "c": }"#).is_err());
        assert!(Keep::fields(["a"]).parse(br#"{"a": 1} x"#).is_err());
        assert_eq!(Keep::fields(["a"]).parse(b"7").unwrap(), json!(7));
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
