//! The engine's value for backend answers: what [`super::keep::Keep::parse`] builds and the
//! executor and projection read.
//!
//! Why not `serde_json::Value`: with `preserve_order` (which the rest of Facade needs, so that
//! scripts, admin answers and logs keep the order they were given) every object is an
//! `IndexMap` with SipHash, and every lookup hashes the key. A backend object here keeps a
//! handful of fields, found faster by comparing names in a short vector; the kept names are
//! the plan's own shared texts, so no key is allocated per object. Measured in
//! docs/BENCHMARKS.md (§15).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, Serializer};
use serde_json::Value;

/// A JSON value as a backend sent it (the fields the request reads).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Data {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Str(Box<str>),
    List(Vec<Data>),
    /// Fields in the order they were kept. Names are unique (a later duplicate replaced an
    /// earlier one, as in `serde_json`).
    Obj(Vec<(Arc<str>, Data)>),
}

/// Null, for lookups that find nothing.
pub static NULL: Data = Data::Null;

/// A value a request holds: a whole answer, or one item of an answer (a batch answer's list
/// item, or a field of an answer keyed by key). An answer's items share it: one allocation
/// per answer rather than one per item. Reads as the value it points at.
#[derive(Debug, Clone)]
pub struct Held {
    owner: Arc<Data>,
    /// The item's position in `owner`, or [`Held::WHOLE`].
    item: u32,
}

impl Held {
    const WHOLE: u32 = u32::MAX;

    pub fn new(value: Data) -> Self {
        Self::whole(Arc::new(value))
    }

    pub fn whole(owner: Arc<Data>) -> Self {
        Self { owner, item: Self::WHOLE }
    }

    /// Item `i` of `owner` (a list's item or an object's `i`th field).
    pub fn item(owner: &Arc<Data>, i: usize) -> Self {
        let item = u32::try_from(i).ok().filter(|i| *i != Self::WHOLE);
        Self { owner: owner.clone(), item: item.expect("fewer than 2^32 - 1 items in one answer") }
    }
}

impl std::ops::Deref for Held {
    type Target = Data;

    fn deref(&self) -> &Data {
        if self.item == Self::WHOLE {
            return &self.owner;
        }
        let i = self.item as usize;
        match &*self.owner {
            Data::List(items) => items.get(i).unwrap_or(&NULL),
            Data::Obj(fields) => fields.get(i).map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }
}

impl Data {
    /// An object's field.
    pub fn get(&self, key: &str) -> Option<&Data> {
        match self {
            // Names the plan kept are the plan's own texts: most lookups match by address.
            // Others (a key field, a match field) are compared byte by byte: names are short,
            // and a `memcmp` call per field cost more than the loop.
            Data::Obj(fields) => fields
                .iter()
                .find(|(k, _)| {
                    k.len() == key.len()
                        && (std::ptr::eq(k.as_ptr(), key.as_ptr())
                            || k.bytes().zip(key.bytes()).all(|(a, b)| a == b))
                })
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A list's item, or null.
    pub fn item(&self, i: usize) -> &Data {
        match self {
            Data::List(items) => items.get(i).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    /// A list's length or an object's field count; 0 for anything else.
    pub fn len(&self) -> usize {
        match self {
            Data::List(items) => items.len(),
            Data::Obj(fields) => fields.len(),
            _ => 0,
        }
    }

    /// No items or fields (or not a list or object).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Data::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Data::Int(i) => Some(*i),
            Data::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Data::Int(i) => Some(*i as f64),
            Data::UInt(u) => Some(*u as f64),
            Data::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Data::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Data::Obj(_))
    }

    /// An object from `(name, value)` pairs, a later duplicate name replacing an earlier one.
    pub fn object(pairs: impl IntoIterator<Item = (Arc<str>, Data)>) -> Data {
        let mut fields = Fields::default();
        for (k, v) in pairs {
            fields.insert(k, v);
        }
        fields.into_data()
    }

    /// From a `serde_json` value (an SDL `@fallback`, a script's answer).
    pub fn from_json(value: Value) -> Data {
        match value {
            Value::Null => Data::Null,
            Value::Bool(b) => Data::Bool(b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Data::Int(i),
                (None, Some(u)) => Data::UInt(u),
                _ => n.as_f64().map_or(Data::Null, Data::Float),
            },
            Value::String(s) => Data::Str(s.into_boxed_str()),
            Value::Array(items) => Data::List(items.into_iter().map(Data::from_json).collect()),
            // A `serde_json` map has unique keys already.
            Value::Object(map) => {
                Data::Obj(map.into_iter().map(|(k, v)| (Arc::from(k), Data::from_json(v))).collect())
            }
        }
    }

    /// As a `serde_json` value (a key sent in a POST body).
    pub fn to_json(&self) -> Value {
        match self {
            Data::Null => Value::Null,
            Data::Bool(b) => Value::Bool(*b),
            Data::Int(i) => Value::from(*i),
            Data::UInt(u) => Value::from(*u),
            Data::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Data::Str(s) => Value::String(s.to_string()),
            Data::List(items) => Value::Array(items.iter().map(Data::to_json).collect()),
            Data::Obj(fields) => {
                Value::Object(fields.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect())
            }
        }
    }
}

/// An object being built: names kept unique, by a scan while it is small and by a map once
/// it is not (a backend may send an object keyed by thousands of IDs).
#[derive(Default)]
pub struct Fields {
    list: Vec<(Arc<str>, Data)>,
    index: Option<HashMap<Arc<str>, usize, foldhash::fast::RandomState>>,
}

impl Fields {
    const SCAN: usize = 16;

    pub fn with_capacity(n: usize) -> Self {
        Self { list: Vec::with_capacity(n.min(Self::SCAN)), index: None }
    }

    pub fn insert(&mut self, name: Arc<str>, value: Data) {
        if self.index.is_none() && self.list.len() >= Self::SCAN {
            self.index = Some(self.list.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
        }
        let found = match &mut self.index {
            None => self.list.iter().position(|(k, _)| *k == name),
            Some(index) => match index.get(&name) {
                Some(i) => Some(*i),
                None => {
                    index.insert(name.clone(), self.list.len());
                    None
                }
            },
        };
        match found {
            Some(i) => self.list[i].1 = value,
            None => self.list.push((name, value)),
        }
    }

    pub fn into_data(self) -> Data {
        Data::Obj(self.list)
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Null => s.serialize_unit(),
            Data::Bool(b) => s.serialize_bool(*b),
            Data::Int(i) => s.serialize_i64(*i),
            Data::UInt(u) => s.serialize_u64(*u),
            Data::Float(f) => s.serialize_f64(*f),
            Data::Str(t) => s.serialize_str(t),
            Data::List(items) => s.collect_seq(items),
            Data::Obj(fields) => s.collect_map(fields.iter().map(|(k, v)| (&**k, v))),
        }
    }
}

/// JSON text, as `serde_json` writes it.
impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_both_ways_and_writes_json_as_serde_json_does() {
        let v = json!({"a": [1, -2, 18446744073709551615u64, 4.5, 1.0, "x\"y", true, null], "b": {"c": {}}});
        let d = Data::from_json(v.clone());
        assert_eq!(d.to_json(), v);
        assert_eq!(d.to_string(), v.to_string());
        assert_eq!(d.get("b").and_then(|b| b.get("c")), Some(&Data::Obj(Vec::new())));
        assert_eq!(d.get("a").map(|a| a.item(1)), Some(&Data::Int(-2)));
        assert_eq!(d.get("a").map(|a| a.item(99)), Some(&Data::Null));
        assert_eq!(d.get("a").map(|a| a.item(2).as_i64()), Some(None));
        assert!(d.get("zz").is_none());
    }

    #[test]
    fn a_later_duplicate_replaces_an_earlier_one() {
        let d = Data::object([
            (Arc::from("a"), Data::Int(1)),
            (Arc::from("b"), Data::Null),
            (Arc::from("a"), Data::Int(2)),
        ]);
        assert_eq!(d.to_string(), r#"{"a":2,"b":null}"#);
        // Past the scanned size too.
        let many = (0..40).map(|i| (Arc::from(format!("k{}", i % 30)), Data::Int(i)));
        let d = Data::object(many);
        assert_eq!(d.get("k3"), Some(&Data::Int(33)));
        assert_eq!(d.get("k29"), Some(&Data::Int(29)));
        let Data::Obj(fields) = d else { unreachable!() };
        assert_eq!(fields.len(), 30);
    }
}
