//! QuickJS scripts: a pool of runtimes, each on a dedicated OS thread (never a tokio worker),
//! fed through a bounded queue, with a deadline (interrupt handler), a memory limit and a stack
//! limit per call. Scripts are pure: no `std`/`os` modules, no loader for `import`, no timers,
//! no network; `console.log` goes to tracing at debug level.
//!
//! **Isolation: a fresh realm per call.** Every job — a transform for one device request, one
//! trip of `@js` calls for one request, a publish check — gets a new `Context` (its own
//! `globalThis` and built-ins), compiles and evaluates its module there, runs, has the
//! microtasks it queued drained under the same deadline, and the context is dropped. Nothing a
//! script does to `Array.prototype`, `JSON`, `globalThis` or its own module variables is
//! seen by any later call: not another team's, not another endpoint's, not another device's
//! call of the same endpoint. The cost was measured against the alternatives (docs/adr/0005).
//! The runtime (heap, limits, interrupt handler) is shared by the calls of one thread and
//! replaced after a call that hit the deadline or ran out of memory, compiling included.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Runtime};
use tokio::sync::oneshot;

use crate::telemetry::metrics as m;

/// Limits of one script call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScriptLimits {
    pub deadline: Duration,
    pub memory_bytes: usize,
    pub stack_bytes: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self { deadline: Duration::from_millis(50), memory_bytes: 16 * 1024 * 1024, stack_bytes: 512 * 1024 }
    }
}

/// Why a script call failed; the message names the script and, where QuickJS tells it,
/// line:column.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScriptError {
    #[error("{script}: {message}")]
    Thrown { script: String, message: String },
    #[error("{script}: stopped after the {deadline_ms} ms deadline")]
    Deadline { script: String, deadline_ms: u64 },
    #[error("{script}: out of memory (limit {limit_mib} MiB)")]
    OutOfMemory { script: String, limit_mib: usize },
    #[error("{script}: does not compile: {message}")]
    Compile { script: String, message: String },
    #[error("{script}: {message}")]
    Contract { script: String, message: String },
    #[error("the script pool is busy ({capacity} calls queued); try again")]
    Busy { capacity: usize },
    #[error("the script pool is shut down")]
    Closed,
}

impl ScriptError {
    /// Line and column in the script where QuickJS placed the error, when it did (a throw or a
    /// syntax error; not a deadline or out-of-memory stop).
    pub fn position(&self) -> Option<(u32, u32)> {
        let message = match self {
            ScriptError::Thrown { message, .. } | ScriptError::Compile { message, .. } => message,
            _ => return None,
        };
        // "… (at transform (tv/home@3:2:15))" or "… (at tv/home@3:2:15)".
        let frame = message.rsplit_once("(at ")?.1.trim_end_matches(')');
        let mut parts = frame.rsplitn(3, ':');
        let column = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        Some((line, column))
    }

    fn kind(&self) -> &'static str {
        match self {
            ScriptError::Thrown { .. } => "thrown",
            ScriptError::Deadline { .. } => "deadline",
            ScriptError::OutOfMemory { .. } => "out_of_memory",
            ScriptError::Compile { .. } => "compile",
            ScriptError::Contract { .. } => "contract",
            ScriptError::Busy { .. } => "busy",
            ScriptError::Closed => "closed",
        }
    }
}

/// A script: its source and the name errors and logs use. (Nothing is cached per script:
/// every call compiles it in a realm of its own.)
#[derive(Debug, Clone)]
pub struct Script {
    pub name: Arc<str>,
    pub source: Arc<str>,
}

impl Script {
    pub fn new(name: impl Into<Arc<str>>, source: &str) -> Self {
        Self { name: name.into(), source: Arc::from(source) }
    }
}

/// What a job asks of a runtime.
enum Work {
    /// Calls the module's default export as `f(data, ctx)`; both are JSON text.
    Call { export: Option<String>, args: Vec<String> },
    /// Calls one named export once per item: `f(parent, args)`; each item is two JSON texts.
    Each { export: String, items: Vec<(String, String)> },
}

struct Job {
    script: Script,
    work: Work,
    reply: oneshot::Sender<Result<Vec<String>, ScriptError>>,
}

/// The pool. Cloning shares it; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct ScriptPool {
    tx: Sender<Job>,
    capacity: usize,
    trips: Arc<AtomicU64>,
    replaced: Arc<AtomicU64>,
}

impl ScriptPool {
    /// `threads` runtimes (0: one per core), `queue` jobs waiting at most.
    pub fn new(threads: usize, queue: usize, limits: ScriptLimits) -> std::io::Result<Self> {
        let threads =
            if threads == 0 { std::thread::available_parallelism().map_or(2, usize::from) } else { threads };
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let replaced = Arc::new(AtomicU64::new(0));
        for i in 0..threads {
            let (rx, replaced) = (rx.clone(), replaced.clone());
            std::thread::Builder::new()
                .name(format!("facade-js-{i}"))
                .spawn(move || worker(rx, limits, &replaced))?;
        }
        Ok(Self { tx, capacity: queue.max(1), trips: Arc::new(AtomicU64::new(0)), replaced })
    }

    /// Runtimes replaced after a call hit the deadline or ran out of memory.
    pub fn runtimes_replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// Jobs handed to the pool so far (one per call or per batch).
    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    async fn submit(&self, script: Script, work: Work) -> Result<Vec<String>, ScriptError> {
        // A span per script call when traces are on (the call runs on a script thread; the
        // span covers the trip there and back).
        let span = if crate::telemetry::otel::traced() {
            tracing::info_span!("script call", facade.script = %script.name, facade.outcome = tracing::field::Empty)
        } else {
            tracing::Span::none()
        };
        let result = self.submit_in(script, work).instrument(span.clone()).await;
        span.record("facade.outcome", result.as_ref().map_or_else(ScriptError::kind, |_| "ok"));
        result
    }

    async fn submit_in(&self, script: Script, work: Work) -> Result<Vec<String>, ScriptError> {
        let (reply, answer) = oneshot::channel();
        let name = script.name.clone();
        match self.tx.try_send(Job { script, work, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ScriptError::Busy { capacity: self.capacity }),
            Err(TrySendError::Disconnected(_)) => return Err(ScriptError::Closed),
        }
        self.trips.fetch_add(1, Ordering::Relaxed);
        let result = answer.await.unwrap_or(Err(ScriptError::Closed));
        if let Err(e) = &result {
            metrics::counter!(m::SCRIPT_ERRORS, "script" => name.to_string(), "kind" => e.kind())
                .increment(1);
        }
        result
    }

    /// Runs `export default function (data, ctx)` with JSON texts; returns its result as JSON.
    pub async fn transform(&self, script: &Script, data: String, ctx: String) -> Result<String, ScriptError> {
        let mut out = self.submit(script.clone(), Work::Call { export: None, args: vec![data, ctx] }).await?;
        out.pop().ok_or(ScriptError::Closed)
    }

    /// Calls `export function NAME(parent, args)` for every item, in one trip.
    pub async fn each(
        &self,
        script: &Script,
        export: &str,
        items: Vec<(String, String)>,
    ) -> Result<Vec<String>, ScriptError> {
        self.submit(script.clone(), Work::Each { export: export.to_owned(), items }).await
    }

    /// Compiles the script and checks it exports what is named (`None`: a default function).
    pub async fn check(&self, script: &Script, export: Option<&str>) -> Result<(), ScriptError> {
        let args = vec![];
        let work = Work::Call { export: Some(format!("?{}", export.unwrap_or("default"))), args };
        self.submit(script.clone(), work).await.map(|_| ())
    }
}

/// One runtime and what its interrupt handler reads; rebuilt after a fatal error. Realms
/// (contexts) are made per call by [`realm`].
struct Engine {
    /// The realm the next call gets, made while the thread waited for work.
    next: Option<Context>,
    runtime: Runtime,
    deadline: Arc<AtomicU64>,
    interrupted: Arc<AtomicBool>,
    origin: Instant,
    current: Arc<std::sync::Mutex<Arc<str>>>,
}

impl Engine {
    /// Whether this call's deadline has passed (the interrupt handler's test, for host code).
    fn late(&self) -> bool {
        self.origin.elapsed().as_nanos() as u64 > self.deadline.load(Ordering::Relaxed)
    }
}

fn build(limits: ScriptLimits) -> rquickjs::Result<Engine> {
    let runtime = Runtime::new()?;
    runtime.set_memory_limit(limits.memory_bytes);
    runtime.set_max_stack_size(limits.stack_bytes);
    let origin = Instant::now();
    let deadline = Arc::new(AtomicU64::new(u64::MAX));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (deadline, interrupted) = (deadline.clone(), interrupted.clone());
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let late = origin.elapsed().as_nanos() as u64 > deadline.load(Ordering::Relaxed);
            if late {
                interrupted.store(true, Ordering::Relaxed);
            }
            late
        })));
    }
    let current: Arc<std::sync::Mutex<Arc<str>>> = Arc::new(std::sync::Mutex::new(Arc::from("")));
    Ok(Engine { next: None, runtime, deadline, interrupted, origin, current })
}

/// The built-ins a realm gets: what shaping JSON needs (Date, RegExp, JSON, Map/Set,
/// Promise, `eval`'s compiler, which modules need) — not Proxy, typed arrays, WeakRef or
/// DOMException, which transforms have no use for and which make a realm ~40 % dearer to
/// build (docs/BENCHMARKS.md).
pub type Intrinsics = (
    rquickjs::context::intrinsic::Date,
    rquickjs::context::intrinsic::Eval,
    rquickjs::context::intrinsic::RegExpCompiler,
    rquickjs::context::intrinsic::RegExp,
    rquickjs::context::intrinsic::Json,
    rquickjs::context::intrinsic::MapSet,
    rquickjs::context::intrinsic::Promise,
);

/// A new realm for one call: the built-ins above plus `console`, which logs under the name of
/// the script that is running.
fn realm(engine: &Engine) -> rquickjs::Result<Context> {
    let context = Context::custom::<Intrinsics>(&engine.runtime)?;
    let current = engine.current.clone();
    context.with(|ctx| -> rquickjs::Result<()> {
        let console = Object::new(ctx.clone())?;
        for level in ["log", "info", "warn", "error", "debug"] {
            let current = current.clone();
            let f = Function::new(
                ctx.clone(),
                move |args: rquickjs::function::Rest<rquickjs::Coerced<String>>| {
                    let line: Vec<String> = args.0.into_iter().map(|s| s.0).collect();
                    let script = current.lock().map(|s| s.clone()).unwrap_or_else(|_| Arc::from(""));
                    tracing::debug!(script = %script, message = %line.join(" "), "console.{level}");
                },
            )?;
            console.set(level, f)?;
        }
        ctx.globals().set("console", console)?;
        Ok(())
    })?;
    Ok(context)
}

/// Runs the microtasks a call left queued, under the call's deadline, so that none of them
/// runs during a later call. `Err` when the deadline passed first.
fn drain(engine: &Engine) -> Result<(), ()> {
    while engine.runtime.is_job_pending() {
        if engine.late() {
            engine.interrupted.store(true, Ordering::Relaxed);
            return Err(());
        }
        // A job that throws is the script's own business; a job interrupted sets `interrupted`.
        if let Ok(false) = engine.runtime.execute_pending_job() {
            break;
        }
        if engine.interrupted.load(Ordering::Relaxed) {
            return Err(());
        }
    }
    Ok(())
}

fn worker(rx: Receiver<Job>, limits: ScriptLimits, replaced: &AtomicU64) {
    let mut engine = match build(limits) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a QuickJS runtime");
            return;
        }
    };
    while let Ok(job) = rx.recv() {
        let name = job.script.name.clone();
        if let Ok(mut c) = engine.current.lock() {
            *c = name.clone();
        }
        engine.interrupted.store(false, Ordering::Relaxed);
        let deadline = engine.origin.elapsed() + limits.deadline;
        engine.deadline.store(deadline.as_nanos() as u64, Ordering::Relaxed);
        let mut result = run(&mut engine, &job.script, job.work, limits);
        if drain(&engine).is_err() && result.is_ok() {
            let deadline_ms = limits.deadline.as_millis() as u64;
            result = Err(ScriptError::Deadline { script: name.to_string(), deadline_ms });
        }
        engine.deadline.store(u64::MAX, Ordering::Relaxed);
        // A runtime whose call was interrupted or ran out of memory (compiling included) may
        // be damaged, and may still hold the call's queued jobs: replace it.
        let fatal = engine.interrupted.load(Ordering::Relaxed)
            || matches!(&result, Err(ScriptError::Deadline { .. } | ScriptError::OutOfMemory { .. }))
            || matches!(&result, Err(ScriptError::Compile { message, .. }) if message.contains("out of memory"));
        let _ = job.reply.send(result);
        if fatal {
            // The runtime may be damaged: start a fresh one.
            metrics::counter!(m::SCRIPT_RUNTIME_REPLACED).increment(1);
            replaced.fetch_add(1, Ordering::Relaxed);
            match build(limits) {
                Ok(e) => engine = e,
                Err(e) => {
                    tracing::error!(error = %e, "cannot rebuild a QuickJS runtime");
                    return;
                }
            }
        }
        engine.runtime.run_gc();
        // The next call's realm, made now rather than while a request waits for it.
        engine.next = realm(&engine).ok();
    }
}

fn describe(caught: CaughtError<'_>) -> String {
    match caught {
        CaughtError::Exception(e) => {
            let message = e.message().unwrap_or_default();
            // QuickJS stacks look like "    at transform (home.js:3:11)"; keep the first frame.
            let at = e.stack().and_then(|s| {
                s.lines().find_map(|l| l.trim().strip_prefix("at ").map(|f| f.trim().to_owned()))
            });
            match at {
                Some(frame) => format!("{message} (at {frame})"),
                None => message,
            }
        }
        CaughtError::Value(v) => format!("threw {v:?}"),
        CaughtError::Error(e) => e.to_string(),
    }
}

/// A JS value as JSON text (`undefined` becomes `null`).
fn stringify<'js>(
    ctx: &Ctx<'js>,
    v: rquickjs::Value<'js>,
    classify: &dyn Fn(String) -> ScriptError,
) -> Result<String, ScriptError> {
    let text = ctx.json_stringify(v).catch(ctx).map_err(|e| classify(describe(e)))?;
    Ok(text.map(|s| s.to_string().unwrap_or_default()).unwrap_or_else(|| "null".to_owned()))
}

fn run(
    engine: &mut Engine,
    script: &Script,
    work: Work,
    limits: ScriptLimits,
) -> Result<Vec<String>, ScriptError> {
    let name = script.name.to_string();
    let interrupted = engine.interrupted.clone();
    let classify = |message: String| -> ScriptError {
        if interrupted.load(Ordering::Relaxed) {
            ScriptError::Deadline { script: name.clone(), deadline_ms: limits.deadline.as_millis() as u64 }
        } else if message.contains("out of memory") {
            ScriptError::OutOfMemory { script: name.clone(), limit_mib: limits.memory_bytes / (1024 * 1024) }
        } else {
            ScriptError::Thrown { script: name.clone(), message }
        }
    };
    let context = match engine.next.take() {
        Some(c) => c,
        None => realm(engine).map_err(|e| classify(e.to_string()))?,
    };
    context.with(|ctx| {
        let declared = Module::declare(ctx.clone(), script.name.as_bytes(), script.source.as_bytes())
            .catch(&ctx)
            .map_err(|e| ScriptError::Compile { script: name.clone(), message: describe(e) })?;
        let (module, promise) = declared.eval().catch(&ctx).map_err(|e| classify(describe(e)))?;
        promise.finish::<()>().catch(&ctx).map_err(|e| classify(describe(e)))?;
        let namespace = module.namespace().catch(&ctx).map_err(|e| classify(describe(e)))?;
        let export = |key: &str| -> Result<Function<'_>, ScriptError> {
            namespace.get::<_, Function>(key).map_err(|_| ScriptError::Contract {
                script: name.clone(),
                message: if key == "default" {
                    "must `export default function`".to_owned()
                } else {
                    format!("has no exported function {key}")
                },
            })
        };
        let json =
            |text: &str| ctx.json_parse(text.to_owned()).catch(&ctx).map_err(|e| classify(describe(e)));
        let stringify = |v| stringify(&ctx, v, &classify);
        match work {
            Work::Call { export: Some(check), .. } if check.starts_with('?') => {
                export(&check[1..])?;
                Ok(Vec::new())
            }
            Work::Call { export: key, args } => {
                let f = export(key.as_deref().unwrap_or("default"))?;
                let values = args.iter().map(|a| json(a)).collect::<Result<Vec<_>, _>>()?;
                let mut call = rquickjs::function::Args::new(ctx.clone(), values.len());
                for v in values {
                    call.push_arg(v).map_err(|e| classify(e.to_string()))?;
                }
                let out: rquickjs::Value = f.call_arg(call).catch(&ctx).map_err(|e| classify(describe(e)))?;
                Ok(vec![stringify(out)?])
            }
            Work::Each { export: key, items } => {
                let f = export(&key)?;
                let mut out = Vec::with_capacity(items.len());
                for (parent, args) in items {
                    let result: rquickjs::Value = f
                        .call((json(&parent)?, json(&args)?))
                        .catch(&ctx)
                        .map_err(|e| classify(describe(e)))?;
                    out.push(stringify(result)?);
                }
                Ok(out)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> ScriptPool {
        ScriptPool::new(2, 64, ScriptLimits::default()).unwrap()
    }

    fn script(source: &str) -> Script {
        Script::new("test.js", source)
    }

    #[tokio::test]
    async fn a_transform_shapes_data_with_ctx() {
        let s = script(
            "export default function transform(data, ctx) { return { n: data.items.length, who: ctx.client }; }",
        );
        let out =
            pool().transform(&s, r#"{"items":[1,2,3]}"#.into(), r#"{"client":"tv"}"#.into()).await.unwrap();
        assert_eq!(out, r#"{"n":3,"who":"tv"}"#);
    }

    #[tokio::test]
    async fn an_endless_loop_is_stopped_at_the_deadline_and_the_pool_keeps_serving() {
        let p = pool();
        let spin = script("export default function () { while (true) {} }");
        let started = Instant::now();
        let e = p.transform(&spin, "{}".into(), "{}".into()).await.unwrap_err();
        assert!(matches!(e, ScriptError::Deadline { .. }), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded (the benchmark measures the real figure)"
        );
        let ok = script("export default function (d) { return d; }");
        for _ in 0..4 {
            assert_eq!(p.transform(&ok, "[1]".into(), "{}".into()).await.unwrap(), "[1]");
        }
    }

    #[tokio::test]
    async fn try_catch_cannot_swallow_the_deadline() {
        let s = script("export default function () { for (;;) { try { while (true) {} } catch (e) {} } }");
        let e = pool().transform(&s, "{}".into(), "{}".into()).await.unwrap_err();
        assert!(matches!(e, ScriptError::Deadline { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_gibibyte_is_refused_at_the_memory_cap() {
        let s = script(
            "export default function () { const a = []; for (;;) a.push(new Array(1 << 20).fill(1)); }",
        );
        let e = pool().transform(&s, "{}".into(), "{}".into()).await.unwrap_err();
        assert!(matches!(e, ScriptError::OutOfMemory { .. }), "{e}");
        let big = script("export default function () { return 'x'.repeat(1 << 30).length; }");
        let e = pool().transform(&big, "{}".into(), "{}".into()).await.unwrap_err();
        assert!(matches!(e, ScriptError::OutOfMemory { .. } | ScriptError::Thrown { .. }), "{e}");
    }

    #[tokio::test]
    async fn deep_recursion_is_an_ordinary_error() {
        let s = script("function f(n) { return f(n + 1) + 1; }\nexport default function () { return f(0); }");
        let e = pool().transform(&s, "{}".into(), "{}".into()).await.unwrap_err();
        assert!(e.to_string().to_lowercase().contains("stack"), "{e}");
    }

    #[tokio::test]
    async fn no_way_out_of_the_sandbox() {
        let p = pool();
        for probe in [
            "typeof std",
            "typeof os",
            "typeof require",
            "typeof fetch",
            "typeof setTimeout",
            "typeof process",
        ] {
            let s = script(&format!("export default function () {{ return {probe}; }}"));
            assert_eq!(p.transform(&s, "{}".into(), "{}".into()).await.unwrap(), "\"undefined\"", "{probe}");
        }
        let s = script("import * as os from 'os';\nexport default function () { return 1; }");
        assert!(p.transform(&s, "{}".into(), "{}".into()).await.is_err(), "static import of os");
        let s = script("export default function () { return import('/etc/passwd'); }");
        let r = p.transform(&s, "{}".into(), "{}".into()).await;
        assert!(
            r.as_ref().is_err() || r.as_deref().ok() == Some("{}"),
            "dynamic import must not load a file: {r:?}"
        );
    }

    #[tokio::test]
    async fn errors_name_the_script_and_line() {
        let s = Script::new("tv/home@3", "export default function (data) {\n  return data.missing.field;\n}");
        let error = pool().transform(&s, "{}".into(), "{}".into()).await.unwrap_err();
        assert_eq!(error.position().map(|(line, _)| line), Some(2), "{error}");
        let e = error.to_string();
        assert!(e.starts_with("tv/home@3:") && e.contains(":2:"), "{e}");
        let bad = Script::new("broken.js", "export default function (\n");
        let e = pool().check(&bad, None).await.unwrap_err();
        assert!(matches!(e, ScriptError::Compile { .. }), "{e}");
        let none = Script::new("nodefault.js", "export function x() {}");
        let e = pool().check(&none, None).await.unwrap_err().to_string();
        assert!(e.contains("export default function"), "{e}");
    }

    #[tokio::test]
    async fn sixty_four_concurrent_calls_all_get_their_own_answer() {
        let p = pool();
        let s = script(
            "export default function (d) { let x = 0; for (let i = 0; i < 1000; i++) x += i; return d.n * 2 + x - 499500; }",
        );
        let calls = (0..64).map(|n| {
            let (p, s) = (p.clone(), s.clone());
            tokio::spawn(async move { p.transform(&s, format!("{{\"n\":{n}}}"), "{}".into()).await })
        });
        for (n, c) in calls.enumerate() {
            assert_eq!(c.await.unwrap().unwrap(), (n * 2).to_string());
        }
    }

    #[tokio::test]
    async fn each_runs_a_batch_in_one_trip() {
        let p = pool();
        let s = script("export function double(parent, args) { return parent.n * args.k; }");
        let items = (0..200).map(|n| (format!("{{\"n\":{n}}}"), "{\"k\":2}".to_owned())).collect();
        let before = p.trips();
        let out = p.each(&s, "double", items).await.unwrap();
        assert_eq!(p.trips() - before, 1);
        assert_eq!(out.len(), 200);
        assert_eq!(out[199], "398");
    }

    /// Attacks that change shared built-ins or keep state, each paired with a victim call
    /// that would show the change.
    const ATTACKS: &[(&str, &str)] = &[
        (
            "const g = globalThis; g.stash = g.stash || []; const map = Array.prototype.map;\n\
             Array.prototype.map = function (...a) { g.stash.push(JSON.stringify(this)); return map.apply(this, a); };",
            "return [1, 2].map((x) => x).concat(globalThis.stash || []);",
        ),
        ("Math.round = () => 5;", "return Math.round(2.2);"),
        ("Object.prototype.toJSON = function () { return 'owned'; };", "return { a: 1 };"),
        ("const p = JSON.parse; JSON.parse = (t) => ({ owned: true });", "return JSON.parse('[1]');"),
        ("String.prototype.toUpperCase = function () { return 'owned'; };", "return 'a'.toUpperCase();"),
        ("Function.prototype.call = function () { return 'owned'; };", "return [Math.max.call(null, 1, 2)];"),
        ("globalThis.secret = 'from another tenant';", "return typeof secret;"),
        (
            "Object.defineProperty(Object.prototype, 'x', { get() { return 'owned'; } });",
            "return ({}).x ?? null;",
        ),
        ("Promise.resolve().then(() => { globalThis.later = 'owned'; });", "return typeof later;"),
    ];

    #[tokio::test]
    async fn no_state_survives_from_one_call_to_the_next() {
        // One runtime, so every call lands on the realm the attacker would have changed.
        let p = ScriptPool::new(1, 64, ScriptLimits::default()).unwrap();
        let victim_expected = [
            r#"[1,2]"#,
            "2",
            r#"{"a":1}"#,
            "[1]",
            r#""A""#,
            "[2]",
            r#""undefined""#,
            "null",
            r#""undefined""#,
        ];
        for ((attack, victim), expected) in ATTACKS.iter().zip(victim_expected) {
            // As a transform of another team (runs its top level, then its function) ...
            let evil =
                Script::new("web/stash@1", &format!("{attack}\nexport default function () {{ return 1; }}"));
            p.transform(&evil, "{}".into(), "{}".into()).await.unwrap();
            // ... and as a refused publish (no default export), which still evaluates the module.
            let refused = Script::new("web/sneaky@new", &format!("{attack}\nexport const nothing = 1;"));
            assert!(p.check(&refused, None).await.is_err());
            let victim = Script::new("tv/home@1", &format!("export default function () {{ {victim} }}"));
            let out = p.transform(&victim, "{}".into(), "{}".into()).await.unwrap();
            assert_eq!(out, expected, "after {attack}");
        }
    }

    #[tokio::test]
    async fn two_devices_of_one_endpoint_share_nothing() {
        let p = ScriptPool::new(1, 64, ScriptLimits::default()).unwrap();
        let s =
            script("let seen = [];\nexport default function (data) { seen.push(data.device); return seen; }");
        let a = p.transform(&s, r#"{"device":"a"}"#.into(), "{}".into()).await.unwrap();
        let b = p.transform(&s, r#"{"device":"b"}"#.into(), "{}".into()).await.unwrap();
        assert_eq!((a.as_str(), b.as_str()), (r#"["a"]"#, r#"["b"]"#));
        // A batch of @js calls is one request's: items in one trip share the realm, trips do not.
        let each = script("let n = 0;\nexport function count() { return ++n; }");
        let first = p.each(&each, "count", vec![("{}".into(), "{}".into()); 3]).await.unwrap();
        let second = p.each(&each, "count", vec![("{}".into(), "{}".into())]).await.unwrap();
        assert_eq!((first, second), (vec!["1".to_owned(), "2".into(), "3".into()], vec!["1".to_owned()]));
    }

    #[tokio::test]
    async fn an_endless_microtask_chain_is_stopped_and_does_not_reach_the_next_call() {
        let p = ScriptPool::new(1, 64, ScriptLimits::default()).unwrap();
        let s = script(
            "function again() { globalThis.ticks = (globalThis.ticks || 0) + 1; Promise.resolve().then(again); }\n\
             export default function () { again(); return 'done'; }",
        );
        let e = p.transform(&s, "{}".into(), "{}".into()).await.unwrap_err();
        assert!(matches!(e, ScriptError::Deadline { .. }), "{e}");
        let ok = script("export default function () { return typeof ticks; }");
        assert_eq!(p.transform(&ok, "{}".into(), "{}".into()).await.unwrap(), r#""undefined""#);
    }

    #[tokio::test]
    async fn a_compile_out_of_memory_replaces_the_runtime() {
        let limits = ScriptLimits { memory_bytes: 2 * 1024 * 1024, ..ScriptLimits::default() };
        let p = ScriptPool::new(1, 64, limits).unwrap();
        let huge = format!("export default function () {{ return [{}]; }}", "1,".repeat(400_000));
        let e = p.check(&script(&huge), None).await.unwrap_err();
        assert!(e.to_string().contains("out of memory"), "{e}");
        let ok = script("export default function () { return 1; }");
        assert_eq!(p.transform(&ok, "{}".into(), "{}".into()).await.unwrap(), "1");
        assert_eq!(p.runtimes_replaced(), 1);
    }
}
