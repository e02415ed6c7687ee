//! The projection: one synchronous pass over the plan writes the response bytes from the
//! steps' results. Keys follow the query's selection order at every level, whatever order
//! the fetches finished in. Leaves are checked as they are written (Int in 32 bits, finite
//! Float, enum membership). Null propagation follows the spec: a position is remembered
//! (the buffer's length) before each object or list, and when a non-null value turns out
//! null below it, the buffer is cut back there and `null` written at the nearest nullable
//! position. The path of a field is a chain of stack frames, made into an error path only
//! when an error happens.
//!
//! Recursion follows the plan (bounded by the validated depth limit) and the list levels of
//! its types, not the data.

use async_graphql::{ErrorExtensions, PathSegment, Pos, ServerError};
use serde_json::Value;

use super::exec::{Resolved, Store, SubErrors};
use super::fetch::{bad_value, preview};
use super::plan::{Base, Field, Leaf, Plan, Source};
use crate::backends::json::tape::{Held, NULL, Val, View};
use crate::errors::Code;

/// A position below became null and may not be: the nearest nullable position must be null.
struct Bubble;

type Written = Result<(), Bubble>;

/// A field's path as a chain of frames on the stack.
#[derive(Clone, Copy)]
struct Path<'p> {
    up: Option<&'p Path<'p>>,
    seg: Seg<'p>,
}

#[derive(Clone, Copy)]
enum Seg<'p> {
    Key(&'p str),
    Index(usize),
}

impl Path<'_> {
    fn segments(&self) -> Vec<PathSegment> {
        let mut out = Vec::new();
        let mut at = Some(self);
        while let Some(p) = at {
            out.push(match p.seg {
                Seg::Key(k) => PathSegment::Field(k.to_owned()),
                Seg::Index(i) => PathSegment::Index(i),
            });
            at = p.up;
        }
        out.reverse();
        out
    }
}

/// The response body and the errors in it.
pub struct Response {
    pub body: Vec<u8>,
    pub errors: Vec<ServerError>,
    pub parts: Parts,
}

/// Where the JSON texts of `data` and `errors` (if any) sit in a written body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    pub data: std::ops::Range<usize>,
    pub errors: Option<std::ops::Range<usize>>,
}

/// Writes `{"data":…,"errors":[…]}` for the plan and its results (and the introspection
/// answers of its root `__schema`/`__type` fields). `size_hint` pre-sizes the buffer.
pub fn write(
    plan: &Plan,
    store: &Store,
    introspection: Option<&serde_json::Map<String, Value>>,
    size_hint: usize,
) -> Response {
    let buf = Vec::with_capacity(size_hint.max(256));
    let next = vec![0; store.steps()];
    let mut w = Writer { buf, errors: Vec::new(), store, plan, introspection, next };
    w.buf.extend_from_slice(b"{\"data\":");
    let mark = w.buf.len();
    if w.object(&plan.root, store.root.val(), None).is_err() {
        w.buf.truncate(mark);
        w.buf.extend_from_slice(b"null");
    }
    let data = mark..w.buf.len();
    let mut errors = None;
    if !w.errors.is_empty() {
        w.buf.extend_from_slice(b",\"errors\":");
        let start = w.buf.len();
        write_errors(&mut w.buf, &w.errors);
        errors = Some(start..w.buf.len());
    }
    w.buf.push(b'}');
    Response { body: w.buf, errors: w.errors, parts: Parts { data, errors } }
}

struct Writer<'s> {
    buf: Vec<u8>,
    errors: Vec<ServerError>,
    store: &'s Store,
    plan: &'s Plan,
    introspection: Option<&'s serde_json::Map<String, Value>>,
    /// Per step, where its next parent's result likely is (see [`Store::get`]).
    next: Vec<usize>,
}

impl Writer<'_> {
    /// Writes an object. A field that bubbles a null makes the object null, but the other
    /// fields are still written (and cut away by the caller) so that every failed path
    /// reports its error.
    fn object(&mut self, fields: &[Field], obj: Val<'_>, path: Option<&Path<'_>>) -> Written {
        let mut bubbled = false;
        self.buf.push(b'{');
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            f.key_json.write(&mut self.buf);
            // A scalar of the parent's answer that fits (most fields): written at once.
            if let (Source::Parent, Base::Leaf(leaf), [_]) = (&f.source, &f.out.base, &*f.out.nullable) {
                let v = obj.field(&f.name);
                if !v.is_null() && self.leaf(leaf, v).is_ok() {
                    continue;
                }
            }
            let here = Path { up: path, seg: Seg::Key(&f.key) };
            bubbled |= self.field(f, obj, &here).is_err();
        }
        self.buf.push(b'}');
        if bubbled { Err(Bubble) } else { Ok(()) }
    }

    fn field(&mut self, f: &Field, parent: Val<'_>, path: &Path<'_>) -> Written {
        match &f.source {
            Source::Typename(text) => {
                self.buf.extend_from_slice(text);
                Ok(())
            }
            Source::Parent => self.value(f, 0, parent.field(&f.name), path),
            Source::Introspection => {
                let answer = self.introspection.and_then(|m| m.get(&*f.key)).unwrap_or(&Value::Null);
                serde_json::to_writer(&mut self.buf, answer).expect("JSON serializes");
                Ok(())
            }
            Source::Fetched { chain, report } => {
                let mut at = parent;
                for &step in chain.iter() {
                    match self.store.get(step, at, &mut self.next[step]) {
                        Some(Resolved::Value(v)) => at = v.val(),
                        Some(Resolved::Partial(v, errors)) => {
                            if *report && Some(&step) == chain.last() {
                                self.subgraph_errors(errors, f.pos, path.up);
                            }
                            at = v.val();
                        }
                        Some(Resolved::Error(e)) => return self.failed(f, step, e, path),
                        // No fetch was needed (the parent lacks its key): null.
                        _ => return self.value(f, 0, NULL, path),
                    }
                }
                self.value(f, 0, at.field(&f.name), path)
            }
            Source::Step(step) => match self.store.get(*step, parent, &mut self.next[*step]) {
                // No fetch was needed (the parent holds no key): null.
                None => self.value(f, 0, NULL, path),
                Some(Resolved::Value(v) | Resolved::Partial(v, _)) => self.value(f, 0, v.val(), path),
                Some(Resolved::Items(items)) => self.items(f, items, path),
                Some(Resolved::Error(e)) => self.failed(f, *step, e, path),
            },
        }
    }

    /// A failed step: its `@fallback` projected through the selection if it fits, else the
    /// error at this path and null.
    fn failed(&mut self, f: &Field, step: usize, e: &async_graphql::Error, path: &Path<'_>) -> Written {
        let mut error = e.clone();
        if let Some(fallback) = self.plan.steps[step].fallback.clone() {
            let (mark, errors) = (self.buf.len(), self.errors.len());
            let fits = self.value(f, 0, fallback.root(), path).is_ok() && self.errors.len() == errors;
            if fits {
                return Ok(());
            }
            self.buf.truncate(mark);
            let why = self.errors.drain(errors..).next().map(|e| e.message).unwrap_or_default();
            error.message = format!("{} (and the @fallback value does not fit: {why})", error.message);
        }
        self.error(error, f.pos, path);
        self.absorb(f, 0)
    }

    /// A subgraph's errors below an object, at the object's path (`None`: the root).
    fn subgraph_errors(&mut self, errors: &SubErrors, pos: Pos, object: Option<&Path<'_>>) {
        for (message, below) in &errors.0 {
            let mut e = async_graphql::Error::new(message.clone())
                .extend_with(|_, ext| ext.set("code", crate::errors::Code::BackendError.as_str()))
                .into_server_error(pos);
            let mut path = object.map(Path::segments).unwrap_or_default();
            path.extend(below.iter().cloned());
            e.path = path;
            self.errors.push(e);
        }
    }

    fn error(&mut self, e: async_graphql::Error, pos: Pos, path: &Path<'_>) {
        let mut e = e.into_server_error(pos);
        e.path = path.segments();
        self.errors.push(e);
    }

    /// Null at this level: written if the level may be null, else passed up.
    fn absorb(&mut self, f: &Field, level: usize) -> Written {
        if f.out.nullable[level] {
            self.buf.extend_from_slice(b"null");
            Ok(())
        } else {
            Err(Bubble)
        }
    }

    /// A value the data holds that does not fit: an error here, and null.
    fn bad(&mut self, f: &Field, level: usize, path: &Path<'_>, message: String) -> Written {
        self.error(bad_value(&f.path_name, message), f.pos, path);
        self.absorb(f, level)
    }

    /// A batched list field's items (`None`: a key the backend did not return).
    fn items(&mut self, f: &Field, items: &[Option<Held>], path: &Path<'_>) -> Written {
        self.list(f, 0, items.iter().map(|i| i.as_ref().map_or(NULL, Held::val)), path)
    }

    /// The items of a list at `level`, each at `level + 1`. An item that may not be null and
    /// is makes the whole list null (every item is still written, for its errors).
    fn list<'v>(
        &mut self,
        f: &Field,
        level: usize,
        items: impl Iterator<Item = Val<'v>>,
        path: &Path<'_>,
    ) -> Written {
        let mark = self.buf.len();
        let mut bubbled = false;
        self.buf.push(b'[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            let here = Path { up: Some(path), seg: Seg::Index(i) };
            bubbled |= self.value(f, level + 1, item, &here).is_err();
        }
        self.buf.push(b']');
        if bubbled {
            self.buf.truncate(mark);
            return self.absorb(f, level);
        }
        Ok(())
    }

    /// Writes `v` as the field's type at list level `level`.
    fn value(&mut self, f: &Field, level: usize, v: Val<'_>, path: &Path<'_>) -> Written {
        if v.is_null() {
            if f.out.nullable[level] {
                self.buf.extend_from_slice(b"null");
                return Ok(());
            }
            let e = bad_value(&f.path_name, "null for a non-null value".to_owned());
            self.error(e, f.pos, path);
            return Err(Bubble);
        }
        if level < f.out.list_depth() {
            let View::List(items) = v.view() else {
                return self.bad(f, level, path, format!("expected a list, got {}", preview(&v)));
            };
            return self.list(f, level, items, path);
        }
        match &f.out.base {
            Base::Object => {
                if !v.is_object() {
                    return self.bad(f, level, path, format!("expected an object, got {}", preview(&v)));
                }
                let mark = self.buf.len();
                if self.object(&f.children, v, Some(path)).is_err() {
                    self.buf.truncate(mark);
                    return self.absorb(f, level);
                }
                Ok(())
            }
            Base::Abstract(discriminator) => {
                let named = v.get(discriminator).and_then(Val::as_str);
                let Some((_, fields)) = f.by_type.iter().find(|(t, _)| Some(&**t) == named) else {
                    let known: Vec<&str> = f.by_type.iter().map(|(t, _)| &**t).collect();
                    let message = format!(
                        "cannot tell the type of {}: its {discriminator} should be one of {}",
                        preview(&v),
                        known.join(", ")
                    );
                    return self.bad(f, level, path, message);
                };
                let mark = self.buf.len();
                if self.object(fields, v, Some(path)).is_err() {
                    self.buf.truncate(mark);
                    return self.absorb(f, level);
                }
                Ok(())
            }
            Base::Leaf(leaf) => match self.leaf(leaf, v) {
                Ok(()) => Ok(()),
                Err(expected) => self.bad(f, level, path, format!("expected {expected}")),
            },
        }
    }

    /// Writes a leaf after checking it; `Err` says what was expected. The usual leaves (a
    /// string that needs no escape, an integer as `Int` or as text such as an ID) are
    /// written here, inlined where the fields are written; the rest by [`Self::other_leaf`].
    #[inline(always)]
    fn leaf(&mut self, leaf: &Leaf, v: Val<'_>) -> Result<(), String> {
        let buf = &mut self.buf;
        match leaf {
            Leaf::Text => {
                if let Some(s) = v.plain_str() {
                    write_plain(buf, s);
                    return Ok(());
                }
                if let Some(i) = v.int() {
                    buf.push(b'"');
                    buf.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
                    buf.push(b'"');
                    return Ok(());
                }
            }
            Leaf::Int => {
                if let Some(i) = v.int().and_then(|i| i32::try_from(i).ok()) {
                    buf.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
                    return Ok(());
                }
            }
            Leaf::Float => {
                if let Some((digits, fraction)) = v.decimal() {
                    write_decimal(buf, digits, fraction);
                    return Ok(());
                }
            }
            _ => {}
        }
        self.other_leaf(leaf, v)
    }

    /// The leaves [`Self::leaf`] did not write: an integer as text, and one that fits `Int`,
    /// never come here.
    fn other_leaf(&mut self, leaf: &Leaf, v: Val<'_>) -> Result<(), String> {
        let buf = &mut self.buf;
        match (leaf, v.view()) {
            (Leaf::Text, View::Str(s)) => write_str(buf, s),
            // An integer past u64 is written by its digits, exactly (probe 2, L8).
            (Leaf::Text, View::UInt(_) | View::Float(_)) => write_str(buf, &v.to_string()),
            (Leaf::Text, View::Bool(b)) => write_str(buf, if b { "true" } else { "false" }),
            (Leaf::Int, View::Int(_) | View::UInt(_)) => return Err(format!("Int (32 bits), got {v}")),
            // An integer is a Float too, written as one (`7.0`).
            (Leaf::Float, View::Float(x)) => {
                serde_json::to_writer(&mut *buf, &x).expect("a number serializes")
            }
            (Leaf::Float, View::Int(i)) => {
                serde_json::to_writer(&mut *buf, &(i as f64)).expect("a number serializes")
            }
            (Leaf::Float, View::UInt(u)) => {
                serde_json::to_writer(&mut *buf, &(u as f64)).expect("a number serializes")
            }
            (Leaf::Bool, View::Bool(b)) => buf.extend_from_slice(if b { b"true" } else { b"false" }),
            (Leaf::Enum(values), View::Str(s)) if values.iter().any(|e| **e == *s) => write_str(buf, s),
            (Leaf::Enum(values), _) => {
                return Err(format!("one of {}, got {}", values.join(", "), preview(&v)));
            }
            (Leaf::Custom, _) => serde_json::to_writer(&mut *buf, &v).expect("JSON serializes"),
            (leaf, _) => return Err(format!("{}, got {}", leaf_name(leaf), preview(&v))),
        }
        Ok(())
    }
}

fn leaf_name(leaf: &Leaf) -> &'static str {
    match leaf {
        Leaf::Text => "Text",
        Leaf::Int => "Int",
        Leaf::Float => "Float",
        Leaf::Bool => "Bool",
        Leaf::Enum(_) => "Enum",
        Leaf::Custom => "Custom",
    }
}

/// A short decimal as the scanner read it ([`Val::decimal`]): `digits` with the point put
/// back `fraction` places from the right (`0.` and zeros first when there are fewer digits).
fn write_decimal(buf: &mut Vec<u8>, digits: u32, fraction: u8) {
    let mut text = itoa::Buffer::new();
    let text = text.format(digits).as_bytes();
    let fraction = usize::from(fraction);
    match text.len().checked_sub(fraction) {
        Some(whole) if whole > 0 => {
            buf.extend_from_slice(&text[..whole]);
            buf.push(b'.');
            buf.extend_from_slice(&text[whole..]);
        }
        _ => {
            buf.extend_from_slice(b"0.");
            buf.extend(std::iter::repeat_n(b'0', fraction - text.len()));
            buf.extend_from_slice(text);
        }
    }
}

/// A JSON string. Most need no escape (serde_json escapes only `"`, `\\` and control
/// characters): those are copied as they are.
fn write_str(buf: &mut Vec<u8>, s: &str) {
    if plain(s.as_bytes()) {
        write_plain(buf, s);
    } else {
        serde_json::to_writer(buf, s).expect("a string serializes");
    }
}

/// A string known to need no escape, quoted.
#[inline(always)]
fn write_plain(buf: &mut Vec<u8>, s: &str) {
    buf.reserve(s.len() + 2);
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
}

/// The errors as async-graphql serializes them (`message`, then `locations`, `path` and
/// `extensions` where not empty), written directly: serde's derived code cost some 2,800
/// instructions an error, and a failed batch reports one error per path it served.
fn write_errors(buf: &mut Vec<u8>, errors: &[ServerError]) {
    let mut n = itoa::Buffer::new();
    buf.push(b'[');
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"message\":");
        write_str(buf, &e.message);
        if !e.locations.is_empty() {
            buf.extend_from_slice(b",\"locations\":[");
            for (j, pos) in e.locations.iter().enumerate() {
                if j > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(b"{\"line\":");
                buf.extend_from_slice(n.format(pos.line).as_bytes());
                buf.extend_from_slice(b",\"column\":");
                buf.extend_from_slice(n.format(pos.column).as_bytes());
                buf.push(b'}');
            }
            buf.push(b']');
        }
        if !e.path.is_empty() {
            buf.extend_from_slice(b",\"path\":[");
            for (j, seg) in e.path.iter().enumerate() {
                if j > 0 {
                    buf.push(b',');
                }
                match seg {
                    PathSegment::Field(name) => write_str(buf, name),
                    PathSegment::Index(i) => buf.extend_from_slice(n.format(*i).as_bytes()),
                }
            }
            buf.push(b']');
        }
        if let Some(extensions) = &e.extensions {
            // An empty map is left out, as async-graphql leaves it out.
            let mark = buf.len();
            buf.extend_from_slice(b",\"extensions\":");
            serde_json::to_writer(&mut *buf, extensions).expect("extensions serialize");
            if buf.ends_with(b":{}") {
                buf.truncate(mark);
            }
        }
        buf.push(b'}');
    }
    buf.push(b']');
}

/// Whether `s` needs no escape in JSON: no `"`, `\\` or control character.
fn plain(s: &[u8]) -> bool {
    crate::backends::json::scan::special(s).is_none()
}

/// The `extensions.code` of each error, for metrics (every error the projection makes has one).
pub fn error_codes(errors: &[ServerError]) -> Vec<&'static str> {
    errors
        .iter()
        .filter_map(|e| match e.extensions.as_ref().and_then(|x| x.get("code")) {
            // Every code is the catalogue's (no code string is written anywhere else): its
            // own text, not a copy per error.
            Some(async_graphql::Value::String(code)) => Code::ALL.iter().find(|c| c.as_str() == code),
            _ => None,
        })
        .map(|c| c.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use async_graphql::{ErrorExtensions, PathSegment, Pos, ServerError};

    proptest::proptest! {
        /// A decimal the scanner marks is written as serde_json writes the float it read.
        #[test]
        fn a_marked_decimal_is_written_as_serde_json_writes_its_float(
            digits in 1u32..1_000_000_000,
            fraction in 1u8..14,
        ) {
            let text = digits.to_string();
            let f = usize::from(fraction);
            let body = match text.len().checked_sub(f) {
                Some(whole) if whole > 0 => format!("{}.{}", &text[..whole], &text[whole..]),
                _ => format!("0.{}{text}", "0".repeat(f - text.len())),
            };
            let tape = crate::backends::json::parse(body.as_bytes(), &crate::backends::json::Keep::All).unwrap();
            let root = tape.root();
            let float: f64 = body.parse().unwrap();
            proptest::prop_assert_eq!(root.as_f64(), Some(float));
            if let Some((d, fr)) = root.decimal() {
                let mut ours = Vec::new();
                super::write_decimal(&mut ours, d, fr);
                proptest::prop_assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&float).unwrap());
            }
        }
    }

    #[test]
    fn ratings_read_from_a_backend_are_marked_as_short_decimals() {
        for (body, marked) in [
            ("1.3", true),
            ("4.25", true),
            ("0.05", true),
            ("1.30", false),
            ("-1.5", false),
            ("0.000001", false),
            ("7", false),
        ] {
            let tape =
                crate::backends::json::parse(body.as_bytes(), &crate::backends::json::Keep::All).unwrap();
            assert_eq!(tape.root().decimal().is_some(), marked, "{body}");
        }
        // Every digit count and point place around where serde_json turns to an exponent.
        for len in 1..=9u32 {
            for fraction in 1..=13u8 {
                let digits = 10u32.pow(len - 1) + 7 * u32::from(len > 1);
                let mut body = Vec::new();
                super::write_decimal(&mut body, digits, fraction);
                let float: f64 = std::str::from_utf8(&body).unwrap().parse().unwrap();
                let tape = crate::backends::json::parse(&body, &crate::backends::json::Keep::All).unwrap();
                if tape.root().decimal().is_some() {
                    assert_eq!(std::str::from_utf8(&body).unwrap(), serde_json::to_string(&float).unwrap());
                }
            }
        }
    }

    #[test]
    fn errors_are_written_as_async_graphql_serializes_them() {
        let pos = Pos { line: 13, column: 9 };
        let mut full = async_graphql::Error::new("backend \"artwork\": circuit open\n")
            .extend_with(|_, e| e.set("code", "CIRCUIT_OPEN"))
            .into_server_error(pos);
        full.path =
            vec![PathSegment::Field("profile".into()), PathSegment::Index(0), PathSegment::Field("é".into())];
        let bare = ServerError::new("no place", None);
        let mut empty_extensions = async_graphql::Error::new("x")
            .extend_with(|_, e| {
                e.set("a", 1);
                e.unset("a");
            })
            .into_server_error(pos);
        empty_extensions.locations.push(Pos { line: 1, column: 2 });
        let errors = vec![full, bare, empty_extensions];
        let mut buf = Vec::new();
        super::write_errors(&mut buf, &errors);
        assert_eq!(String::from_utf8(buf).unwrap(), serde_json::to_string(&errors).unwrap());
        let mut buf = Vec::new();
        super::write_errors(&mut buf, &[]);
        assert_eq!(buf, b"[]");
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        // Every special byte at every place of a string longer than two words.
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}', ' ', '\u{7f}', 'é', '!', '#', '[', ']'] {
            for at in 0..20 {
                let s: String = (0..20).map(|i| if i == at { special } else { 'a' }).collect();
                let mut buf = Vec::new();
                super::write_str(&mut buf, &s);
                assert_eq!(buf, serde_json::to_vec(&s).unwrap(), "{s:?}");
                let escape = matches!(special, '"' | '\\') || (special as u32) < 0x20;
                assert_eq!(super::plain(s.as_bytes()), !escape, "{s:?}");
            }
        }
        for s in ["plain", "", "quote \" in", "back\\slash", "tab\tnew\nline", "\u{1}", "é ü 日本 \u{7f} /"]
        {
            let mut buf = Vec::new();
            super::write_str(&mut buf, s);
            assert_eq!(buf, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
