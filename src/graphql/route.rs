//! Rendering an `@http` route template with argument and parent values, so that no value can
//! change which route is called: each value is percent-encoded into the path segment or query
//! parameter it stands in, and a path segment that a value makes `.`, `..` or empty is refused
//! (a URL parser would normalise it into another path, even percent-encoded: `%2e%2e` is `..`
//! to the WHATWG parser reqwest uses). Batch keys in a path position obey the same rule.

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};

use super::model::Part;
use crate::backends::json::tape::{Val, View};

/// Why a template could not be rendered for these values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("argument {0} is null and the route needs it")]
    NullArgument(String),
    #[error("the parent has no {0} for the route")]
    MissingParent(String),
    #[error("{what} would make the route's path segment {segment:?}, which names another resource; refused")]
    Segment { what: String, segment: String },
    #[error("{what} is {len} bytes once encoded; a value in a route may have at most {MAX_VALUE_BYTES}")]
    TooLong { what: String, len: usize },
}

/// Most bytes one argument or parent value may take in a route, encoded: a 1 MB argument
/// became a 1 MB backend URL (probe 2, L8); servers refuse URLs past 8 KiB or so anyway.
pub const MAX_VALUE_BYTES: usize = 2048;

impl RouteError {
    /// Whether the device's own input is at fault (an argument), rather than backend data.
    pub fn from_arguments(&self) -> bool {
        match self {
            RouteError::NullArgument(_) => true,
            RouteError::MissingParent(_) => false,
            RouteError::Segment { what, .. } | RouteError::TooLong { what, .. } => {
                what.starts_with("argument")
            }
        }
    }
}

/// A rendered template: the text before `{$keys}` (all of it without keys), the text after
/// them, and whether the keys sit in the path (rather than in the query string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub before: String,
    pub after: Option<String>,
    pub keys_in_path: bool,
}

/// Text of an argument placed in a route, percent-encoded; `None` for null or absent.
fn value_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(encoded(s)),
        Value::Null => None,
        other => Some(encoded(&other.to_string())),
    }
}

/// Text of a parent's field placed in a route, as [`value_text`].
fn data_text(value: Option<Val<'_>>) -> Option<String> {
    let value = value?;
    match value.view() {
        View::Str(s) => Some(encoded(s)),
        View::Null => None,
        _ => Some(encoded(&value.to_string())),
    }
}

fn encoded(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// Whether a path segment (as it will be sent) is one a URL parser resolves as a dot segment
/// or leaves empty.
fn is_dot_or_empty(segment: &str) -> bool {
    let decoded = percent_decode_str(segment).decode_utf8_lossy();
    matches!(decoded.as_ref(), "" | "." | "..")
}

/// The path segment being written, and which value (if any) went into it.
#[derive(Default)]
struct Segment {
    text: String,
    value: Option<String>,
}

impl Segment {
    /// Ends the segment: refused if a value made it a dot segment or empty.
    fn close(&mut self) -> Result<(), RouteError> {
        let segment = std::mem::take(&mut self.text);
        match self.value.take() {
            Some(what) if is_dot_or_empty(&segment) => Err(RouteError::Segment { what, segment }),
            _ => Ok(()),
        }
    }
}

/// Renders `parts` with the field's arguments and its parent object.
pub fn render(parts: &[Part], args: &Map<String, Value>, parent: Val<'_>) -> Result<Rendered, RouteError> {
    let mut before = String::new();
    let mut after: Option<String> = None;
    let mut keys_in_path = false;
    let mut in_query = false;
    let mut segment = Segment::default();
    for part in parts {
        let (text, what) = match part {
            Part::Lit(s) => (s.clone(), None),
            Part::Keys => {
                after = Some(String::new());
                keys_in_path = !in_query;
                // Keys are checked one by one (`check_key`); the segment is theirs.
                segment.text.push('k');
                continue;
            }
            Part::Arg(a) => (
                value_text(args.get(a)).ok_or_else(|| RouteError::NullArgument(a.clone()))?,
                Some(format!("argument {a}")),
            ),
            Part::Parent(p) => (
                data_text(parent.get(p)).ok_or_else(|| RouteError::MissingParent(p.to_string()))?,
                Some(format!("parent field {p}")),
            ),
        };
        if let Some(what) = &what
            && text.len() > MAX_VALUE_BYTES
        {
            return Err(RouteError::TooLong { what: what.clone(), len: text.len() });
        }
        if !in_query {
            match what {
                // An encoded value holds no `/`, `?` or `#`: it stays inside this segment.
                Some(what) => {
                    segment.text.push_str(&text);
                    segment.value.get_or_insert(what);
                }
                None => {
                    for c in text.chars() {
                        match c {
                            '/' => segment.close()?,
                            '?' | '#' => {
                                segment.close()?;
                                in_query = true;
                                break;
                            }
                            c => segment.text.push(c),
                        }
                    }
                }
            }
        }
        match after.as_mut() {
            Some(a) => a.push_str(&text),
            None => before.push_str(&text),
        }
    }
    if !in_query {
        segment.close()?;
    }
    Ok(Rendered { before, after, keys_in_path })
}

/// A batch key that would be a dot segment or empty where the keys sit in the path.
pub fn check_key(key: &str, keys_in_path: bool) -> Result<(), RouteError> {
    if keys_in_path && matches!(key, "" | "." | "..") {
        return Err(RouteError::Segment { what: format!("key {key:?}"), segment: key.to_owned() });
    }
    Ok(())
}

/// Checks that a rendered route, joined to `base`, stays on the base's host, under its path,
/// with the template's segments where the template has them (keys stand in as `k`). For the
/// property test and the fuzz target; `Err` says what moved.
pub fn confined(base: &str, parts: &[Part], rendered: &Rendered) -> Result<(), String> {
    let base_url = url::Url::parse(base).map_err(|e| format!("base {base}: {e}"))?;
    let mut path = rendered.before.clone();
    if let Some(after) = &rendered.after {
        path.push('k');
        path.push_str(after);
    }
    let url = url::Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|e| format!("{path} does not make a URL: {e}"))?;
    if (url.scheme(), url.host_str(), url.port()) != (base_url.scheme(), base_url.host_str(), base_url.port())
    {
        return Err(format!("{url} left {base}"));
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let base_segments: Vec<String> =
        base_url.path_segments().into_iter().flatten().filter(|s| !s.is_empty()).map(decode).collect();
    let segments: Vec<String> = url.path_segments().into_iter().flatten().map(decode).collect();
    if segments.len() < base_segments.len() || segments[..base_segments.len()] != base_segments[..] {
        return Err(format!("{url} is not under {base}"));
    }
    const VALUE: char = '\u{1}';
    let shape: String = parts
        .iter()
        .map(|p| match p {
            Part::Lit(l) => l.clone(),
            _ => VALUE.to_string(),
        })
        .collect();
    let template_path = shape.split(['?', '#']).next().unwrap_or("");
    let expected: Vec<&str> = template_path.split('/').skip(1).collect();
    let got = &segments[base_segments.len()..];
    if got.len() != expected.len() {
        return Err(format!(
            "{url} has {} segments after the base; the template has {}",
            got.len(),
            expected.len()
        ));
    }
    for (e, g) in expected.iter().zip(got) {
        if !e.contains(VALUE) && decode(e) != *g {
            return Err(format!("{url}: the template's segment {e:?} became {g:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lit(s: &str) -> Part {
        Part::Lit(s.to_owned())
    }

    fn arg(s: &str) -> Part {
        Part::Arg(s.to_owned())
    }

    fn args(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect()
    }

    #[test]
    fn a_value_too_long_for_a_route_is_refused_naming_it() {
        let parts = [lit("/search?q="), arg("q")];
        let fits = "a".repeat(MAX_VALUE_BYTES);
        assert!(render(&parts, &args(&[("q", &fits)]), crate::backends::json::tape::NULL).is_ok());
        let huge = "a".repeat(1 << 20);
        let e = render(&parts, &args(&[("q", &huge)]), crate::backends::json::tape::NULL).unwrap_err();
        assert!(
            matches!(&e, RouteError::TooLong { what, len } if what == "argument q" && *len == 1 << 20),
            "{e}"
        );
        assert!(e.from_arguments(), "the caller's input: BAD_USER_INPUT");
        // Encoded bytes count: 700 'é' are 1,400 bytes, 4,200 once percent-encoded.
        let accents = "é".repeat(700);
        assert!(render(&parts, &args(&[("q", &accents)]), crate::backends::json::tape::NULL).is_err());
    }

    #[test]
    fn dot_and_empty_segments_from_values_are_refused() {
        let parts = [lit("/titles/"), arg("id")];
        for bad in ["..", ".", ""] {
            let e = render(&parts, &args(&[("id", bad)]), crate::backends::json::tape::NULL).unwrap_err();
            assert!(matches!(&e, RouteError::Segment { what, .. } if what == "argument id"), "{bad:?}: {e}");
            assert!(e.from_arguments());
        }
        let ok = render(&parts, &args(&[("id", "...")]), crate::backends::json::tape::NULL).unwrap();
        assert_eq!(ok.before, "/titles/%2E%2E%2E");
        let mid = [lit("/profiles/"), arg("p"), lit("/bookmarks?titleIds="), Part::Keys];
        assert!(render(&mid, &args(&[("p", "..")]), crate::backends::json::tape::NULL).is_err());
        let r = render(&mid, &args(&[("p", "7")]), crate::backends::json::tape::NULL).unwrap();
        assert_eq!(
            (r.before.as_str(), r.after.as_deref(), r.keys_in_path),
            ("/profiles/7/bookmarks?titleIds=", Some(""), false)
        );
        // In the query string a dot is only text.
        let q = [lit("/search?q="), arg("q")];
        assert!(render(&q, &args(&[("q", "..")]), crate::backends::json::tape::NULL).is_ok());
        // Two values sharing a segment are refused only when the segment ends up a dot segment.
        let two = [lit("/a/"), arg("x"), arg("y"), lit("/b")];
        assert!(render(&two, &args(&[("x", "."), ("y", ".")]), crate::backends::json::tape::NULL).is_err());
        assert!(render(&two, &args(&[("x", "."), ("y", "x")]), crate::backends::json::tape::NULL).is_ok());
        assert!(
            check_key("..", true).is_err()
                && check_key("..", false).is_ok()
                && check_key("a.b", true).is_ok()
        );
    }

    /// Templates of the shapes the SDL allows: fixed segments with values between them.
    fn templates() -> Vec<(Vec<Part>, Vec<&'static str>)> {
        vec![
            (vec![lit("/titles/"), arg("a")], vec!["titles", ""]),
            (vec![lit("/accounts/"), arg("a"), lit("/public")], vec!["accounts", "", "public"]),
            (
                vec![lit("/x/"), arg("a"), arg("b"), lit("/y/"), arg("b"), lit(".json")],
                vec!["x", "", "y", ""],
            ),
            (vec![lit("/p/"), arg("a"), lit("/q?k="), arg("b"), lit("&z=1")], vec!["p", "", "q"]),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e%2E".to_owned()),
            proptest::string::string_regex("[./%2eE?#\\\\@:a-z0-9 \u{0}\u{7f}é]{0,8}").unwrap(),
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Whatever the values, the URL stays under the backend's base and keeps the template's
        /// fixed segments where the template has them.
        #[test]
        fn a_rendered_route_stays_under_the_base(a in value(), b in value(), which in 0usize..4) {
            let (parts, fixed) = &templates()[which];
            let values = args(&[("a", &a), ("b", &b)]);
            if let Ok(r) = render(parts, &values, crate::backends::json::tape::NULL) {
                let base = "http://backend.internal:7101/api/v2";
                prop_assert!(confined(base, parts, &r).is_ok(), "{:?}", confined(base, parts, &r));
                let url = url::Url::parse(&format!("{base}{}", r.before)).unwrap();
                let segments: Vec<&str> = url.path_segments().unwrap().collect();
                prop_assert_eq!(segments.len(), 2 + fixed.len(), "{}", url);
            }
        }
    }
}
