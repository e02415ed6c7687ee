//! What changed between two facade schemas, each change classified and tied to the schema
//! coordinate it touches (`usage.rs` names the same coordinates for stored operations, so
//! the endpoint versions a change affects are known exactly, not estimated).
//!
//! - **breaking**: an operation using the coordinate stops validating or can get an answer
//!   of another shape (a removed field, argument, type, enum value or union member; a type
//!   made incompatible; a new required argument or input field).
//! - **dangerous**: it still validates but may answer differently (a field fetched from
//!   elsewhere, a new enum value or union member, a changed default or fallback).
//! - **safe**: nothing a stored operation can notice (additions, deprecations, types made
//!   stricter on output or looser on input).

use std::collections::BTreeMap;

use async_graphql::parser::types::{BaseType, Type};
use serde::Serialize;

use super::model::{ArgDef, Binding, FacadeSchema, FieldDef, Part, TypeDef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Breaking,
    Dangerous,
    Safe,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Breaking => "breaking",
            Level::Dangerous => "dangerous",
            Level::Safe => "safe",
        }
    }
}

/// One change, at the coordinate whose users it affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub level: Level,
    /// `Type`, `Type.field`, `Type.field(arg:)`, `Input.field` or `Enum.VALUE`; empty for a
    /// change no operation can use (a backend's address).
    pub coordinate: String,
    pub message: String,
}

struct Diff {
    changes: Vec<Change>,
}

impl Diff {
    fn add(&mut self, level: Level, coordinate: impl Into<String>, message: impl Into<String>) {
        self.changes.push(Change { level, coordinate: coordinate.into(), message: message.into() });
    }
}

/// Every change from `old` to `new`, breaking first, then by coordinate.
pub fn diff(old: &FacadeSchema, new: &FacadeSchema) -> Vec<Change> {
    let mut d = Diff { changes: Vec::new() };
    if old.query != new.query {
        d.add(Level::Breaking, &old.query, format!("the query root type is now {}", new.query));
    }
    if old.mutation != new.mutation {
        let level = if old.mutation.is_some() { Level::Breaking } else { Level::Safe };
        let coordinate = old.mutation.clone().unwrap_or_default();
        d.add(level, coordinate, format!("the mutation root type is now {:?}", new.mutation));
    }
    for (name, old_t) in &old.types {
        match new.types.get(name) {
            None => d.add(Level::Breaking, name, format!("type {name} was removed")),
            Some(new_t) => types(&mut d, name, old_t, new_t, old, new),
        }
    }
    for name in new.types.keys().filter(|n| !old.types.contains_key(*n)) {
        d.add(Level::Safe, name, format!("type {name} was added"));
    }
    for b in &old.backends {
        match new.backends.iter().find(|n| n.name == b.name) {
            None => d.add(Level::Safe, "", format!("backend {} is no longer declared", b.name)),
            Some(n) if n.url != b.url => {
                d.add(Level::Dangerous, "", format!("backend {} moved from {} to {}", b.name, b.url, n.url))
            }
            Some(n) if n.policy != b.policy => {
                d.add(Level::Safe, "", format!("backend {}'s @backend numbers changed", b.name))
            }
            Some(_) => {}
        }
    }
    for b in new.backends.iter().filter(|n| !old.backends.iter().any(|b| b.name == n.name)) {
        d.add(Level::Safe, "", format!("backend {} was added ({})", b.name, b.url));
    }
    d.changes.sort_by(|a, b| (a.level, &a.coordinate).cmp(&(b.level, &b.coordinate)));
    d.changes
}

fn kind(t: &TypeDef) -> &'static str {
    match t {
        TypeDef::Object { .. } => "object",
        TypeDef::Interface { .. } => "interface",
        TypeDef::Union { .. } => "union",
        TypeDef::Enum { .. } => "enum",
        TypeDef::Scalar { .. } => "scalar",
        TypeDef::Input { .. } => "input",
    }
}

fn types(d: &mut Diff, name: &str, old_t: &TypeDef, new_t: &TypeDef, old: &FacadeSchema, new: &FacadeSchema) {
    match (old_t, new_t) {
        (
            TypeDef::Object { fields: of, implements: oi, .. },
            TypeDef::Object { fields: nf, implements: ni, .. },
        ) => {
            fields(d, name, of, nf, old, new);
            for i in oi.iter().filter(|i| !ni.contains(i)) {
                d.add(Level::Breaking, i.clone(), format!("{name} no longer implements {i}"));
            }
            for i in ni.iter().filter(|i| !oi.contains(i)) {
                d.add(Level::Dangerous, i.clone(), format!("{name} now implements {i}"));
            }
        }
        (
            TypeDef::Interface { fields: of, discriminator: od, .. },
            TypeDef::Interface { fields: nf, discriminator: nd, .. },
        ) => {
            fields(d, name, of, nf, old, new);
            discriminator(d, name, &od.field, &nd.field);
        }
        (
            TypeDef::Union { members: om, discriminator: od, .. },
            TypeDef::Union { members: nm, discriminator: nd, .. },
        ) => {
            for m in om.iter().filter(|m| !nm.contains(m)) {
                d.add(Level::Breaking, name, format!("{m} is no longer a member of union {name}"));
            }
            for m in nm.iter().filter(|m| !om.contains(m)) {
                d.add(Level::Dangerous, name, format!("{m} is now a member of union {name}"));
            }
            discriminator(d, name, &od.field, &nd.field);
        }
        (TypeDef::Enum { values: ov, .. }, TypeDef::Enum { values: nv, .. }) => {
            for v in ov.iter().filter(|v| !nv.contains(v)) {
                d.add(Level::Breaking, format!("{name}.{v}"), format!("enum value {name}.{v} was removed"));
            }
            for v in nv.iter().filter(|v| !ov.contains(v)) {
                d.add(Level::Dangerous, name, format!("enum value {name}.{v} was added"));
            }
        }
        (TypeDef::Input { fields: of, .. }, TypeDef::Input { fields: nf, .. }) => {
            for f in of {
                let coordinate = format!("{name}.{}", f.name);
                match nf.iter().find(|n| n.name == f.name) {
                    None => d.add(
                        Level::Breaking,
                        coordinate.clone(),
                        format!("input field {coordinate} was removed"),
                    ),
                    Some(n) => argument(d, &coordinate, "input field", f, n),
                }
            }
            for n in nf.iter().filter(|n| !of.iter().any(|f| f.name == n.name)) {
                if required(n) {
                    d.add(Level::Breaking, name, format!("required input field {name}.{} was added", n.name));
                } else {
                    d.add(
                        Level::Safe,
                        format!("{name}.{}", n.name),
                        format!("input field {name}.{} was added", n.name),
                    );
                }
            }
        }
        (TypeDef::Scalar { .. }, TypeDef::Scalar { .. }) => {}
        (o, n) => d.add(Level::Breaking, name, format!("{name} changed from {} to {}", kind(o), kind(n))),
    }
}

fn discriminator(d: &mut Diff, name: &str, old: &str, new: &str) {
    if old != new {
        d.add(
            Level::Dangerous,
            name,
            format!("{name}'s concrete type is now read from {new:?} (was {old:?})"),
        );
    }
}

fn required(a: &ArgDef) -> bool {
    !a.ty.nullable && a.default.is_none()
}

fn fields(
    d: &mut Diff,
    parent: &str,
    old_f: &[FieldDef],
    new_f: &[FieldDef],
    old: &FacadeSchema,
    new: &FacadeSchema,
) {
    for f in old_f {
        let coordinate = format!("{parent}.{}", f.name);
        let Some(n) = new_f.iter().find(|n| n.name == f.name) else {
            d.add(Level::Breaking, coordinate.clone(), format!("field {coordinate} was removed"));
            continue;
        };
        if f.ty != n.ty {
            if stricter_or_same(&f.ty, &n.ty) {
                d.add(
                    Level::Safe,
                    coordinate.clone(),
                    format!("{coordinate} changed type from {} to {}", f.ty, n.ty),
                );
            } else {
                d.add(
                    Level::Breaking,
                    coordinate.clone(),
                    format!("{coordinate} changed type from {} to {}", f.ty, n.ty),
                );
            }
        }
        for a in &f.args {
            let at = format!("{coordinate}({}:)", a.name);
            match n.args.iter().find(|x| x.name == a.name) {
                None => d.add(Level::Breaking, at.clone(), format!("argument {at} was removed")),
                Some(x) => argument(d, &at, "argument", a, x),
            }
        }
        for x in n.args.iter().filter(|x| !f.args.iter().any(|a| a.name == x.name)) {
            let at = format!("{coordinate}({}:)", x.name);
            if required(x) {
                d.add(Level::Breaking, coordinate.clone(), format!("required argument {at} was added"));
            } else {
                d.add(Level::Safe, at.clone(), format!("argument {at} was added"));
            }
        }
        let (was, now) = (binding(f, old), binding(n, new));
        if was != now {
            d.add(Level::Dangerous, coordinate.clone(), format!("{coordinate} is now {now} (was {was})"));
        }
        if f.fallback != n.fallback {
            d.add(Level::Dangerous, coordinate.clone(), format!("{coordinate}'s @fallback changed"));
        }
        if f.deprecation.is_none() && n.deprecation.is_some() {
            d.add(Level::Safe, coordinate.clone(), format!("{coordinate} was deprecated"));
        }
    }
    for n in new_f.iter().filter(|n| !old_f.iter().any(|f| f.name == n.name)) {
        d.add(Level::Safe, format!("{parent}.{}", n.name), format!("field {parent}.{} was added", n.name));
    }
}

/// An argument or input field: its type may only get looser (a required one optional), and
/// a changed default may change answers.
fn argument(d: &mut Diff, at: &str, what: &str, old: &ArgDef, new: &ArgDef) {
    if old.ty != new.ty {
        // An input accepts at least what it did when the new type is looser than the old.
        let level = if stricter_or_same(&new.ty, &old.ty) { Level::Safe } else { Level::Breaking };
        d.add(level, at, format!("{what} {at} changed type from {} to {}", old.ty, new.ty));
    }
    if old.default != new.default {
        let show = |v: &Option<async_graphql::Value>| v.as_ref().map_or("none".to_owned(), |v| v.to_string());
        d.add(
            Level::Dangerous,
            at,
            format!("{what} {at}'s default changed from {} to {}", show(&old.default), show(&new.default)),
        );
    }
}

/// Whether every value of `new` is a value of `old`: the same named type, lists in the same
/// places, and non-null wherever `old` is non-null.
fn stricter_or_same(old: &Type, new: &Type) -> bool {
    if !old.nullable && new.nullable {
        return false;
    }
    match (&old.base, &new.base) {
        (BaseType::Named(a), BaseType::Named(b)) => a == b,
        (BaseType::List(a), BaseType::List(b)) => stricter_or_same(a, b),
        _ => false,
    }
}

/// Where a field's value comes from, in words (for a changed binding).
fn binding(f: &FieldDef, schema: &FacadeSchema) -> String {
    match &f.binding {
        Binding::Parent => format!("read from its parent's {:?} key", f.name),
        Binding::Js { function } => format!("computed by @js fn {function}"),
        Binding::Subgraph(sf) => {
            let names: Vec<&str> = sf
                .owners
                .iter()
                .filter_map(|o| schema.backends.get(o.graph).map(|b| b.name.as_str()))
                .collect();
            format!("resolved by subgraph {}", names.join(", "))
        }
        Binding::Http(h) => {
            let backend = schema.backends.get(h.backend).map_or("?", |b| b.name.as_str());
            let mut route = String::new();
            for p in &h.template.parts {
                match p {
                    Part::Lit(s) => route.push_str(s),
                    Part::Arg(a) => route.push_str(&format!("{{$args.{a}}}")),
                    Part::Parent(k) => route.push_str(&format!("{{$parent.{k}}}")),
                    Part::Keys => route.push_str("{$keys}"),
                }
            }
            let select = h.select.as_ref().map(|s| format!(" selecting {s:?}")).unwrap_or_default();
            format!("fetched from {backend} {} {route}{select}", h.template.method.as_str())
        }
    }
}

/// The changes with the users each affects: `users(coordinate)` lists who uses it.
pub fn affected<U: Clone>(changes: &[Change], users: impl Fn(&str) -> Vec<U>) -> Vec<(&Change, Vec<U>)> {
    let mut memo: BTreeMap<&str, Vec<U>> = BTreeMap::new();
    changes
        .iter()
        .map(|c| {
            let u = memo.entry(c.coordinate.as_str()).or_insert_with(|| users(&c.coordinate)).clone();
            (c, u)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::sdl::{SchemaFile, analyze};

    fn schema(extra: &str, replace: Option<(&str, &str)>) -> FacadeSchema {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let mut files = crate::graphql::sdl::load_dir(&dir).unwrap();
        if let Some((from, to)) = replace {
            let f = files.iter_mut().find(|f| f.text.contains(from)).expect("text to replace");
            f.text = f.text.replacen(from, to, 1);
        }
        if !extra.is_empty() {
            files.push(SchemaFile { name: "extra.graphql".into(), text: extra.into() });
        }
        analyze(&files).unwrap()
    }

    #[test]
    fn additions_are_safe_and_removals_breaking() {
        let base = schema("", None);
        let added = schema("extend type Title { hello: String }", None);
        let changes = diff(&base, &added);
        assert_eq!(
            changes,
            vec![Change {
                level: Level::Safe,
                coordinate: "Title.hello".into(),
                message: "field Title.hello was added".into()
            }]
        );
        let back = diff(&added, &base);
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].level, back[0].coordinate.as_str()), (Level::Breaking, "Title.hello"));
        assert!(diff(&base, &base).is_empty());
    }

    #[test]
    fn nullability_is_judged_by_direction() {
        let t = |s: &str| async_graphql::parser::types::Type::new(s).unwrap();
        assert!(stricter_or_same(&t("String"), &t("String!")));
        assert!(!stricter_or_same(&t("String!"), &t("String")));
        assert!(stricter_or_same(&t("[Int]"), &t("[Int!]!")));
        assert!(!stricter_or_same(&t("[Int]"), &t("Int")));
        assert!(!stricter_or_same(&t("Int"), &t("Float")));
    }
}
