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

use super::data::{Data, Fields};

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

    /// Parses `bytes` keeping what this says. The body's UTF-8 is checked once, as a whole,
    /// rather than string by string.
    pub fn parse(&self, bytes: &[u8]) -> serde_json::Result<Data> {
        let text = std::str::from_utf8(bytes).map_err(serde::de::Error::custom)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let value = Seed(self).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

struct Seed<'k>(&'k Keep);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Data;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Data, D::Error> {
        match self.0 {
            Keep::All => d.deserialize_any(Whole),
            Keep::Fields(fields) => d.deserialize_any(Pruned(fields)),
        }
    }
}

/// Scalars, the same for a whole value and a pruned one.
macro_rules! scalars {
    () => {
        fn visit_bool<E>(self, v: bool) -> Result<Data, E> {
            Ok(Data::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Data, E> {
            Ok(Data::Int(v))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Data, E> {
            Ok(i64::try_from(v).map_or(Data::UInt(v), Data::Int))
        }

        fn visit_f64<E>(self, v: f64) -> Result<Data, E> {
            Ok(if v.is_finite() { Data::Float(v) } else { Data::Null })
        }

        fn visit_str<E>(self, v: &str) -> Result<Data, E> {
            Ok(Data::Str(Box::from(v)))
        }

        fn visit_string<E>(self, v: String) -> Result<Data, E> {
            Ok(Data::Str(v.into_boxed_str()))
        }

        fn visit_unit<E>(self) -> Result<Data, E> {
            Ok(Data::Null)
        }

        fn visit_none<E>(self) -> Result<Data, E> {
            Ok(Data::Null)
        }
    };
}

static ALL: Keep = Keep::All;

/// A whole value.
struct Whole;

impl<'de> Visitor<'de> for Whole {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    scalars!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
        let mut out = Fields::default();
        while let Some(name) = map.next_key::<Name>()? {
            out.insert(name.0, map.next_value_seed(Seed(&ALL))?);
        }
        Ok(out.into_data())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(Seed(&ALL))? {
            out.push(v);
        }
        Ok(Data::List(out))
    }
}

/// A field name of a whole object.
struct Name(Arc<str>);

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_str<E>(self, v: &str) -> Result<Name, E> {
                Ok(Name(Arc::from(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An object keeping `fields`; arrays keep the same in each element; scalars stay whole.
struct Pruned<'k>(&'k [(Arc<str>, Keep)]);

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    scalars!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
        // The kept names are the plan's own texts: shared, never allocated per object.
        let mut out: Vec<(Arc<str>, Data)> = Vec::with_capacity(self.0.len());
        while let Some(index) = map.next_key_seed(KeyOf(self.0))? {
            match index {
                Some(i) => {
                    let (name, keep) = &self.0[i];
                    let value = map.next_value_seed(Seed(keep))?;
                    match out.iter_mut().find(|(n, _)| Arc::ptr_eq(n, name)) {
                        Some(slot) => slot.1 = value,
                        None => out.push((name.clone(), value)),
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Data::Obj(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(PrunedSeed(self.0))? {
            out.push(v);
        }
        Ok(Data::List(out))
    }
}

/// Each element of an array, keeping the same fields.
struct PrunedSeed<'k>(&'k [(Arc<str>, Keep)]);

impl<'de> DeserializeSeed<'de> for PrunedSeed<'_> {
    type Value = Data;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Data, D::Error> {
        d.deserialize_any(Pruned(self.0))
    }
}

/// A key: the index of a kept field, or `None` for one to skip (not allocated).
struct KeyOf<'k>(&'k [(Arc<str>, Keep)]);

impl<'de> DeserializeSeed<'de> for KeyOf<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyOf<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        // A few names (the usual case): by length first, which mostly differs.
        if self.0.len() <= 8 {
            return Ok(self.0.iter().position(|(n, _)| n.len() == v.len() && **n == *v));
        }
        Ok(self.0.binary_search_by(|(n, _)| n.as_ref().cmp(v)).ok())
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
        let v = keep.parse(body).unwrap().to_json();
        assert_eq!(v, json!([{"id": 1, "name": "A", "art": {"url": "u"}}, {"id": 2}]));
        assert_eq!(
            Keep::All.parse(body).unwrap().to_json(),
            serde_json::from_slice::<serde_json::Value>(body).unwrap()
        );
        // A kept field that is not an object stays whole; malformed JSON is still an error.
        assert_eq!(
            Keep::fields(["a"]).parse(br#"{"a": [1, {"b": 2}], "c": 3}"#).unwrap().to_json(),
            json!({"a": [1, {"b": 2}]})
        );
        assert!(Keep::fields(["a"]).parse(br#"{"a": 1, "c": }"#).is_err());
        assert!(Keep::fields(["a"]).parse(br#"{"a": 1} x"#).is_err());
        assert_eq!(Keep::fields(["a"]).parse(b"7").unwrap(), Data::Int(7));
        // A later duplicate wins, kept or whole; bad UTF-8 is an error.
        assert_eq!(Keep::fields(["a"]).parse(br#"{"a": 1, "a": 2}"#).unwrap().to_string(), r#"{"a":2}"#);
        assert_eq!(Keep::All.parse(br#"{"a": 1, "b": 0, "a": 2}"#).unwrap().to_string(), r#"{"a":2,"b":0}"#);
        assert!(Keep::All.parse(b"\"\xff\"").is_err());
        // Nesting is bounded (serde_json's 128 levels); numbers read as serde_json reads them;
        // escapes undone.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(Keep::All.parse(deep(100).as_bytes()).is_ok());
        assert!(Keep::All.parse(deep(200).as_bytes()).unwrap_err().to_string().contains("recursion limit"));
        let numbers: &[u8] =
            b"[1, -2, 9223372036854775808, 1e2, 0.5, 99999999999999999999999, -0.0, 1.7976931348623157e308]";
        let n = Keep::All.parse(numbers).unwrap();
        assert_eq!(n.to_json(), serde_json::from_slice::<serde_json::Value>(numbers).unwrap());
        assert_eq!(n.to_string(), serde_json::from_slice::<serde_json::Value>(numbers).unwrap().to_string());
        assert!(Keep::All.parse(b"1e400").is_err(), "out of range, as serde_json says");
        assert_eq!(Keep::All.parse(br#""a\"b\u00e9\n""#).unwrap(), Data::Str("a\"b\u{e9}\n".into()));
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
