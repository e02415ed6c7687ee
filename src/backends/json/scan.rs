//! The JSON scanner behind [`super::parse`]: one pass over a backend body that
//! writes a [`Tape`] of the fields a request reads and only steps over the rest.
//!
//! Written here because no JSON crate fits the job: a body is mostly skipped (a catalog title
//! carries a synopsis, genres and more; a home screen reads its name and year), and the kept
//! names are the plan's own shared texts. serde_json through a filtering seed, simd-json's
//! tape, sonic-rs and jiter were each measured on the home query (docs/benchmarks-history.md §15, §16);
//! all of them decode every token through a general interface, which was 40 % of a request.
//! This scanner finds the end of a string sixteen bytes at a time, copies nothing it skips,
//! and parses integers in place.
//!
//! It accepts exactly RFC 8259 JSON, as serde_json does: strict numbers, escapes checked
//! (also in skipped strings), no control characters in strings, nothing after the value.
//! Kept strings and names must be UTF-8; skipped ones are not decoded (serde_json does the
//! same). Nesting is bounded by [`DEPTH`], kept or skipped; recursion is the only state besides
//! the tape being written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use super::keep::{Keep, Names};
use super::tape::{Seen, Tape};

/// How deep a body may nest, kept or skipped (serde_json's bound).
pub const DEPTH: u8 = 128;

/// A backend body that is not JSON, and where: "expected value at line 1 column 12".
#[derive(Debug, thiserror::Error)]
#[error("{what} at line {line} column {column}")]
pub struct BodyError {
    what: &'static str,
    line: usize,
    column: usize,
}

/// What went wrong and at which byte (the line and column are counted only then).
struct Fault(&'static str, usize);

type R<T> = Result<T, Fault>;

pub fn parse(bytes: &[u8], keep: &Keep) -> Result<Tape, BodyError> {
    parse_sized(bytes, keep, None)
}

/// How much of its body a backend's answer keeps, learned from the last one: the next tape is
/// reserved at that share of its body, plus an eighth. A request holds its answers until its
/// response is written, so with many requests in flight, room reserved and never used is
/// memory held (a home query's catalog answer keeps 3 of 8 fields: its tape used a third of
/// the one-node-per-8-bytes reservation); and a tape that grows is copied whole. One share per
/// backend: its routes mostly keep alike, and a wrong guess costs a grown tape or some unused
/// room, never a wrong answer.
#[derive(Debug, Default)]
pub struct TapeShare {
    /// Nodes per 4 KiB of body, 0 before the first answer.
    nodes: AtomicU32,
    /// Text bytes per 4 KiB of body.
    text: AtomicU32,
}

impl TapeShare {
    /// Nodes and text bytes to reserve for a body of `bytes`.
    fn reserve(&self, bytes: usize) -> (usize, usize) {
        let nodes = self.nodes.load(Ordering::Relaxed) as usize;
        if nodes == 0 {
            return first_guess(bytes);
        }
        let text = self.text.load(Ordering::Relaxed) as usize;
        let share = |per_4k: usize| (bytes.saturating_mul(per_4k) / 4096).saturating_mul(9) / 8 + 8;
        (share(nodes), share(text))
    }

    fn learn(&self, bytes: usize, tape: &Tape) {
        let (nodes, text) = tape.sizes();
        let per_4k = |n: usize| u32::try_from(n.saturating_mul(4096) / bytes.max(1) + 1).unwrap_or(u32::MAX);
        self.nodes.store(per_4k(nodes), Ordering::Relaxed);
        self.text.store(per_4k(text), Ordering::Relaxed);
    }
}

/// Nodes and text bytes to reserve for a body of `bytes` when nothing was learned: room for
/// what a body usually keeps, so that the tape seldom grows.
fn first_guess(bytes: usize) -> (usize, usize) {
    (bytes / 8 + 4, bytes / 4)
}

/// [`parse`], the tape reserved by what `share` learned (and teaching it this answer's size).
pub fn parse_sized(bytes: &[u8], keep: &Keep, share: Option<&TapeShare>) -> Result<Tape, BodyError> {
    let (nodes, text) = share.map_or_else(|| first_guess(bytes.len()), |s| s.reserve(bytes.len()));
    let tape = Tape::with_capacity(nodes, text);
    // The whole body checked as UTF-8 at once (vector code, a fraction of an instruction a
    // byte), so a kept string is a slice of it; a body that is not UTF-8 is checked string by
    // string instead, as serde_json does, to fail where it fails.
    let text = simdutf8::basic::from_utf8(bytes).ok();
    let mut s = Scan { b: bytes, text, i: 0, scratch: String::new(), tape, plan: Vec::new() };
    let done = s.value(keep, DEPTH).and_then(|()| match s.peek() {
        None => Ok(()),
        Some(_) => Err(Fault("trailing characters", s.i)),
    });
    let done = done.map(|()| std::mem::take(&mut s.tape));
    if let (Ok(tape), Some(share)) = (&done, share) {
        share.learn(bytes.len(), tape);
    }
    done.map_err(|Fault(what, at)| {
        let before = &bytes[..at.min(bytes.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1) + 1;
        BodyError { what, line, column }
    })
}

struct Scan<'a> {
    b: &'a [u8],
    /// The body as text, when all of it is UTF-8.
    text: Option<&'a str>,
    i: usize,
    /// A string with escapes, decoded.
    scratch: String,
    /// What is kept, written as it is read.
    tape: Tape,
    /// The addresses of the plan's names the tape holds, by their index there (a handful).
    plan: Vec<usize>,
}

/// A number's parts as checked: where it starts, its sign, where its digits start and its
/// integer part ends, that part's value (wrapped past 19 digits), the fraction's digit count,
/// and whether it has an exponent. Where it ends is the scanner's position.
#[derive(Clone, Copy)]
struct Number {
    start: usize,
    negative: bool,
    digits: usize,
    integer: usize,
    n: u64,
    fraction: usize,
    exponent: bool,
}

/// A string as scanned: its bytes when it has no escape, or decoded into the scratch buffer.
enum Text<'a> {
    Raw(&'a [u8]),
    Decoded,
}

impl<'a> Scan<'a> {
    /// The next byte that is not whitespace, not consumed.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        // Most bodies have no whitespace between tokens: one compare says so.
        match self.b.get(self.i) {
            Some(&c) if c > b' ' => Some(c),
            _ => self.past_space(),
        }
    }

    /// The next byte that is not whitespace, from one that may be.
    fn past_space(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(c);
            }
            self.i += 1;
        }
        None
    }

    fn fault<T>(&self, what: &'static str) -> R<T> {
        Err(Fault(what, self.i))
    }

    fn value(&mut self, keep: &Keep, depth: u8) -> R<()> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let text = self.string()?;
                self.put(text, false)?;
            }
            Some(b'{') => {
                let depth = self.deeper(depth)?;
                match keep {
                    Keep::All => self.whole_object(depth)?,
                    Keep::Fields(fields) => self.pruned_object(fields, depth)?,
                }
            }
            Some(b'[') => {
                let depth = self.deeper(depth)?;
                self.i += 1;
                let list = self.tape.open_list();
                let mut count = 0;
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        self.value(keep, depth)?;
                        count += 1;
                        if self.after_item(b']')? {
                            break;
                        }
                    }
                }
                self.tape.close(list, count);
            }
            Some(b't') => {
                self.literal(b"true")?;
                self.tape.push_bool(true);
            }
            Some(b'f') => {
                self.literal(b"false")?;
                self.tape.push_bool(false);
            }
            Some(b'n') => {
                self.literal(b"null")?;
                self.tape.push_null();
            }
            Some(b'-' | b'0'..=b'9') => self.kept_number()?,
            Some(_) => return self.fault("expected value"),
            None => return self.fault("EOF while parsing a value"),
        }
        Ok(())
    }

    /// Steps over a value, checking it.
    fn skip(&mut self, depth: u8) -> R<()> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.skip_string()
            }
            Some(b'{') => {
                let depth = self.deeper(depth)?;
                self.i += 1;
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.key_start()?;
                    self.skip_string()?;
                    self.colon()?;
                    self.skip(depth)?;
                    if self.after_item(b'}')? {
                        return Ok(());
                    }
                }
            }
            Some(b'[') => {
                let depth = self.deeper(depth)?;
                self.i += 1;
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth)?;
                    if self.after_item(b']')? {
                        return Ok(());
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number_span().map(drop),
            Some(_) => self.fault("expected value"),
            None => self.fault("EOF while parsing a value"),
        }
    }

    fn deeper(&self, depth: u8) -> R<u8> {
        match depth.checked_sub(1) {
            Some(d) => Ok(d),
            None => self.fault("recursion limit exceeded"),
        }
    }

    /// After an item of an array or object: `,` (more follow, false) or the closing byte (true).
    #[inline(always)]
    fn after_item(&mut self, close: u8) -> R<bool> {
        // Most bodies have no whitespace here: the next byte, as it is, first.
        match self.b.get(self.i) {
            Some(b',') => {
                self.i += 1;
                return Ok(false);
            }
            Some(&c) if c == close => {
                self.i += 1;
                return Ok(true);
            }
            _ => {}
        }
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(true)
            }
            Some(_) if close == b']' => self.fault("expected `,` or `]`"),
            Some(_) => self.fault("expected `,` or `}`"),
            None => self.fault("EOF while parsing a list or object"),
        }
    }

    /// The opening quote of an object's key.
    #[inline(always)]
    fn key_start(&mut self) -> R<()> {
        self.expect(b'"', "key must be a string")
    }

    #[inline(always)]
    fn colon(&mut self) -> R<()> {
        self.expect(b':', "expected `:`")
    }

    /// `byte` (consumed), inside an object; anything else is `wrong`.
    #[inline(always)]
    fn expect(&mut self, byte: u8, wrong: &'static str) -> R<()> {
        // Most bodies have no whitespace here: the next byte, as it is, first.
        if self.b.get(self.i) == Some(&byte) {
            self.i += 1;
            return Ok(());
        }
        match self.peek() {
            Some(c) if c == byte => {
                self.i += 1;
                Ok(())
            }
            Some(_) => self.fault(wrong),
            None => self.fault("EOF while parsing an object"),
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.fault("expected value")
        }
    }

    /// An object keeping every field; a later duplicate replaces an earlier one, as in
    /// serde_json (it takes the later place).
    fn whole_object(&mut self, depth: u8) -> R<()> {
        self.i += 1;
        let obj = self.tape.open_obj();
        let mut count = 0;
        let mut seen = Seen::default();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.tape.close(obj, 0);
            return Ok(());
        }
        loop {
            self.key_start()?;
            let key = self.string()?;
            let name_at = self.put(key, true)?;
            match seen.earlier(&self.tape, obj, count, self.tape.name_at(name_at), name_at) {
                Some(old) => self.tape.drop_field(old),
                None => count += 1,
            }
            self.colon()?;
            self.value(&Keep::All, depth)?;
            if self.after_item(b'}')? {
                self.tape.close(obj, count);
                return Ok(());
            }
        }
    }

    /// An object keeping `fields`; a later duplicate replaces an earlier one, as in
    /// serde_json (it takes the later place).
    fn pruned_object(&mut self, fields: &Names, depth: u8) -> R<()> {
        self.i += 1;
        let obj = self.tape.open_obj();
        let mut count = 0;
        let mut seen = 0u64;
        // Where each repeated kept name was last seen: one scan for a name's first repeat, a
        // look-up for every later one (a scan each made repeats cost quadratic time).
        let mut repeats: Option<HashMap<usize, u32, foldhash::fast::FixedState>> = None;
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.tape.close(obj, 0);
            return Ok(());
        }
        loop {
            self.key_start()?;
            let found = self.kept_key(fields)?;
            self.colon()?;
            match found {
                Some(n) => {
                    let (name, keep) = &fields[n];
                    let address = name.as_ptr() as usize;
                    let index = match self.plan.iter().position(|a| *a == address) {
                        Some(i) => i as u32,
                        None => {
                            self.plan.push(address);
                            self.tape.add_plan_name(name)
                        }
                    };
                    let name_at = self.tape.push_plan_name(name, index);
                    // The first 64 names' first sightings are told by a bit; a repeat (or a
                    // name past them) is looked for among those kept.
                    if n < 64 && seen & (1 << n) == 0 {
                        seen |= 1 << n;
                        count += 1;
                    } else {
                        let last = repeats.get_or_insert_with(HashMap::default);
                        let earlier = match last.get(&n) {
                            Some(&at) => Some(at),
                            None => self.tape.earlier_field(obj, name_at, name),
                        };
                        last.insert(n, name_at);
                        match earlier {
                            Some(old) => self.tape.drop_field(old),
                            None => count += 1,
                        }
                    }
                    // A kept string or number is written here, without the call.
                    match (keep, self.peek()) {
                        (Keep::All, Some(b'"')) => {
                            self.i += 1;
                            let text = self.string()?;
                            self.put(text, false)?;
                        }
                        (Keep::All, Some(b'-' | b'0'..=b'9')) => self.kept_number()?,
                        _ => self.value(keep, depth)?,
                    }
                }
                // A skipped string or number is stepped over here, without the call.
                None => match self.peek() {
                    Some(b'"') => {
                        self.i += 1;
                        self.skip_string()?;
                    }
                    Some(b'-' | b'0'..=b'9') => drop(self.number_span()?),
                    _ => self.skip(depth)?,
                },
            }
            if self.after_item(b'}')? {
                self.tape.close(obj, count);
                return Ok(());
            }
        }
    }

    /// An object's key (after its opening quote): which kept field it names, if any. A key
    /// written exactly as one of the first eight kept names is matched in place, its first
    /// eight bytes against each name's [`Probe`](super::keep::Probe) in one comparison.
    #[inline(always)]
    fn kept_key(&mut self, fields: &Names) -> R<Option<usize>> {
        let rest = &self.b[self.i..];
        if let Some(head) = rest.first_chunk::<8>() {
            let word = u64::from_le_bytes(*head);
            for (n, probe) in fields.probes().iter().enumerate() {
                if word & probe.mask != probe.word {
                    continue;
                }
                let name = fields[n].0.as_bytes();
                // Eight bytes or more: the rest of the name, then its closing quote.
                if name.len() < 8 || (rest.get(name.len()) == Some(&b'"') && rest[8..name.len()] == name[8..])
                {
                    self.i += name.len() + 1;
                    return Ok(Some(n));
                }
            }
        } else {
            // Near the end of the body: each name compared as it is.
            for (n, (name, _)) in fields.iter().enumerate().take(8) {
                let name = name.as_bytes();
                if rest.get(name.len()) == Some(&b'"') && rest.starts_with(name) {
                    self.i += name.len() + 1;
                    return Ok(Some(n));
                }
            }
        }
        // Another key, one of many kept, or a kept one written with escapes.
        Ok(match self.string()? {
            Text::Raw(raw) if fields.len() > 8 => position(fields, raw),
            Text::Raw(_) => None,
            Text::Decoded => position(fields, self.scratch.as_bytes()),
        })
    }

    /// `raw` (a part of the body between two ASCII bytes) as text, if it is UTF-8: a slice of
    /// the body's text when the whole body is UTF-8, else checked now.
    #[inline(always)]
    fn str_of(&self, raw: &'a [u8]) -> Option<&'a str> {
        match self.text {
            Some(text) => {
                let at = raw.as_ptr() as usize - self.b.as_ptr() as usize;
                text.get(at..at + raw.len())
            }
            None => std::str::from_utf8(raw).ok(),
        }
    }

    /// Writes a string's text (which must be UTF-8) to the tape, as a name or a value: the
    /// node's index.
    #[inline(always)]
    fn put(&mut self, text: Text<'a>, name: bool) -> R<u32> {
        let (text, plain) = match text {
            Text::Raw(raw) => match self.str_of(raw) {
                Some(t) => (t, true),
                None => return self.fault("invalid unicode code point"),
            },
            Text::Decoded => (self.scratch.as_str(), false),
        };
        Ok(match (name, plain) {
            (true, _) => self.tape.push_name(text),
            // Written without an escape: none is needed to write it again.
            (false, true) => self.tape.push_plain_str(text),
            (false, false) => self.tape.push_str(text),
        })
    }

    /// A string after its opening quote, up to and past the closing one. The usual string,
    /// without an escape, is found here (inlined where it is read); one with escapes is
    /// decoded by [`Self::escaped_string`].
    #[inline(always)]
    fn string(&mut self) -> R<Text<'a>> {
        let start = self.i;
        let at = self.special()?;
        if self.b[at] == b'"' {
            self.i = at + 1;
            return Ok(Text::Raw(&self.b[start..at]));
        }
        self.escaped_string(start, at)
    }

    /// The rest of a string from `start` whose first `\` is at `at`, decoded into the scratch
    /// buffer.
    fn escaped_string(&mut self, start: usize, mut at: usize) -> R<Text<'a>> {
        self.scratch.clear();
        let mut from = start;
        loop {
            let part = std::str::from_utf8(&self.b[from..at]);
            self.scratch.push_str(part.or_else(|_| self.fault("invalid unicode code point"))?);
            self.i = at + 1;
            if self.b[at] == b'"' {
                return Ok(Text::Decoded);
            }
            self.escape(true)?;
            from = self.i;
            at = self.special()?;
        }
    }

    /// Steps over a string after its opening quote, checking its escapes. The usual string,
    /// without an escape, is stepped over here (inlined where it is skipped).
    #[inline(always)]
    fn skip_string(&mut self) -> R<()> {
        let at = self.special()?;
        self.i = at + 1;
        if self.b[at] == b'"' { Ok(()) } else { self.skip_escaped() }
    }

    /// The rest of a skipped string after a `\`.
    fn skip_escaped(&mut self) -> R<()> {
        loop {
            self.escape(false)?;
            let at = self.special()?;
            self.i = at + 1;
            if self.b[at] == b'"' {
                return Ok(());
            }
        }
    }

    /// The next `"` or `\` from here; a control character or the end is an error.
    #[inline(always)]
    fn special(&mut self) -> R<usize> {
        match special(&self.b[self.i..]) {
            Some(n) if self.b[self.i + n] >= 0x20 => Ok(self.i + n),
            Some(n) => {
                self.i += n;
                self.fault("control character (\\u0000-\\u001F) found while parsing a string")
            }
            None => {
                self.i = self.b.len();
                self.fault("EOF while parsing a string")
            }
        }
    }

    /// The escape after a `\` (consumed), decoded into the scratch buffer if `decode`.
    fn escape(&mut self, decode: bool) -> R<()> {
        let Some(&c) = self.b.get(self.i) else {
            return self.fault("EOF while parsing a string");
        };
        self.i += 1;
        let plain = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                if !decode {
                    // A skipped string's code points are not checked (as serde_json skips).
                    return Ok(());
                }
                let c = match unit {
                    0xD800..=0xDBFF => {
                        if !self.b[self.i..].starts_with(b"\\u") {
                            return self.fault("unexpected end of hex escape");
                        }
                        self.i += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return self.fault("lone leading surrogate in hex escape");
                        }
                        char::from_u32(
                            0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00),
                        )
                    }
                    0xDC00..=0xDFFF => return self.fault("lone leading surrogate in hex escape"),
                    _ => char::from_u32(u32::from(unit)),
                };
                match c {
                    Some(c) => c,
                    None => return self.fault("invalid unicode code point"),
                }
            }
            _ => {
                self.i -= 1;
                return self.fault("invalid escape");
            }
        };
        if decode {
            self.scratch.push(plain);
        }
        Ok(())
    }

    fn hex4(&mut self) -> R<u16> {
        let Some(digits) = self.b.get(self.i..self.i + 4) else {
            return self.fault("EOF while parsing a string");
        };
        let mut n = 0u16;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return self.fault("invalid escape"),
            };
            n = n * 16 + u16::from(v);
        }
        self.i += 4;
        Ok(n)
    }

    /// Steps over a number, checking it: its parts, for [`Self::number`] to read. (Apart, so
    /// that a skipped number builds no value to drop.)
    #[inline(always)]
    fn number_span(&mut self) -> R<Number> {
        let b = self.b;
        let start = self.i;
        let negative = b[start] == b'-';
        let digits = start + usize::from(negative);
        // The integer part, read as it is checked: `0` alone or digits without a leading zero.
        let mut i = digits;
        let mut n = 0u64;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                match b.get(i..).and_then(<[u8]>::first_chunk::<8>).and_then(short_integer) {
                    Some((value, len)) => {
                        n = value;
                        i += len;
                    }
                    None => {
                        while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
                            n = n.wrapping_mul(10).wrapping_add(u64::from(d));
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                self.i = i;
                return self.fault("invalid number");
            }
        }
        let integer = i;
        let mut fraction = 0;
        if b.get(i) == Some(&b'.') {
            i = self.digits(i + 1)?;
            fraction = i - integer - 1;
        }
        let exponent = matches!(b.get(i), Some(b'e' | b'E'));
        if exponent {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            i = self.digits(i)?;
        }
        self.i = i;
        Ok(Number { start, negative, digits, integer, n, fraction, exponent })
    }

    /// A kept number: an integer of up to seven digits (most are) read in one word, here;
    /// any other by [`Self::number`].
    #[inline(always)]
    fn kept_number(&mut self) -> R<()> {
        if matches!(self.b[self.i], b'1'..=b'9')
            && let Some((n, len)) = self.b[self.i..].first_chunk::<8>().and_then(short_integer)
            && !matches!(self.b.get(self.i + len), Some(b'.' | b'e' | b'E'))
        {
            self.i += len;
            // Seven digits at most: it fits.
            self.tape.push_int(n as i64);
            return Ok(());
        }
        self.number()
    }

    /// A number, as serde_json reads it: an integer that fits `i64` or `u64` stays one (`-0`
    /// is a float), any other is an `f64`; one out of `f64`'s range is an error.
    fn number(&mut self) -> R<()> {
        let Number { start, negative, digits, integer, n, fraction, exponent } = self.number_span()?;
        let (b, i) = (self.b, self.i);
        let whole = integer - digits;
        if i == integer && whole <= 19 {
            // 19 digits cannot overflow u64.
            let t = &mut self.tape;
            match (negative, n) {
                (false, n) => match i64::try_from(n) {
                    Ok(n) => t.push_int(n),
                    Err(_) => t.push_uint(n),
                },
                (true, 0) => t.push_float(-0.0),
                (true, n) if n <= 1 << 63 => t.push_int((n as i64).wrapping_neg()),
                (true, n) => t.push_float(-(n as f64)),
            }
            return Ok(());
        }
        if !exponent && whole + fraction <= 15 {
            // A short decimal such as 4.25: its digits and 10^fraction are exact in f64, so
            // one division rounds correctly (Clinger's fast path).
            const POW10: [f64; 16] =
                [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
            let m = b[integer + 1..i].iter().fold(n, |m, d| m * 10 + u64::from(d - b'0'));
            let f = m as f64 / POW10[fraction];
            // Positive, its last digit not a zero, at most 9 digits and not below 0.0001: the
            // shortest form of the float is these digits with the point where it was, as
            // serde_json writes it (it writes smaller numbers with an exponent). Marked, so
            // it is written again from them.
            let digits = u32::try_from(m).ok().filter(|&m| m < 1_000_000_000);
            if let Some(digits) = digits
                && !negative
                && fraction > 0
                && b[i - 1] != b'0'
                && digits.checked_ilog10().is_some_and(|l| l as usize + 5 >= fraction)
            {
                self.tape.push_decimal(f, digits, fraction as u8);
                return Ok(());
            }
            self.tape.push_float(if negative { -f } else { f });
            return Ok(());
        }
        if i == integer && !negative && whole == 20 {
            let text = std::str::from_utf8(&b[digits..integer]).unwrap_or_default();
            if let Ok(n) = text.parse::<u64>() {
                self.tape.push_uint(n);
                return Ok(());
            }
        }
        let text = std::str::from_utf8(&b[start..i]).unwrap_or_default();
        match text.parse::<f64>() {
            // An integer past u64 (a 23-digit ID): a float as serde_json reads it, its digits
            // kept for a `String` or `ID` field, which writes them exactly (probe 2, L8).
            Ok(f) if f.is_finite() && i == integer => {
                self.tape.push_big_integer(text);
                Ok(())
            }
            Ok(f) if f.is_finite() => {
                self.tape.push_float(f);
                Ok(())
            }
            _ => {
                self.i = start;
                self.fault("number out of range")
            }
        }
    }

    /// One or more digits from `i`; where they end.
    fn digits(&mut self, mut i: usize) -> R<usize> {
        if !self.b.get(i).is_some_and(u8::is_ascii_digit) {
            self.i = i;
            return self.fault("invalid number");
        }
        while self.b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        Ok(i)
    }
}

/// The digits at the start of `word` (eight bytes of a body, the first a digit) when fewer
/// than eight: their value and count, read in one pass over the word (the "SWAR" digit test
/// and Lemire's eight-digit multiply). `None` when all eight are digits (the byte loop reads
/// those longer numbers).
#[inline(always)]
fn short_integer(word: &[u8; 8]) -> Option<(u64, usize)> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0xF0;
    let x = u64::from_le_bytes(*word);
    // A byte is a digit when its high nibble is 3, before and after adding 6 (0x3A..=0x3F
    // become 0x40..). A carry out of a non-digit only reaches later bytes.
    let not_digit = ((x & HIGH) ^ (ONES * 0x30)) | ((x.wrapping_add(ONES * 6) & HIGH) ^ (ONES * 0x30));
    if not_digit == 0 {
        return None;
    }
    let len = not_digit.trailing_zeros() as usize / 8;
    // The digits' values moved to the top bytes: leading zeros below, in reading order.
    let v = (x.wrapping_sub(ONES * u64::from(b'0'))) << (8 * (8 - len));
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let pairs = 0x0000_00FF_0000_00FF;
    let v = ((v & pairs)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add(((v >> 16) & pairs).wrapping_mul(1 + (10_000 << 32))))
        >> 32;
    Some((v, len))
}

/// The index of a kept field named `key`, if it is one.
#[inline]
fn position(fields: &[(std::sync::Arc<str>, Keep)], key: &[u8]) -> Option<usize> {
    // A few names (the usual case): by length first, which mostly differs.
    if fields.len() <= 8 {
        return fields.iter().position(|(n, _)| n.len() == key.len() && n.as_bytes() == key);
    }
    fields.binary_search_by(|(n, _)| n.as_bytes().cmp(key)).ok()
}

/// The index of the first `"`, `\` or control character in `s`: sixteen bytes at a time
/// with `wide`'s vectors (SSE2 on x86-64, NEON on aarch64, plain code elsewhere), three
/// byte compares and one mask; the last bytes of the body one by one. Written here because
/// no crate offers this exact search (memchr finds up to three given bytes, not a range).
#[inline(always)]
pub fn special(s: &[u8]) -> Option<usize> {
    use wide::u8x16;
    let (quote, backslash, control) = (u8x16::splat(b'"'), u8x16::splat(b'\\'), u8x16::splat(0x1f));
    let mut chunks = s.chunks_exact(16);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(chunk);
        let x = u8x16::new(bytes);
        // A byte at most 0x1F is its own minimum with 0x1F.
        let flags = (x.simd_eq(quote) | x.simd_eq(backslash) | x.min(control).simd_eq(x)).to_bitmask();
        if flags != 0 {
            return Some(base + flags.trailing_zeros() as usize);
        }
        base += 16;
    }
    chunks.remainder().iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').map(|n| base + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tape_is_reserved_at_the_share_the_last_answer_kept() {
        let item = r#"{"id": 4374, "name": "The Frozen Reckoning", "year": 1972, "maturity": "PG-13",
            "genres": ["Crime", "Romance"], "runtimeMinutes": 93, "synopsis": "a crime story of station and voyage"}"#;
        let body = format!("[{}]", vec![item; 200].join(","));
        let keep = Keep::fields(["id", "name", "year"]);
        let share = TapeShare::default();
        // Before any answer: one node per 8 body bytes.
        assert_eq!(share.reserve(body.len()).0, body.len() / 8 + 4);
        let tape = parse_sized(body.as_bytes(), &keep, Some(&share)).unwrap();
        let (nodes, text) = tape.sizes();
        // The same answer again: room for what it kept and an eighth more, far below the
        // first guess (3 of 7 fields kept).
        let (reserved_nodes, reserved_text) = share.reserve(body.len());
        assert!(
            reserved_nodes >= nodes && reserved_nodes <= nodes * 5 / 4 + 8,
            "{reserved_nodes} for {nodes}"
        );
        assert!(reserved_text >= text && reserved_text <= text * 5 / 4 + 8, "{reserved_text} for {text}");
        assert!(reserved_nodes * 2 < body.len() / 8, "{reserved_nodes} of {}", body.len() / 8);
        // Whatever was reserved, the answer reads the same.
        assert_eq!(tape.root().to_string(), parse(body.as_bytes(), &keep).unwrap().root().to_string());
    }

    #[test]
    fn an_integer_past_u64_reads_as_a_float_and_keeps_its_digits() {
        use crate::backends::json::tape::View;
        let body =
            br#"{"id": 12345678901234567890123, "neg": -98765432109876543210, "max": 18446744073709551615}"#;
        let t = parse(body, &Keep::All).unwrap();
        let id = t.root().field("id");
        assert!(matches!(id.view(), View::Float(f) if f == 1.2345678901234568e22));
        assert_eq!(id.integer_digits(), Some("12345678901234567890123"));
        assert_eq!(id.to_string(), "12345678901234567890123", "JSON text keeps the digits");
        assert_eq!(t.root().field("neg").integer_digits(), Some("-98765432109876543210"));
        assert!(matches!(t.root().field("max").view(), View::UInt(u64::MAX)), "u64 still fits");
        // What serde_json makes of it, for everything that reads values.
        let theirs: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(t.root().to_json(), theirs);
        // A decimal or an exponent is a float as before.
        let t = parse(br#"[1e30, 12345678901234567890123.5]"#, &Keep::All).unwrap();
        let View::List(mut items) = t.root().view() else { unreachable!() };
        assert!(items.all(|v| v.integer_digits().is_none()));
    }

    #[test]
    fn strings_read_without_an_escape_are_marked_plain() {
        use crate::backends::json::tape::View;
        for keep in [Keep::All, Keep::fields(["a"])] {
            let body = r#"[{"a": "ab"}, {"a": "a\"b"}, {"a": "\u0041"}, {"a": "é"}]"#;
            let t = parse(body.as_bytes(), &keep).unwrap();
            let View::List(items) = t.root().view() else { unreachable!() };
            let plain: Vec<bool> = items.map(|o| o.field("a").plain_str().is_some()).collect();
            assert_eq!(plain, [true, false, false, true]);
        }
    }

    #[test]
    fn short_integers_are_read_a_word_at_a_time() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for len in 1..8 {
            for _ in 0..200 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let digits: String =
                    (0..len).map(|k| char::from(b'0' + ((rng >> (k * 4)) % 10) as u8)).collect();
                let digits = format!("{}{}", (rng % 9) + 1, &digits[1..]);
                for after in [b',', b'}', b'.', b'e', b' ', b'"', b'/', b':', 0xFF, 0xFA] {
                    let mut word = [after; 8];
                    word[..len].copy_from_slice(digits.as_bytes());
                    assert_eq!(short_integer(&word), Some((digits.parse().unwrap(), len)), "{word:?}");
                }
            }
        }
        assert_eq!(short_integer(b"12345678"), None);
        assert_eq!(short_integer(b"7,123456"), Some((7, 1)));
    }

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_at_every_place() {
        for len in 0..20 {
            let plain = vec![b'a'; len];
            assert_eq!(special(&plain), None);
            for at in 0..len {
                for b in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
                    let mut s = plain.clone();
                    s[at] = b;
                    // A second special byte later never hides the first; bytes above 0x7f
                    // (UTF-8) and 0x20 are not special.
                    if at + 1 < len {
                        s[at + 1] = b'"';
                    }
                    if at > 0 {
                        s[at - 1] = 0xC3;
                    }
                    assert_eq!(special(&s), Some(at), "{s:?}");
                }
            }
        }
        assert_eq!(special(" é~\u{7f}".as_bytes()), None);
    }

    #[test]
    fn kept_names_are_found_however_written_and_however_many() {
        let kept = |keep: &Keep, body: &str| parse(body.as_bytes(), keep).unwrap().root().to_string();
        let few = Keep::fields(["id", "name"]);
        assert_eq!(kept(&few, r#"{"idx": 1, "i": 2, "na\u006de": "a", "id": 3}"#), r#"{"name":"a","id":3}"#);
        let names: Vec<String> = (0..12).map(|i| format!("f{i:02}")).collect();
        let many = Keep::fields(names.iter().map(String::as_str));
        assert_eq!(kept(&many, r#"{"f11": 1, "f1": 2, "f\u0030\u0033": 3, "x": 4}"#), r#"{"f11":1,"f03":3}"#);
        // Names shorter than, as long as and longer than one eight-byte probe; keys sharing
        // their first bytes; keys in the body's last eight bytes.
        let long = Keep::fields(["abcdefg", "abcdefgh", "abcdefghi"]);
        let body = r#"{"abcdefgh":1,"abcdefghij":2,"abcdefg":3,"abcdefgi":4,"abcdef":5,"abcdefghi":6}"#;
        assert_eq!(kept(&long, body), r#"{"abcdefgh":1,"abcdefg":3,"abcdefghi":6}"#);
        assert_eq!(kept(&few, r#"{"x":0,"id":7}"#), r#"{"id":7}"#);
        assert_eq!(kept(&few, r#"{"i":0,"id":7}"#), r#"{"id":7}"#);
    }

    #[test]
    fn kept_names_are_found_by_the_plans_text_and_by_any_equal_text() {
        let keep = Keep::fields(["id", "name", "positionSeconds"]);
        let Keep::Fields(names) = &keep else { unreachable!() };
        let tape = parse(br#"[{"id": 1, "x": 0, "name": "a", "positionSeconds": 3}, {"name": "b"}]"#, &keep)
            .unwrap();
        let first = tape.root().item(0);
        // By the plan's own text (its address), and by a copy of it (its bytes).
        for (name, _) in names.iter() {
            let copy = String::from(&**name);
            assert_eq!(first.get(name).map(|v| v.to_json()), first.get(&copy).map(|v| v.to_json()), "{name}");
            assert!(first.get(name).is_some(), "{name}");
        }
        assert_eq!(first.get("positionSeconds").and_then(|v| v.as_i64()), Some(3));
        assert!(first.get("x").is_none() && first.get("positionSecond").is_none() && first.get("").is_none());
        assert_eq!(tape.root().item(1).get("name").and_then(|v| v.as_str()), Some("b"));
        assert!(tape.root().item(1).get("id").is_none());
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = |body: &str| parse(body.as_bytes(), &Keep::All).unwrap_err().to_string();
        assert_eq!(e(""), "EOF while parsing a value at line 1 column 1");
        assert_eq!(e("{\"a\":\n  1,}"), "key must be a string at line 2 column 5");
        assert_eq!(e("[1 2]"), "expected `,` or `]` at line 1 column 4");
        assert_eq!(e("{\"a\" 1}"), "expected `:` at line 1 column 6");
        assert_eq!(e("01"), "trailing characters at line 1 column 2");
        assert_eq!(e("1."), "invalid number at line 1 column 3");
        assert_eq!(
            e("\"a\u{1}\""),
            "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 3"
        );
        assert_eq!(e("\"\\x\""), "invalid escape at line 1 column 3");
        assert_eq!(e("\"\\ud800\""), "unexpected end of hex escape at line 1 column 8");
        assert_eq!(e("\"abc"), "EOF while parsing a string at line 1 column 5");
        assert_eq!(e("tru"), "expected value at line 1 column 1");
        // Skipped values are checked too.
        let skipped = |body: &str| parse(body.as_bytes(), &Keep::fields(["a"])).is_err();
        assert!(skipped(r#"{"b": "\q", "a": 1}"#));
        assert!(skipped(r#"{"b": [1,], "a": 1}"#));
        assert!(skipped(r#"{"b": 1.e3, "a": 1}"#));
        assert!(skipped(r#"{"b": {"c" 1}, "a": 1}"#));
        assert!(!skipped(r#"{"b": {"c": [true, false, null, -1.5e-3, "\u00e9\n"]}, "a": 1}"#));
        // A lone surrogate is refused where the string is kept, stepped over where it is not.
        assert!(!skipped(r#"{"b": "\ud800", "a": 1}"#));
        assert!(parse(br#"{"a": "\ud800"}"#, &Keep::fields(["a"])).is_err());
    }

    #[test]
    fn a_hundred_thousand_repeats_of_a_key_keep_the_last_whole_or_pruned() {
        // 1.1 MB of one repeated key (the second probe's H2 body), and of two kept keys.
        let one = format!(
            "{{\"id\":\"1\",{}}}",
            (0..100_000).map(|i| format!("\"name\":\"v{i}\"")).collect::<Vec<_>>().join(",")
        );
        for keep in [Keep::All, Keep::fields(["id", "name"])] {
            let tape = parse(one.as_bytes(), &keep).unwrap();
            assert_eq!(tape.root().to_string(), r#"{"id":"1","name":"v99999"}"#);
        }
    }

    use proptest::prelude::*;

    /// Any JSON value, with the strings, numbers and nesting that make parsers differ.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(|f| Value::from((f * 100.0).round() / 100.0)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "[a-z\\\\\"\u{0}-\u{1f}é😀/]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-c]{1,2}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Whole, it reads what serde_json reads; pretty-printed too.
        #[test]
        fn reads_what_serde_json_reads(v in json()) {
            let compact = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(parse(&compact, &Keep::All).unwrap().root().to_json(), v.clone());
            let pretty = serde_json::to_vec_pretty(&v).unwrap();
            prop_assert_eq!(parse(&pretty, &Keep::All).unwrap().root().to_json(), v);
        }

        /// Pruned, it reads what serde_json reads of the kept fields (whole), at every element
        /// of a list; pretty-printed too.
        #[test]
        fn keeps_what_serde_json_reads_of_the_kept_fields(v in json()) {
            fn kept(v: &serde_json::Value) -> serde_json::Value {
                match v {
                    serde_json::Value::Object(m) => serde_json::Value::Object(
                        m.iter().filter(|(k, _)| *k == "a" || *k == "b").map(|(k, v)| (k.clone(), v.clone())).collect(),
                    ),
                    serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(kept).collect()),
                    other => other.clone(),
                }
            }
            let keep = Keep::fields(["a", "b"]);
            for text in [serde_json::to_vec(&v).unwrap(), serde_json::to_vec_pretty(&v).unwrap()] {
                prop_assert_eq!(parse(&text, &keep).unwrap().root().to_json(), kept(&v));
            }
        }

        /// Kept or skipped, a body is refused exactly when serde_json refuses it.
        #[test]
        fn refuses_what_serde_json_refuses(v in json(), at in any::<prop::sample::Index>(), byte in prop::sample::select(b"{}[],:\"\\ 0-.eE+tfnu\x01".to_vec())) {
            let mut text = serde_json::to_vec(&v).unwrap();
            let i = at.index(text.len());
            // UTF-8 stays valid (a skipped string's is not checked; a kept one's is, above).
            prop_assume!(text[i] < 0x80);
            text[i] = byte;
            let theirs = serde_json::from_slice::<serde_json::Value>(&text);
            // A skipped number is checked as JSON but not converted: out of f64's range is
            // fine there (as serde_json's IgnoredAny has it).
            let huge = theirs.as_ref().is_err_and(|e| e.to_string().contains("number out of range"));
            for keep in [Keep::All, Keep::fields(["a"]), Keep::fields(["a", "b"]), Keep::fields([])] {
                if huge && keep != Keep::All {
                    continue;
                }
                let ours = parse(&text, &keep);
                prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{} {:?} {:?}", String::from_utf8_lossy(&text), ours, theirs);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Objects with repeated keys (the later value wins, as in serde_json), kept whole or
        /// pruned, nested too.
        #[test]
        fn repeated_keys_read_as_serde_json_reads_them(
            pairs in prop::collection::vec(("[a-c]", json()), 0..40),
            inner_pairs in prop::collection::vec(("[a-b]", any::<i32>()), 0..70),
        ) {
            let inner: Vec<String> = inner_pairs.iter().map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap())).collect();
            let mut fields: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()))
                .collect();
            fields.push(format!("\"a\":{{{}}}", inner.join(",")));
            let text = format!("{{{}}}", fields.join(","));
            // What serde_json makes of it, built from the values themselves (its own float
            // parsing is not exact without `float_roundtrip`): the later value wins.
            let mut expected = serde_json::Map::new();
            for (k, v) in &pairs {
                expected.insert(k.clone(), v.clone());
            }
            let mut last = serde_json::Map::new();
            for (k, v) in &inner_pairs {
                last.insert(k.clone(), serde_json::Value::from(*v));
            }
            expected.insert("a".into(), serde_json::Value::Object(last));
            let theirs = serde_json::Value::Object(expected);
            prop_assert_eq!(parse(text.as_bytes(), &Keep::All).unwrap().root().to_json(), theirs.clone());
            let pick = |v: &serde_json::Value, names: &[&str]| serde_json::Value::Object(
                v.as_object().unwrap().iter().filter(|(k, _)| names.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect(),
            );
            prop_assert_eq!(parse(text.as_bytes(), &Keep::fields(["a", "b"])).unwrap().root().to_json(), pick(&theirs, &["a", "b"]));
        }
    }
}
