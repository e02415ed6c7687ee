//! The engine's value for backend answers: what the scanner (`scan.rs`) builds and the
//! executor and projection read.
//!
//! An answer is a [`Tape`]: one flat vector of fixed-size nodes in document order, and one
//! text buffer holding every kept string and name. A list or object node records where its
//! contents end, so a reader steps over a whole subtree in one move. Building one costs two
//! growing vectors per answer instead of an allocation per object and per string, and
//! dropping it is two frees instead of a walk (docs/benchmarks-history.md §18).
//!
//! Why not `serde_json::Value`: with `preserve_order` (which the rest of Facade needs, so that
//! scripts, admin answers and logs keep the order they were given) every object is an
//! `IndexMap` with SipHash, and every lookup hashes the key. A backend object here keeps a
//! handful of fields, found faster by comparing names in a short run of nodes. Measured in
//! docs/benchmarks-history.md (§15).
//!
//! Readers hold a [`Val`]: the tape and a node's index. [`Held`] is the owned form: the
//! answer's `Arc` and a node, so an answer's items share it (one allocation per answer).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// One backend answer: its nodes in document order and the text of its strings and names.
#[derive(Debug, Clone, Default)]
pub struct Tape {
    nodes: Vec<Node>,
    text: String,
    /// The plan's names the answer's kept fields carry (each once), shared, not copied.
    names: Vec<Arc<str>>,
}

/// A node: what it is, a count or length, and its payload (a number's bits, a string's
/// start in the text, or where a list's or object's contents end).
#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    /// A name's first, second and last bytes (zero where it is shorter): most lookups are told
    /// apart by these and the length, without reading the text. A plan name's index in
    /// [`Tape::names`]; a string's [`PLAIN`] mark.
    fp: [u8; 3],
    /// A string's or name's length; a list's items or an object's (live) fields.
    len: u32,
    x: u64,
}

/// A string node's `fp[0]` when its text needs no escape in JSON.
const PLAIN: u8 = 1;
/// A string node's `fp[0]` when it is an integer too large for `u64`, kept as its digits: it
/// reads as a float ([`View::Float`]) everywhere but [`Val::integer_digits`].
const DIGITS: u8 = 2;

/// A float node's `fp[0]` when it was read as a short decimal (see [`Tape::push_decimal`]).
const DECIMAL: u8 = 1;

/// A name's first, second and last bytes, as [`Node::fp`] holds them.
#[inline(always)]
fn fingerprint(name: &[u8]) -> [u8; 3] {
    match name {
        [] => [0; 3],
        [a] => [*a, 0, 0],
        [a, b] => [*a, *b, *b],
        [a, b, .., z] => [*a, *b, *z],
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    False,
    True,
    Int,
    /// An integer above `i64::MAX`.
    UInt,
    Float,
    Str,
    /// Its items follow; `x` is the index past the last.
    List,
    /// Name and value pairs follow; `x` is the index past the last.
    Obj,
    /// An object field's name, in the text; its value is the next node.
    Name,
    /// An object field's name that is one of the plan's: `x` is the address of its text (how
    /// most lookups find it), `fp` its index in [`Tape::names`]; its value is the next node.
    Plan,
    /// The name of a field a later duplicate replaced; its value is skipped.
    Dropped,
}

/// The float of an integer too large for `u64` (rare: kept out of line, so that
/// [`Val::view`], on every value's path, stays small enough to inline).
#[cold]
#[inline(never)]
fn big_integer(digits: &str) -> f64 {
    digits.parse().unwrap_or(f64::NAN)
}

/// A node index that is no node: null (a missing field, an item past the end).
const NONE: u32 = u32::MAX;

static EMPTY: Tape = Tape { nodes: Vec::new(), text: String::new(), names: Vec::new() };

/// A value in a tape (a reader's view; `Copy`).
#[derive(Clone, Copy)]
pub struct Val<'a> {
    tape: &'a Tape,
    at: u32,
}

/// What a [`Val`] is, with its contents.
#[derive(Clone, Copy)]
pub enum View<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
    List(Items<'a>),
    Obj(Fields<'a>),
}

/// A list's items, in order.
#[derive(Clone, Copy)]
pub struct Items<'a> {
    tape: &'a Tape,
    next: u32,
    end: u32,
    left: u32,
}

/// An object's fields, in order.
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    tape: &'a Tape,
    next: u32,
    end: u32,
    left: u32,
}

/// Null, for lookups that find nothing.
pub const NULL: Val<'static> = Val { tape: &EMPTY, at: NONE };

impl Tape {
    pub fn with_capacity(nodes: usize, text: usize) -> Self {
        Self { nodes: Vec::with_capacity(nodes), text: String::with_capacity(text), names: Vec::new() }
    }

    /// How many nodes and text bytes the tape holds (what the scanner's `TapeShare` learns).
    pub fn sizes(&self) -> (usize, usize) {
        (self.nodes.len(), self.text.len())
    }

    /// The value: the first node.
    pub fn root(&self) -> Val<'_> {
        Val { tape: self, at: if self.nodes.is_empty() { NONE } else { 0 } }
    }

    fn next(&self, i: u32) -> u32 {
        let n = &self.nodes[i as usize];
        match n.kind {
            Kind::List | Kind::Obj => n.x as u32,
            _ => i + 1,
        }
    }

    /// The first live field name of the object opened at `obj`, before node `end`, for which
    /// `f` (given the name's index and text) is true.
    fn find_name(&self, obj: u32, end: u32, mut f: impl FnMut(u32, &str) -> bool) -> Option<u32> {
        let mut at = obj + 1;
        while at < end {
            let n = &self.nodes[at as usize];
            if matches!(n.kind, Kind::Name | Kind::Plan) && f(at, self.text_of(n)) {
                return Some(at);
            }
            at = self.next(at + 1);
        }
        None
    }

    fn text_of(&self, n: &Node) -> &str {
        if n.kind == Kind::Plan {
            return &self.names[plan_index(n.fp)];
        }
        let start = n.x as usize;
        &self.text[start..start + n.len as usize]
    }

    /// Adds one of the plan's names to [`Self::names`] (once per answer; the scanner remembers
    /// which): its index there.
    pub fn add_plan_name(&mut self, name: &Arc<str>) -> u32 {
        self.names.push(name.clone());
        len32(self.names.len() - 1)
    }

    /// A field's name that is the plan's name number `index` (see [`Self::add_plan_name`]):
    /// the name's index.
    #[inline]
    pub fn push_plan_name(&mut self, name: &str, index: u32) -> u32 {
        let [a, b, c, d] = index.to_le_bytes();
        if d != 0 {
            // Past what three bytes index (never, for a plan's names): a copy in the text.
            return self.push_name(name);
        }
        let at = len32(self.nodes.len());
        self.nodes.push(Node {
            kind: Kind::Plan,
            fp: [a, b, c],
            len: len32(name.len()),
            x: name.as_ptr() as u64,
        });
        at
    }

    // Building, in document order (the scanner and `from_json`).

    #[inline]
    fn push(&mut self, kind: Kind, len: u32, x: u64) {
        self.nodes.push(Node { kind, fp: [0; 3], len, x });
    }

    #[inline]
    pub fn push_null(&mut self) {
        self.push(Kind::Null, 0, 0);
    }

    #[inline]
    pub fn push_bool(&mut self, b: bool) {
        self.push(if b { Kind::True } else { Kind::False }, 0, 0);
    }

    #[inline]
    pub fn push_int(&mut self, i: i64) {
        self.push(Kind::Int, 0, i as u64);
    }

    #[inline]
    pub fn push_uint(&mut self, u: u64) {
        self.push(Kind::UInt, 0, u);
    }

    #[inline]
    pub fn push_float(&mut self, f: f64) {
        self.push(Kind::Float, 0, f.to_bits());
    }

    /// A float read as `digits / 10^fraction` (a short decimal such as `4.25`: 425 and 2),
    /// whose shortest form is those digits with the point put back: it is written that way,
    /// without formatting the float again ([`Val::decimal`]). The scanner marks only what
    /// serde_json would write the same (see `scan::Scan::number`).
    #[inline]
    pub fn push_decimal(&mut self, f: f64, digits: u32, fraction: u8) {
        self.nodes.push(Node { kind: Kind::Float, fp: [DECIMAL, fraction, 0], len: digits, x: f.to_bits() });
    }

    /// Where the next text goes, and its length once written.
    #[inline]
    fn text_span(&mut self, s: &str) -> (u32, u64) {
        let start = self.text.len();
        self.text.push_str(s);
        (len32(s.len()), start as u64)
    }

    /// A string: its index.
    #[inline]
    pub fn push_str(&mut self, s: &str) -> u32 {
        let (len, x) = self.text_span(s);
        self.push(Kind::Str, len, x);
        len32(self.nodes.len() - 1)
    }

    /// An integer too large for `u64`, by its digits (with its `-`): it reads as the float
    /// serde_json would make of it, and its digits stay for [`Val::integer_digits`].
    pub fn push_big_integer(&mut self, digits: &str) {
        let (len, x) = self.text_span(digits);
        self.nodes.push(Node { kind: Kind::Str, fp: [DIGITS, 0, 0], len, x });
    }

    /// A string known to hold no `"`, `\` or control character (the scanner read it
    /// without an escape): [`Val::plain_str`] tells so, and it is written without a check.
    pub fn push_plain_str(&mut self, s: &str) -> u32 {
        let (len, x) = self.text_span(s);
        self.nodes.push(Node { kind: Kind::Str, fp: [PLAIN, 0, 0], len, x });
        len32(self.nodes.len() - 1)
    }

    /// Opens a list or object: its index, for [`Self::close`].
    #[inline]
    pub fn open_list(&mut self) -> u32 {
        self.push(Kind::List, 0, 0);
        len32(self.nodes.len() - 1)
    }

    #[inline]
    pub fn open_obj(&mut self) -> u32 {
        self.push(Kind::Obj, 0, 0);
        len32(self.nodes.len() - 1)
    }

    /// A field's name (its value is pushed next): the name's index.
    pub fn push_name(&mut self, s: &str) -> u32 {
        let (len, x) = self.text_span(s);
        self.nodes.push(Node { kind: Kind::Name, fp: fingerprint(s.as_bytes()), len, x });
        len32(self.nodes.len() - 1)
    }

    /// Marks an earlier field (by its name's index) as replaced by a later duplicate.
    pub fn drop_field(&mut self, name: u32) {
        self.nodes[name as usize].kind = Kind::Dropped;
    }

    /// The name index of an earlier live field of the object opened at `obj` named as the
    /// field whose name is at `name_at`.
    pub fn earlier_field(&self, obj: u32, name_at: u32, name: &str) -> Option<u32> {
        self.find_name(obj, name_at, |_, k| k == name)
    }

    /// The name of the field at `name`.
    pub fn name_at(&self, name: u32) -> &str {
        self.text_of(&self.nodes[name as usize])
    }

    /// Closes the list or object opened at `at`, with `count` items or live fields.
    #[inline]
    pub fn close(&mut self, at: u32, count: usize) {
        let end = self.nodes.len() as u64;
        let n = &mut self.nodes[at as usize];
        n.len = len32(count);
        n.x = end;
    }

    /// From a `serde_json` value (an SDL `@fallback`, a test's data).
    pub fn from_json(value: &Value) -> Tape {
        let mut t = Tape::default();
        t.add_json(value);
        t
    }

    fn add_json(&mut self, value: &Value) {
        match value {
            Value::Null => self.push_null(),
            Value::Bool(b) => self.push_bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => self.push_int(i),
                (None, Some(u)) => self.push_uint(u),
                _ => match n.as_f64() {
                    Some(f) => self.push_float(f),
                    None => self.push_null(),
                },
            },
            Value::String(s) => {
                self.push_str(s);
            }
            Value::Array(items) => {
                let at = self.open_list();
                items.iter().for_each(|v| self.add_json(v));
                self.close(at, items.len());
            }
            // A `serde_json` map has unique keys already.
            Value::Object(map) => {
                let at = self.open_obj();
                for (k, v) in map {
                    self.push_name(k);
                    self.add_json(v);
                }
                self.close(at, map.len());
            }
        }
    }
}

fn plan_index(fp: [u8; 3]) -> usize {
    u32::from_le_bytes([fp[0], fp[1], fp[2], 0]) as usize
}

/// Two names of one length, compared byte by byte: names are short, and a `memcmp` call per
/// field cost more than the loop.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Counts and lengths fit 32 bits: a body is far smaller than 4 GiB (its size is bounded).
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("an answer smaller than 4 GiB")
}

impl<'a> Val<'a> {
    #[inline]
    pub fn view(self) -> View<'a> {
        let Some(n) = self.tape.nodes.get(self.at as usize) else { return View::Null };
        match n.kind {
            Kind::Null | Kind::Name | Kind::Plan | Kind::Dropped => View::Null,
            Kind::False => View::Bool(false),
            Kind::True => View::Bool(true),
            Kind::Int => View::Int(n.x as i64),
            Kind::UInt => View::UInt(n.x),
            Kind::Float => View::Float(f64::from_bits(n.x)),
            Kind::Str if n.fp[0] == DIGITS => View::Float(big_integer(self.tape.text_of(n))),
            Kind::Str => View::Str(self.tape.text_of(n)),
            Kind::List => {
                View::List(Items { tape: self.tape, next: self.at + 1, end: n.x as u32, left: n.len })
            }
            Kind::Obj => {
                View::Obj(Fields { tape: self.tape, next: self.at + 1, end: n.x as u32, left: n.len })
            }
        }
    }

    #[inline]
    fn kind(self) -> Kind {
        self.tape.nodes.get(self.at as usize).map_or(Kind::Null, |n| n.kind)
    }

    /// An object's field. (A loop over the nodes, not [`Fields`]: the projection looks up
    /// every field it writes. The schema's shared names are found by address, as the kept
    /// names are the same texts; any other name by its fingerprint, then its bytes.)
    #[inline]
    pub fn get(self, key: &str) -> Option<Val<'a>> {
        let obj = self.tape.nodes.get(self.at as usize)?;
        if obj.kind != Kind::Obj {
            return None;
        }
        let end = (obj.x as usize).min(self.tape.nodes.len());
        let at = self.find_in(key, self.at as usize + 1, end)?;
        Some(Val { tape: self.tape, at })
    }

    /// The index of the value named `key` among the fields from node `i` to `end`.
    #[inline(always)]
    fn find_in(self, key: &str, i: usize, end: usize) -> Option<u32> {
        let nodes = &self.tape.nodes;
        let address = key.as_ptr() as u64;
        // The engine looks fields up by the schema's shared names, which the kept names of an
        // answer are: first by address alone, a few instructions a field.
        let mut at = i;
        while at + 1 < end {
            let name = &nodes[at];
            if name.x == address && name.kind == Kind::Plan {
                return Some((at + 1) as u32);
            }
            let value = &nodes[at + 1];
            at = if matches!(value.kind, Kind::List | Kind::Obj) { value.x as usize } else { at + 2 };
        }
        self.find_by_bytes(key.as_bytes(), i, end)
    }

    /// Any other name (and a name held as text), by its bytes: out of line, so the address
    /// pass above stays small where it is inlined (saving and restoring the registers this
    /// loop needs cost more than the address pass itself).
    #[cold]
    #[inline(never)]
    fn find_by_bytes(self, key: &[u8], i: usize, end: usize) -> Option<u32> {
        let (tape, nodes) = (self.tape, &self.tape.nodes);
        let mut i = i;
        while i + 1 < end {
            let name = &nodes[i];
            if name.len as usize == key.len() {
                let found = match name.kind {
                    Kind::Plan => same(tape.names[plan_index(name.fp)].as_bytes(), key),
                    Kind::Name => {
                        let start = name.x as usize;
                        name.fp == fingerprint(key)
                            && same(&tape.text.as_bytes()[start..start + key.len()], key)
                    }
                    _ => false,
                };
                if found {
                    return Some((i + 1) as u32);
                }
            }
            let value = &nodes[i + 1];
            i = if matches!(value.kind, Kind::List | Kind::Obj) { value.x as usize } else { i + 2 };
        }
        None
    }

    /// An object's field, or null.
    #[inline]
    pub fn field(self, key: &str) -> Val<'a> {
        self.get(key).unwrap_or(NULL)
    }

    /// A list's item, or null.
    pub fn item(self, i: usize) -> Val<'a> {
        match self.view() {
            View::List(mut items) => items.nth(i).unwrap_or(NULL),
            _ => NULL,
        }
    }

    /// A list's length or an object's field count; 0 for anything else.
    pub fn len(self) -> usize {
        match self.tape.nodes.get(self.at as usize) {
            Some(n) if matches!(n.kind, Kind::List | Kind::Obj) => n.len as usize,
            _ => 0,
        }
    }

    /// No items or fields (or not a list or object).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// A string known to need no escape in JSON (see [`Tape::push_plain_str`]).
    #[inline]
    pub fn plain_str(self) -> Option<&'a str> {
        match self.tape.nodes.get(self.at as usize) {
            Some(n) if n.kind == Kind::Str && n.fp[0] == PLAIN => Some(self.tape.text_of(n)),
            _ => None,
        }
    }

    /// The digits of an integer too large for `u64` (see [`Tape::push_big_integer`]).
    pub fn integer_digits(self) -> Option<&'a str> {
        match self.tape.nodes.get(self.at as usize) {
            Some(n) if n.kind == Kind::Str && n.fp[0] == DIGITS => Some(self.tape.text_of(n)),
            _ => None,
        }
    }

    /// A float marked as a short decimal: its digits and how many of them follow the point.
    #[inline]
    pub fn decimal(self) -> Option<(u32, u8)> {
        match self.tape.nodes.get(self.at as usize) {
            Some(n) if n.kind == Kind::Float && n.fp[0] == DECIMAL => Some((n.len, n.fp[1])),
            _ => None,
        }
    }

    /// An integer that fits `i64` (what [`View::Int`] holds), without building a view.
    #[inline]
    pub fn int(self) -> Option<i64> {
        match self.tape.nodes.get(self.at as usize) {
            Some(n) if n.kind == Kind::Int => Some(n.x as i64),
            _ => None,
        }
    }

    pub fn as_str(self) -> Option<&'a str> {
        match self.view() {
            View::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(self) -> Option<i64> {
        match self.view() {
            View::Int(i) => Some(i),
            View::UInt(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }

    pub fn as_f64(self) -> Option<f64> {
        match self.view() {
            View::Int(i) => Some(i as f64),
            View::UInt(u) => Some(u as f64),
            View::Float(f) => Some(f),
            _ => None,
        }
    }

    #[inline]
    pub fn is_null(self) -> bool {
        self.kind() == Kind::Null
    }

    #[inline]
    pub fn is_object(self) -> bool {
        self.kind() == Kind::Obj
    }

    pub fn is_list(self) -> bool {
        self.kind() == Kind::List
    }

    /// Where this node sits in memory: the same value, however reached, has the same address
    /// while its answer is held (null has none: 0).
    #[inline]
    pub fn address(self) -> usize {
        match self.tape.nodes.get(self.at as usize) {
            Some(n) => std::ptr::from_ref(n) as usize,
            None => 0,
        }
    }

    /// As a `serde_json` value (a key sent in a POST body, a test's check).
    pub fn to_json(self) -> Value {
        match self.view() {
            View::Null => Value::Null,
            View::Bool(b) => Value::Bool(b),
            View::Int(i) => Value::from(i),
            View::UInt(u) => Value::from(u),
            View::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            View::Str(s) => Value::String(s.to_owned()),
            View::List(items) => Value::Array(items.map(Val::to_json).collect()),
            View::Obj(fields) => Value::Object(fields.map(|(k, v)| (k.to_owned(), v.to_json())).collect()),
        }
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Val<'a>;

    #[inline]
    fn next(&mut self) -> Option<Val<'a>> {
        if self.next >= self.end {
            return None;
        }
        let at = self.next;
        self.next = self.tape.next(at);
        self.left -= 1;
        Some(Val { tape: self.tape, at })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Items<'_> {}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, Val<'a>);

    #[inline]
    fn next(&mut self) -> Option<(&'a str, Val<'a>)> {
        loop {
            if self.next >= self.end {
                return None;
            }
            let name = &self.tape.nodes[self.next as usize];
            let value = self.next + 1;
            self.next = self.tape.next(value);
            if matches!(name.kind, Kind::Name | Kind::Plan) {
                self.left -= 1;
                return Some((self.tape.text_of(name), Val { tape: self.tape, at: value }));
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Fields<'_> {}

/// A value a request holds: a whole answer or one node of it (a batch answer's list item, a
/// field of an answer keyed by key). An answer's items share it: one allocation per answer
/// rather than one per item.
#[derive(Debug, Clone)]
pub struct Held {
    owner: Arc<Tape>,
    at: u32,
}

impl Held {
    pub fn new(tape: Tape) -> Self {
        Self::whole(Arc::new(tape))
    }

    pub fn whole(owner: Arc<Tape>) -> Self {
        let at = if owner.nodes.is_empty() { NONE } else { 0 };
        Self { owner, at }
    }

    /// Null.
    pub fn null() -> Self {
        Self { owner: Arc::new(Tape::default()), at: NONE }
    }

    /// `v`, a value of `owner`, held.
    pub fn of(owner: &Arc<Tape>, v: Val<'_>) -> Self {
        debug_assert!(std::ptr::eq(&**owner, v.tape) || v.at == NONE);
        Self { owner: owner.clone(), at: v.at }
    }

    /// `v`, a value of the answer this holds, held.
    pub fn at(&self, v: Val<'_>) -> Self {
        Self::of(&self.owner, v)
    }

    #[inline]
    pub fn val(&self) -> Val<'_> {
        Val { tape: &self.owner, at: self.at }
    }
}

impl Serialize for Val<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.view() {
            View::Null => s.serialize_unit(),
            View::Bool(b) => s.serialize_bool(b),
            View::Int(i) => s.serialize_i64(i),
            View::UInt(u) => s.serialize_u64(u),
            View::Float(f) => s.serialize_f64(f),
            View::Str(t) => s.serialize_str(t),
            View::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&v)?;
                }
                seq.end()
            }
            View::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, &v)?;
                }
                map.end()
            }
        }
    }
}

/// JSON text, as `serde_json` writes it.
/// JSON text; an integer too large for `u64` by its digits (exact, and valid JSON).
impl fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(digits) = self.integer_digits() {
            return f.write_str(digits);
        }
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Which nodes of which answers were met: a bit per node, per answer (a step's parents sit
/// in one or two answers). Cheaper than hashing every node's address into a set.
#[derive(Default)]
pub struct Marks {
    tapes: Vec<(usize, Vec<u64>)>,
}

impl Marks {
    /// Marks `v`'s node: whether it was not marked before.
    pub fn mark(&mut self, v: Val<'_>) -> bool {
        let id = std::ptr::from_ref(v.tape) as usize;
        let at = match self.tapes.iter().position(|(t, _)| *t == id) {
            Some(at) => at,
            None => {
                self.tapes.push((id, vec![0; v.tape.nodes.len().div_ceil(64).max(1)]));
                self.tapes.len() - 1
            }
        };
        let bits = &mut self.tapes[at].1;
        let (word, bit) = (v.at as usize / 64, 1u64 << (v.at % 64));
        match bits.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            Some(_) => false,
            // `NULL` (no node): never a parent.
            None => false,
        }
    }
}

/// The names of a whole object being read, to find a duplicate: searched while the object is
/// small, indexed once it is not (a backend may send an object keyed by thousands of IDs).
/// One per object.
#[derive(Default)]
pub struct Seen {
    index: Option<HashMap<Box<str>, u32, foldhash::fast::RandomState>>,
    /// Fields read so far, duplicates included: what decides when to index (counting live
    /// fields only, 100,000 repeats of one key were each a scan of all before them).
    read: usize,
}

impl Seen {
    /// How many fields an object may have before its names are indexed.
    const SCAN: usize = 16;

    /// The name index of an earlier live field named `name` of the object opened at `obj`,
    /// which has `count` live fields before the new one; `name_at` is the new field's name
    /// index (recorded).
    pub fn earlier(&mut self, tape: &Tape, obj: u32, count: usize, name: &str, name_at: u32) -> Option<u32> {
        self.read += 1;
        if self.index.is_none() {
            if count < Self::SCAN && self.read <= Self::SCAN {
                return tape.find_name(obj, name_at, |_, k| k == name);
            }
            let mut index = HashMap::default();
            tape.find_name(obj, name_at, |at, k| {
                index.insert(Box::from(k), at);
                false
            });
            self.index = Some(index);
        }
        self.index.as_mut().and_then(|index| index.insert(Box::from(name), name_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn marks_tell_each_node_of_each_answer_once() {
        // More than 64 nodes, so that marks span words.
        let items: Vec<Value> = (0..100).map(|i| json!({"id": i})).collect();
        let (a, b) = (Tape::from_json(&Value::Array(items.clone())), Tape::from_json(&Value::Array(items)));
        let mut marks = Marks::default();
        fn all(t: &Tape) -> Vec<Val<'_>> {
            match t.root().view() {
                View::List(items) => items.collect(),
                _ => unreachable!(),
            }
        }
        for (x, y) in all(&a).into_iter().zip(all(&b)) {
            assert!(marks.mark(x), "first time");
            assert!(!marks.mark(x), "second time");
            assert!(marks.mark(y), "the same place of another answer is another node");
        }
        assert!(!marks.mark(NULL));
    }

    #[test]
    fn converts_both_ways_and_writes_json_as_serde_json_does() {
        let v = json!({"a": [1, -2, 18446744073709551615u64, 4.5, 1.0, "x\"y", true, null], "b": {"c": {}}});
        let t = Tape::from_json(&v);
        let d = t.root();
        assert_eq!(d.to_json(), v);
        assert_eq!(d.to_string(), v.to_string());
        assert!(d.get("b").and_then(|b| b.get("c")).is_some_and(|c| c.is_object() && c.is_empty()));
        assert_eq!(d.get("a").map(|a| a.item(1).as_i64()), Some(Some(-2)));
        assert!(d.get("a").is_some_and(|a| a.item(99).is_null()));
        assert_eq!(d.get("a").map(|a| a.item(2).as_i64()), Some(None));
        assert_eq!(d.get("a").map(|a| a.len()), Some(8));
        assert!(d.get("zz").is_none());
        assert!(NULL.is_null() && NULL.get("a").is_none() && NULL.address() == 0);
    }

    #[test]
    fn a_dropped_field_is_neither_found_nor_counted() {
        let mut t = Tape::default();
        let obj = t.open_obj();
        let a = t.push_name("a");
        t.push_int(1);
        t.push_name("b");
        t.push_null();
        t.drop_field(a);
        t.push_name("a");
        t.push_int(2);
        t.close(obj, 2);
        assert_eq!(t.root().to_string(), r#"{"b":null,"a":2}"#);
        assert_eq!(t.root().get("a").and_then(Val::as_i64), Some(2));
    }
}
