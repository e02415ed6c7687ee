//! Parsing a backend body keeping only the fields a request uses.
//!
//! A catalog title carries a synopsis, genres and more; a home screen asks for its name and
//! year. The engine knows, per route, which fields of the answer anything reads (selected
//! fields, keys, route values, the match field, a discriminator), and passes that as a
//! [`Keep`]: every other field is only stepped over while parsing ([`super::scan`]: checked,
//! never decoded or allocated), which is where most of a request's instructions went.

use std::sync::Arc;

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
