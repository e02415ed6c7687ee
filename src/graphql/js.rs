//! `@js` fields: functions exported from `resolvers-js/*.js`, run in the script pool. The
//! executor calls a function once per step with every parent (`exec.rs`), so a field over a
//! 200-item list costs one trip to the pool, not 200.

use std::collections::HashMap;
use std::path::Path;

use crate::scripts::{Script, ScriptPool};

/// The exported functions of `resolvers-js/*.js`, by name, and the pool that runs them.
#[derive(Clone)]
pub struct JsFunctions {
    pub pool: ScriptPool,
    by_name: HashMap<String, Script>,
}

impl std::fmt::Debug for JsFunctions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsFunctions").field("functions", &self.names()).finish()
    }
}

impl JsFunctions {
    /// Reads the `*.js` files directly in `dir` (not `endpoints/`) and finds their exported
    /// functions; the pool then checks each really is a function.
    pub async fn load(dir: &Path, pool: ScriptPool) -> Result<Self, String> {
        let mut by_name = HashMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(_) => return Ok(Self { pool, by_name }),
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "js"))
            .collect();
        paths.sort();
        for path in paths {
            let source = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let script = Script::new(path.display().to_string(), &source);
            for name in exported_functions(&source) {
                pool.check(&script, Some(&name)).await.map_err(|e| e.to_string())?;
                if let Some(previous) = by_name.insert(name.clone(), script.clone()) {
                    return Err(format!(
                        "function {name} is exported by both {} and {}",
                        previous.name, script.name
                    ));
                }
            }
        }
        Ok(Self { pool, by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Script> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// Names after `export function` / `export async function` at the start of a line.
pub fn exported_functions(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("export ")?.trim_start();
            let rest = rest.strip_prefix("async ").unwrap_or(rest).trim_start().strip_prefix("function")?;
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_exported_functions() {
        let src = "export function a(p) {}\n  export async function b_2() {}\nfunction hidden() {}\nexport const c = 1;\n";
        assert_eq!(super::exported_functions(src), ["a", "b_2"]);
    }
}
