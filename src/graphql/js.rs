//! `@js` fields: functions exported from `resolvers-js/*.js`, run in the script pool. All
//! calls of one function asked in one tick of a request go to the pool as one trip (the same
//! leader-yields-then-dispatches scheme as the backend batcher), so a field over a 200-item
//! list costs one trip, not 200.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::oneshot;

use crate::scripts::{Script, ScriptError, ScriptPool};

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

type Slot = Shared<BoxFuture<'static, Result<Arc<Vec<String>>, ScriptError>>>;

struct Pending {
    items: Vec<(String, String)>,
    tx: oneshot::Sender<Result<Arc<Vec<String>>, ScriptError>>,
    slot: Slot,
}

/// One per GraphQL request.
#[derive(Default)]
pub struct JsBatch {
    /// A std mutex: held for a push, never across an `.await`.
    pending: Mutex<HashMap<Arc<str>, Pending>>,
}

impl JsBatch {
    /// Calls `function(parent, args)` (JSON texts) with every other call of it in this tick.
    pub async fn call(
        &self,
        js: &JsFunctions,
        function: &Arc<str>,
        parent: String,
        args: String,
    ) -> Result<String, ScriptError> {
        let (slot, index, lead) = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let mut lead = false;
            let group = pending.entry(function.clone()).or_insert_with(|| {
                lead = true;
                let (tx, rx) = oneshot::channel();
                let slot = rx.map(|r| r.unwrap_or(Err(ScriptError::Closed))).boxed().shared();
                Pending { items: Vec::new(), tx, slot }
            });
            group.items.push((parent, args));
            (group.slot.clone(), group.items.len() - 1, lead)
        };
        if lead {
            tokio::task::yield_now().await;
            let group = self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(function);
            if let Some(group) = group {
                let script = js.get(function).cloned();
                let pool = js.pool.clone();
                let name = function.to_string();
                tokio::spawn(async move {
                    let result = match script {
                        Some(script) => pool.each(&script, &name, group.items).await.map(Arc::new),
                        None => Err(ScriptError::Contract {
                            script: "resolvers-js".into(),
                            message: format!("no function {name}"),
                        }),
                    };
                    let _ = group.tx.send(result);
                });
            }
        }
        let results = slot.await?;
        Ok(results.get(index).cloned().unwrap_or_else(|| "null".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_exported_functions() {
        let src = "export function a(p) {}\n  export async function b_2() {}\nfunction hidden() {}\nexport const c = 1;\n";
        assert_eq!(super::exported_functions(src), ["a", "b_2"]);
    }
}
