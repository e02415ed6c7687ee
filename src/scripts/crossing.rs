//! How data crosses into a realm and back out (worker side). In: the JSON text the engine
//! wrote is read by serde_json and each value made directly as a QuickJS value, with one atom
//! per distinct key per call. Out: the script's result is walked from Rust and written as JSON
//! text, with each distinct key escaped once per call. Both replace QuickJS's own `JSON.parse`
//! and `JSON.stringify`, which cost 1.3× and 2.7× as many instructions on the home payload
//! (docs/benchmarks-history.md §24); the semantics are `JSON.parse`'s and `JSON.stringify`'s
//! (properties defined, not set, so a `"__proto__"` key is an ordinary property; `toJSON`,
//! class instances, Dates, Maps and proxies handed to QuickJS's own `JSON.stringify`).

use std::cell::RefCell;
use std::collections::HashMap;

use rquickjs::object::Property;
use rquickjs::{Array, Atom, Ctx, Object, Type, Value};
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Nesting a result may have at most (deeper, or cyclic, is an error).
pub const MAX_DEPTH: usize = 512;

/// JSON text into a QuickJS value. Nesting is bounded by serde_json's limit (128).
pub fn to_js<'js>(ctx: &Ctx<'js>, text: &[u8]) -> Result<Value<'js>, String> {
    let atoms = RefCell::new(Map::default());
    // One UTF-8 check of the whole text, rather than one per string.
    let text = simdutf8::basic::from_utf8(text).map_err(|_| "the text is not UTF-8".to_owned())?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Build { ctx, atoms: &atoms }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct Build<'a, 'js> {
    ctx: &'a Ctx<'js>,
    atoms: &'a RefCell<Map<Box<str>, Atom<'js>>>,
}

impl Build<'_, '_> {
    fn js<T, E: serde::de::Error>(r: rquickjs::Result<T>) -> Result<T, E> {
        r.map_err(E::custom)
    }
}

impl<'de, 'js> DeserializeSeed<'de> for Build<'_, 'js> {
    type Value = Value<'js>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value<'js>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'js> Visitor<'de> for Build<'_, 'js> {
    type Value = Value<'js>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_unit<E>(self) -> Result<Value<'js>, E> {
        Ok(Value::new_null(self.ctx.clone()))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value<'js>, E> {
        Ok(Value::new_bool(self.ctx.clone(), b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value<'js>, E> {
        Ok(match i32::try_from(n) {
            Ok(n) => Value::new_int(self.ctx.clone(), n),
            Err(_) => Value::new_float(self.ctx.clone(), n as f64),
        })
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value<'js>, E> {
        Ok(match i32::try_from(n) {
            Ok(n) => Value::new_int(self.ctx.clone(), n),
            Err(_) => Value::new_float(self.ctx.clone(), n as f64),
        })
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value<'js>, E> {
        Ok(Value::new_number(self.ctx.clone(), n))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value<'js>, E> {
        Self::js(rquickjs::String::from_str(self.ctx.clone(), s)).map(rquickjs::String::into_value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value<'js>, A::Error> {
        let array = Self::js(Array::new(self.ctx.clone()))?;
        let mut i = 0;
        while let Some(v) = items.next_element_seed(self)? {
            Self::js(array.set(i, v))?;
            i += 1;
        }
        Ok(array.into_value())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Value<'js>, A::Error> {
        let object = Self::js(Object::new(self.ctx.clone()))?;
        while let Some(atom) = fields.next_key_seed(KeySeed(self))? {
            let value = fields.next_value_seed(self)?;
            // Defined, as `JSON.parse` does: `"__proto__"` is a property, not the prototype.
            let property = Property::from(value).writable().enumerable().configurable();
            object.prop(atom, property).map_err(A::Error::custom)?;
        }
        Ok(object.into_value())
    }
}

/// A key read straight into its atom: looked up in the call's atoms without copying it.
struct KeySeed<'a, 'js>(Build<'a, 'js>);

impl<'de, 'js> DeserializeSeed<'de> for KeySeed<'_, 'js> {
    type Value = Atom<'js>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Atom<'js>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'js> Visitor<'de> for KeySeed<'_, 'js> {
    type Value = Atom<'js>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Atom<'js>, E> {
        let mut atoms = self.0.atoms.borrow_mut();
        if let Some(a) = atoms.get(key) {
            return Ok(a.clone());
        }
        let a = Atom::from_str(self.0.ctx.clone(), key).map_err(E::custom)?;
        atoms.insert(Box::from(key), a.clone());
        Ok(a)
    }
}

/// Writes a QuickJS value as JSON, as `JSON.stringify` would; `Ok(false)` when it has no JSON
/// form (`undefined`, a function, a symbol: `JSON.stringify` returns `undefined`).
pub fn write_json<'js>(ctx: &Ctx<'js>, value: &Value<'js>, out: &mut Vec<u8>) -> Result<bool, String> {
    let object_prototype: Object = ctx
        .globals()
        .get::<_, Object>("Object")
        .and_then(|o| o.get("prototype"))
        .map_err(|e| e.to_string())?;
    let mut w = Walk {
        ctx,
        keys: Map::default(),
        to_json: Atom::from_str(ctx.clone(), "toJSON").map_err(|e| e.to_string())?,
        object_prototype,
    };
    w.value(value, out, 0, Key::Root)
}

/// Where a value sits, for the argument of its `toJSON`.
#[derive(Clone, Copy)]
enum Key<'a, 'js> {
    Root,
    Property(&'a Atom<'js>),
    Index(usize),
}

struct Walk<'a, 'js> {
    ctx: &'a Ctx<'js>,
    /// Each key seen, escaped and followed by `:`.
    keys: Map<Atom<'js>, Box<[u8]>>,
    to_json: Atom<'js>,
    object_prototype: Object<'js>,
}

impl<'js> Walk<'_, 'js> {
    fn value(
        &mut self,
        v: &Value<'js>,
        out: &mut Vec<u8>,
        depth: usize,
        key: Key<'_, 'js>,
    ) -> Result<bool, String> {
        if let Some(object) = v.as_object()
            && let Some(to_json) = self.to_json_of(object)?
        {
            if depth >= MAX_DEPTH {
                return Err(too_deep());
            }
            let key = match key {
                Key::Root => rquickjs::String::from_str(self.ctx.clone(), ""),
                Key::Property(atom) => atom.to_js_string(),
                Key::Index(i) => rquickjs::String::from_str(self.ctx.clone(), &i.to_string()),
            }
            .map_err(|e| self.thrown(e))?;
            let replaced: Value =
                to_json.call((rquickjs::function::This(v.clone()), key)).map_err(|e| self.thrown(e))?;
            // What `toJSON` returned is written as it is: its own `toJSON` is not asked.
            return self.write(&replaced, out, depth + 1);
        }
        self.write(v, out, depth)
    }

    /// A value whose `toJSON` (if any) has been called.
    fn write(&mut self, v: &Value<'js>, out: &mut Vec<u8>, depth: usize) -> Result<bool, String> {
        match kind(v) {
            Type::Uninitialized | Type::Undefined | Type::Function | Type::Constructor | Type::Symbol => {
                return Ok(false);
            }
            Type::Null => out.extend_from_slice(b"null"),
            Type::Bool => out.extend_from_slice(if v.as_bool() == Some(true) { b"true" } else { b"false" }),
            Type::Int => {
                out.extend_from_slice(itoa::Buffer::new().format(v.as_int().unwrap_or_default()).as_bytes())
            }
            Type::Float => return self.number(v, out),
            Type::String => match v.as_string().map(rquickjs::String::to_string) {
                Some(Ok(s)) => escape(out, &s),
                // Not valid UTF-8 (a lone surrogate): QuickJS escapes it.
                _ => return self.fallback(v, out),
            },
            Type::BigInt => return Err("TypeError: a BigInt has no JSON form".to_owned()),
            Type::Array => {
                let array = v.as_array().ok_or("an array that is not one")?;
                if depth >= MAX_DEPTH {
                    return Err(too_deep());
                }
                out.push(b'[');
                for i in 0..array.len() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let item: Value = array.get(i).map_err(|e| self.thrown(e))?;
                    if !self.value(&item, out, depth + 1, Key::Index(i))? {
                        out.extend_from_slice(b"null");
                    }
                }
                out.push(b']');
            }
            Type::Object => {
                let object = v.as_object().ok_or("an object that is not one")?;
                if depth >= MAX_DEPTH {
                    return Err(too_deep());
                }
                // Plain objects only; anything with a prototype of its own (a class instance,
                // a Map, a boxed primitive) goes to QuickJS.
                let plain = object.get_prototype().is_none_or(|p| p == self.object_prototype);
                if !plain {
                    return self.fallback(v, out);
                }
                out.push(b'{');
                let mut first = true;
                for entry in object.props::<Atom, Value>() {
                    let (key, item) = entry.map_err(|e| self.thrown(e))?;
                    if matches!(
                        item.type_of(),
                        Type::Uninitialized
                            | Type::Undefined
                            | Type::Function
                            | Type::Constructor
                            | Type::Symbol
                    ) {
                        continue;
                    }
                    // A value with no JSON form (a `toJSON` may return one) takes its key away.
                    let mark = out.len();
                    if !first {
                        out.push(b',');
                    }
                    match self.keys.get(&key) {
                        Some(k) => out.extend_from_slice(k),
                        None => {
                            let mut k = serde_json::to_vec(&key.to_string().map_err(|e| e.to_string())?)
                                .map_err(|e| e.to_string())?;
                            k.push(b':');
                            out.extend_from_slice(&k);
                            self.keys.insert(key.clone(), k.into_boxed_slice());
                        }
                    }
                    if self.value(&item, out, depth + 1, Key::Property(&key))? {
                        first = false;
                    } else {
                        out.truncate(mark);
                    }
                }
                out.push(b'}');
            }
            // Proxies, promises, errors and anything else: QuickJS's own rules.
            _ => return self.fallback(v, out),
        }
        Ok(true)
    }

    /// A number as `JSON.stringify` writes it: Rust's shortest round-trip digits are the same
    /// as JavaScript's where JavaScript uses no exponent (1e-6 ≤ |n| < 1e21); QuickJS writes
    /// the rest.
    fn number(&self, v: &Value<'js>, out: &mut Vec<u8>) -> Result<bool, String> {
        let n = v.as_float().unwrap_or_default();
        if !n.is_finite() {
            out.extend_from_slice(b"null");
        } else if n == 0.0 {
            out.push(b'0');
        } else if (1e-6..1e21).contains(&n.abs()) {
            use std::io::Write;
            write!(out, "{n}").map_err(|e| e.to_string())?;
        } else {
            return self.fallback(v, out);
        }
        Ok(true)
    }

    /// The object's `toJSON` function, own or inherited, if it has one.
    fn to_json_of(&self, object: &Object<'js>) -> Result<Option<rquickjs::Function<'js>>, String> {
        let f: Value = object.get(self.to_json.clone()).map_err(|e| self.thrown(e))?;
        Ok(f.into_function())
    }

    /// QuickJS's own `JSON.stringify` for this value.
    fn fallback(&self, v: &Value<'js>, out: &mut Vec<u8>) -> Result<bool, String> {
        match self.ctx.json_stringify(v.clone()).map_err(|e| self.thrown(e))? {
            Some(text) => {
                out.extend_from_slice(text.to_string().map_err(|e| e.to_string())?.as_bytes());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// An exception thrown while reading the value (a getter, `toJSON`) as its message.
    fn thrown(&self, e: rquickjs::Error) -> String {
        use rquickjs::CatchResultExt;
        match Err::<(), _>(e).catch(self.ctx) {
            Err(rquickjs::CaughtError::Exception(x)) => x.message().unwrap_or_default(),
            Err(other) => other.to_string(),
            Ok(()) => String::new(),
        }
    }
}

/// A value's type for the walk, told with the fewest calls into QuickJS: `Value::type_of`
/// asks six questions of every object (array, constructor, function, promise, error, proxy);
/// the walk needs two (function, array), and sends everything that is not a plain object to
/// QuickJS by its prototype.
fn kind(v: &Value<'_>) -> Type {
    if v.is_string() {
        Type::String
    } else if v.is_int() {
        Type::Int
    } else if v.is_object() {
        if v.is_function() {
            Type::Function
        } else if v.is_array() {
            Type::Array
        } else {
            Type::Object
        }
    } else {
        v.type_of()
    }
}

/// A string as JSON, escaped as `JSON.stringify` escapes it (the quote, the backslash and
/// control characters; nothing else). Written here rather than with serde_json's serializer,
/// whose set-up per string cost 0.28 M instructions per tv/home call (600 short strings).
fn escape(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn too_deep() -> String {
    format!("TypeError: the result is cyclic or nested deeper than {MAX_DEPTH}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rquickjs::{Context, Runtime};

    /// Each expression's JSON as QuickJS's `JSON.stringify` writes it and as [`write_json`]
    /// does, which must be the same bytes.
    #[test]
    fn results_are_written_as_json_stringify_writes_them() {
        let runtime = Runtime::new().unwrap();
        let context = Context::full(&runtime).unwrap();
        context.with(|ctx| {
            for expression in [
                "null",
                "true",
                "[false, 0, -0, 1, -1, 2147483647, -2147483648, 2147483648, 0.1, 1.5, -2.25, 1e21, 1e-7, 1.5e-7, 123456789012345680000, 5e-324, 1.7976931348623157e308, NaN, Infinity, -Infinity]",
                r#"["", "a\"b\\c", "\n\r\t\b\f\u0001\u001f", "é ü 中文 😀", "\u2028\u2029", "\ud800", "a\udc00b", "</script>"]"#,
                "({ a: 1, b: undefined, c: () => 1, d: Symbol('x'), e: [undefined, () => 1, Symbol('y')], f: null })",
                "({ 2: 'two', 1: 'one', b: 'b', a: 'a', '': 'empty', 'k\"ey': 1, ['__proto__']: 'own' })",
                "({ date: new Date(0), map: new Map([[1, 2]]), set: new Set([1]), re: /x/g, err: new Error('e') })",
                "({ boxed: [new String('s'), new Number(3), new Boolean(false)] })",
                "({ own: { toJSON() { return 'mine'; } }, nested: { deeper: { toJSON: (k) => 'key ' + k } } })",
                "({ a: { toJSON() { return undefined; } }, b: 1, c: [{ toJSON() { return undefined; } }], d: { toJSON() { return { toJSON() { return 'x'; } }; } } })",
                "(() => { class Tile { constructor() { this.id = 1; } get label() { return 'x'; } } return [new Tile()]; })()",
                "(() => { const o = {}; Object.defineProperty(o, 'hidden', { value: 1 }); Object.defineProperty(o, 'shown', { value: 2, enumerable: true }); return o; })()",
                "(() => { const o = { a: 1 }; Object.defineProperty(o, 'g', { get() { return [1, 2]; }, enumerable: true }); return o; })()",
                "Object.create(null, { x: { value: 1, enumerable: true } })",
                "[1, , 3]",
                "new Proxy({ a: 1 }, {})",
                "({ rows: Array.from({ length: 3 }, (_, i) => ({ title: 'r' + i, tiles: [{ id: String(i), stars: i / 2 }] })) })",
            ] {
                let value: Value = ctx.eval(expression).unwrap();
                let expected = ctx.json_stringify(value.clone()).unwrap().map(|s| s.to_string().unwrap());
                let mut out = Vec::new();
                let written = write_json(&ctx, &value, &mut out).unwrap();
                let ours = written.then(|| String::from_utf8(out).unwrap());
                assert_eq!(ours, expected, "{expression}");
            }
        });
    }

    #[test]
    fn what_json_stringify_refuses_is_an_error_and_depth_is_bounded() {
        let runtime = Runtime::new().unwrap();
        let context = Context::full(&runtime).unwrap();
        context.with(|ctx| {
            for (expression, says) in [
                ("(() => { const o = {}; o.self = o; return o; })()", "cyclic"),
                ("(() => { let a = []; for (let i = 0; i < 100000; i++) a = [a]; return a; })()", "deeper"),
                ("({ n: 10n })", "BigInt"),
                ("({ get bad() { throw new Error('getter says no'); } })", "getter says no"),
            ] {
                let value: Value = ctx.eval(expression).unwrap();
                let error = write_json(&ctx, &value, &mut Vec::new()).unwrap_err();
                assert!(error.contains(says), "{expression}: {error}");
            }
        });
    }

    #[test]
    fn data_comes_in_as_json_parse_makes_it() {
        let runtime = Runtime::new().unwrap();
        let context = Context::full(&runtime).unwrap();
        context.with(|ctx| {
            for text in [
                r#"{"a":[1,2.5,-3,1e300,12345678901234567890,true,false,null,"x\u00e9\n"],"b":{"c":{}}}"#,
                r#"{"__proto__":{"polluted":true},"a":1,"a":2}"#,
                r#"[{"id":"1","name":"é 中文 😀"},{"id":"2"}]"#,
                r#""just a string""#,
            ] {
                let ours = to_js(&ctx, text.as_bytes()).unwrap();
                let theirs = ctx.json_parse(text).unwrap();
                let show = |v| ctx.json_stringify(v).unwrap().unwrap().to_string().unwrap();
                assert_eq!(show(ours.clone()), show(theirs), "{text}");
                if text.contains("__proto__") {
                    let object = ours.as_object().unwrap();
                    let polluted: Value = object.get("polluted").unwrap();
                    assert!(polluted.is_undefined(), "a __proto__ key is an own property, not the prototype");
                }
            }
            assert!(to_js(&ctx, b"{\"a\": }").is_err());
            assert!(to_js(&ctx, b"[1] [2]").is_err(), "trailing data");
            let deep = "[".repeat(200) + &"]".repeat(200);
            assert!(to_js(&ctx, deep.as_bytes()).is_err(), "nesting is bounded");
        });
    }
}
