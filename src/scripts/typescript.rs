//! Scripts written in TypeScript: their types are stripped before QuickJS compiles them, with
//! swc's position-preserving strip (the one Node.js runs TypeScript with): every annotation,
//! interface, type alias and `import type` is replaced by spaces, so a line:column that
//! QuickJS reports at run time is the line:column of the TypeScript as written, and no source
//! map is needed. Plain JavaScript comes out unchanged. TypeScript that would need code
//! generated (`enum`, a `namespace` with values, parameter properties) is refused at its
//! place, as is a syntax error.

use std::sync::{Arc, Mutex};

use swc_common::errors::{DiagnosticBuilder, Emitter, Handler};
use swc_common::sync::Lrc;
use swc_common::{GLOBALS, Globals, SourceMap};

/// Collects the stripper's diagnostics, each placed at `line:column`.
struct Collect {
    seen: Arc<Mutex<Vec<(usize, usize, String)>>>,
    files: Lrc<SourceMap>,
}

impl Emitter for Collect {
    fn emit(&mut self, db: &mut DiagnosticBuilder<'_>) {
        let (line, column) = db
            .span
            .primary_span()
            .map(|s| self.files.lookup_char_pos(s.lo))
            .map_or((0, 0), |p| (p.line, p.col_display + 1));
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.push((line, column, db.message()));
    }
}

/// The JavaScript of `source` (TypeScript or JavaScript), or why it cannot run: the first
/// problem as `message (at NAME:LINE:COLUMN)`, as QuickJS places its own errors.
pub fn strip(name: &str, source: &str) -> Result<String, String> {
    GLOBALS.set(&Globals::new(), || {
        let files: Lrc<SourceMap> = Lrc::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let emitter = Collect { seen: seen.clone(), files: files.clone() };
        let handler = Handler::with_emitter(true, false, Box::new(emitter));
        let options = swc_ts_fast_strip::Options {
            module: Some(true),
            filename: Some(name.to_owned()),
            ..Default::default()
        };
        match swc_ts_fast_strip::operate(&files, &handler, source.to_owned(), options) {
            Ok(out) => Ok(out.code),
            Err(e) => {
                let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                Err(match seen.first() {
                    Some((line, column, message)) => format!("{message} (at {name}:{line}:{column})"),
                    None => e.message,
                })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn types_become_spaces_so_every_position_stays() {
        let ts = "import type { Data } from \"./t\";\nexport default function (data: Data, n: number): string {\n  return (data as any).x + n;\n}\n";
        let js = strip("t.ts", ts).unwrap();
        assert_eq!(js.len(), ts.len(), "{js}");
        assert_eq!(js.lines().count(), ts.lines().count());
        let second = js.lines().nth(1).unwrap();
        assert!(second.starts_with("export default function (data      , n        )"), "{second:?}");
        assert!(js.contains("return (data       ).x + n;"), "{js}");
    }

    #[test]
    fn javascript_comes_out_unchanged() {
        let js = "export default function (data, ctx) {\n  return { a: data.a, v: ctx.version };\n}\n";
        assert_eq!(strip("t.js", js).unwrap(), js);
    }

    #[test]
    fn a_syntax_error_or_code_generating_typescript_is_placed() {
        let e =
            strip("tv/home@new", "export default function (data: any) {\n  return data.(;\n}\n").unwrap_err();
        assert!(e.ends_with("(at tv/home@new:2:15)"), "{e}");
        let e = strip("t", "enum Kind { A }\nexport default function () { return Kind.A; }\n").unwrap_err();
        assert!(e.contains("enum") && e.ends_with("(at t:1:1)"), "{e}");
    }
}
