//! QuickJS itself, as a script worker runs it: one runtime (heap, limits, interrupt handler)
//! and a fresh realm per call. Knows nothing of processes or frames; the worker loop
//! (`worker.rs`) feeds it calls and the pool (`pool.rs`) never touches it.
//!
//! **Isolation: a fresh realm per call** (ADR 0005). Every call — a transform for one device
//! request, one trip of `@js` calls for one request, a publish check — gets a new `Context`
//! (its own `globalThis` and built-ins), loads its module there (from bytecode compiled once,
//! or from source), runs, has the microtasks it queued drained under the same deadline, and
//! the context is dropped. Nothing a script does to `Array.prototype`, `JSON`, `globalThis`
//! or its own module variables is seen by any later call.
//!
//! **The deadline counts this thread's CPU time**, read by the interrupt handler, so a busy
//! machine does not fail a healthy call; what the interrupt handler cannot stop (a native
//! built-in that runs long) the worker's watchdog stops by ending the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Runtime};

use super::{ScriptError, ScriptLimits, crossing};

/// CPU time this thread has used, in nanoseconds.
pub fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// How a call's module comes in.
pub enum Code<'a> {
    /// JavaScript source, compiled in the call's realm.
    Source(&'a [u8]),
    /// Bytecode that [`Engine::compile`] wrote, in a worker of this same build.
    Bytecode(&'a [u8]),
}

/// What a call asks.
pub enum Task<'a> {
    /// `export default function (data, ctx)`, both JSON text; answers JSON text.
    Transform { data: &'a [u8], ctx: &'a [u8] },
    /// `export function NAME(parent, args)` once per item (two JSON texts each), in one realm.
    Each { export: &'a str, items: Vec<(&'a [u8], &'a [u8])> },
    /// Compiles the module, evaluates it and checks it exports a function of this name
    /// (`default`: the default export); answers the module's bytecode.
    Check { export: &'a str },
}

/// Where one call's time went inside the worker, in nanoseconds of wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerPhases {
    /// Making the realm (0 when one was made while the worker waited).
    pub realm: u64,
    /// Compiling the source, or loading the bytecode, and evaluating the module.
    pub load: u64,
    /// Turning the JSON text of the data (and ctx) into JavaScript values.
    pub data_in: u64,
    /// The script's own run.
    pub run: u64,
    /// Turning the result into JSON text.
    pub data_out: u64,
}

/// A finished call: its outputs (JSON text each) and, for a check, the module's bytecode.
pub struct Done {
    pub outputs: Vec<Vec<u8>>,
    pub bytecode: Option<Vec<u8>>,
    pub phases: WorkerPhases,
}

/// One runtime and what its interrupt handler reads; rebuilt after a fatal error.
pub struct Engine {
    limits: ScriptLimits,
    /// The realm the next call gets, made while the worker waited for work.
    next: Option<Context>,
    runtime: Runtime,
    /// This call's deadline in thread CPU nanoseconds (`u64::MAX`: no call running).
    deadline: Arc<AtomicU64>,
    interrupted: Arc<AtomicBool>,
    /// `console.*` lines of the current call, handed back with its answer.
    console: Arc<std::sync::Mutex<Vec<String>>>,
    /// Runtimes replaced so far (a call hit its deadline or ran out of memory).
    pub replaced: u64,
    /// Whether the last call may have damaged the runtime.
    damaged: bool,
    /// Calls since the last garbage collection.
    since_gc: u32,
}

/// The built-ins a realm gets: what shaping JSON needs (Date, RegExp, JSON, Map/Set,
/// Promise, `eval`'s compiler, which modules need) — not Proxy, typed arrays, WeakRef or
/// DOMException, which transforms have no use for and which make a realm ~40 % dearer to
/// build (docs/benchmarks-history.md).
pub type Intrinsics = (
    rquickjs::context::intrinsic::Date,
    rquickjs::context::intrinsic::Eval,
    rquickjs::context::intrinsic::RegExpCompiler,
    rquickjs::context::intrinsic::RegExp,
    rquickjs::context::intrinsic::Json,
    rquickjs::context::intrinsic::MapSet,
    rquickjs::context::intrinsic::Promise,
);

/// Calls between two garbage collections. The realms of past calls (which hold cycles) are
/// garbage once their call ends; a collection marks every live object, so one every 8 calls
/// costs a fraction of one per call, and 8 realms (~2 MiB) stay far below the heap limit.
const GC_EVERY: u32 = 8;

/// Console lines kept per call at most (more are counted, not kept).
const CONSOLE_LINES: usize = 64;

impl Engine {
    pub fn new(limits: ScriptLimits) -> rquickjs::Result<Self> {
        let runtime = Runtime::new_with_alloc(rquickjs::allocator::RustAllocator)?;
        runtime.set_memory_limit(limits.memory_bytes);
        runtime.set_max_stack_size(limits.stack_bytes);
        runtime.set_gc_threshold(limits.memory_bytes / 2);
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let interrupted = Arc::new(AtomicBool::new(false));
        {
            let (deadline, interrupted) = (deadline.clone(), interrupted.clone());
            runtime.set_interrupt_handler(Some(Box::new(move || {
                let late = thread_cpu_nanos() > deadline.load(Ordering::Relaxed);
                if late {
                    interrupted.store(true, Ordering::Relaxed);
                }
                late
            })));
        }
        let console = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut engine = Self {
            limits,
            next: None,
            runtime,
            deadline,
            interrupted,
            console,
            replaced: 0,
            damaged: false,
            since_gc: 0,
        };
        engine.next = engine.realm().ok();
        Ok(engine)
    }

    fn late(&self) -> bool {
        thread_cpu_nanos() > self.deadline.load(Ordering::Relaxed)
    }

    /// A new realm for one call: the built-ins above plus `console`, whose lines go back to the
    /// server with the call's answer.
    fn realm(&self) -> rquickjs::Result<Context> {
        let context = Context::custom::<Intrinsics>(&self.runtime)?;
        context.with(|ctx| -> rquickjs::Result<()> {
            let console = Object::new(ctx.clone())?;
            for level in ["log", "info", "warn", "error", "debug"] {
                let lines = self.console.clone();
                let f = Function::new(
                    ctx.clone(),
                    move |args: rquickjs::function::Rest<rquickjs::Coerced<String>>| {
                        if let Ok(mut lines) = lines.lock()
                            && lines.len() < CONSOLE_LINES
                        {
                            let line: Vec<String> = args.0.into_iter().map(|s| s.0).collect();
                            lines.push(format!("console.{level}: {}", line.join(" ")));
                        }
                    },
                )?;
                console.set(level, f)?;
            }
            ctx.globals().set("console", console)?;
            Ok(())
        })?;
        Ok(context)
    }

    /// The console lines of the last call.
    pub fn take_console(&self) -> Vec<String> {
        self.console.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }

    /// Runs one call under the deadline and drains its microtasks. Call [`Engine::settle`]
    /// once the answer is sent.
    pub fn call(&mut self, name: &str, code: Code<'_>, task: Task<'_>) -> Result<Done, ScriptError> {
        self.interrupted.store(false, Ordering::Relaxed);
        let deadline = thread_cpu_nanos() + self.limits.deadline.as_nanos() as u64;
        self.deadline.store(deadline, Ordering::Relaxed);
        let mut result = self.run(name, code, task);
        if self.drain().is_err() && result.is_ok() {
            result = Err(ScriptError::Deadline { script: name.to_owned(), deadline_ms: self.deadline_ms() });
        }
        self.deadline.store(u64::MAX, Ordering::Relaxed);
        // A runtime whose call was interrupted or ran out of memory (compiling included) may
        // be damaged, and may still hold the call's queued jobs: replace it.
        self.damaged = self.interrupted.load(Ordering::Relaxed)
            || matches!(&result, Err(ScriptError::Deadline { .. } | ScriptError::OutOfMemory { .. }))
            || matches!(&result, Err(ScriptError::Compile { message, .. }) if message.contains("out of memory"));
        result
    }

    /// Between calls: replaces a runtime the last call may have damaged, collects garbage
    /// every [`GC_EVERY`] calls, then makes the next call's realm, so a call waits for none of
    /// it.
    pub fn settle(&mut self) -> rquickjs::Result<()> {
        if self.damaged {
            let replaced = self.replaced + 1;
            *self = Engine::new(self.limits)?;
            self.replaced = replaced;
            return Ok(());
        }
        self.since_gc += 1;
        if self.since_gc >= GC_EVERY {
            self.runtime.run_gc();
            self.since_gc = 0;
        }
        // QuickJS raises its own threshold after a collection in a call (to 1.5× the heap
        // then); back to half the limit, so garbage of past calls never crowds the next one.
        self.runtime.set_gc_threshold(self.limits.memory_bytes / 2);
        if self.next.is_none() {
            self.next = self.realm().ok();
        }
        Ok(())
    }

    fn deadline_ms(&self) -> u64 {
        self.limits.deadline.as_millis() as u64
    }

    /// Runs the microtasks a call left queued, under the call's deadline, so that none of them
    /// runs during a later call. `Err` when the deadline passed first.
    fn drain(&self) -> Result<(), ()> {
        while self.runtime.is_job_pending() {
            if self.late() {
                self.interrupted.store(true, Ordering::Relaxed);
                return Err(());
            }
            // A job that throws is the script's own business; one interrupted sets `interrupted`.
            if let Ok(false) = self.runtime.execute_pending_job() {
                break;
            }
            if self.interrupted.load(Ordering::Relaxed) {
                return Err(());
            }
        }
        Ok(())
    }

    fn run(&mut self, name: &str, code: Code<'_>, task: Task<'_>) -> Result<Done, ScriptError> {
        let limits = self.limits;
        let interrupted = self.interrupted.clone();
        let classify = |message: String| -> ScriptError {
            if interrupted.load(Ordering::Relaxed) {
                ScriptError::Deadline {
                    script: name.to_owned(),
                    deadline_ms: limits.deadline.as_millis() as u64,
                }
            } else if message.contains("out of memory") {
                ScriptError::OutOfMemory {
                    script: name.to_owned(),
                    limit_mib: limits.memory_bytes / (1024 * 1024),
                }
            } else {
                ScriptError::Thrown { script: name.to_owned(), message }
            }
        };
        let mut phases = WorkerPhases::default();
        let mut clock = Instant::now();
        let mut lap = |slot: &mut u64| {
            let now = Instant::now();
            *slot = (now - clock).as_nanos() as u64;
            clock = now;
        };
        let context = match self.next.take() {
            Some(c) => c,
            None => self.realm().map_err(|e| classify(e.to_string()))?,
        };
        lap(&mut phases.realm);
        context.with(|ctx| {
            let compile_error = |e| ScriptError::Compile { script: name.to_owned(), message: describe(e) };
            let declared = match code {
                Code::Source(source) => Module::declare(ctx.clone(), name.as_bytes(), source)
                    .catch(&ctx)
                    .map_err(compile_error)?,
                Code::Bytecode(bytes) => load(&ctx, bytes).catch(&ctx).map_err(compile_error)?,
            };
            // Source is compiled once: its bytecode goes back with the answer, for the
            // server to keep and send instead.
            let bytecode = match (&task, matches!(code, Code::Source(_))) {
                (_, true) => Some(
                    declared
                        .write(rquickjs::module::WriteOptions::default())
                        .catch(&ctx)
                        .map_err(compile_error)?,
                ),
                _ => None,
            };
            let (module, promise) = declared.eval().catch(&ctx).map_err(|e| classify(describe(e)))?;
            promise.finish::<()>().catch(&ctx).map_err(|e| classify(describe(e)))?;
            let namespace = module.namespace().catch(&ctx).map_err(|e| classify(describe(e)))?;
            let export = |key: &str| -> Result<Function<'_>, ScriptError> {
                namespace.get::<_, Function>(key).map_err(|_| ScriptError::Contract {
                    script: name.to_owned(),
                    message: if key == "default" {
                        "must `export default function`".to_owned()
                    } else {
                        format!("has no exported function {key}")
                    },
                })
            };
            lap(&mut phases.load);
            let json = |text: &[u8]| {
                crossing::to_js(&ctx, text).map_err(|e| ScriptError::Contract {
                    script: name.to_owned(),
                    message: format!("its input is not JSON: {e}"),
                })
            };
            let stringify = |v| stringify(&ctx, v, &classify);
            let outputs = match task {
                Task::Check { export: key } => {
                    export(key)?;
                    Vec::new()
                }
                Task::Transform { data, ctx: call_ctx } => {
                    let f = export("default")?;
                    let (data, call_ctx) = (json(data)?, json(call_ctx)?);
                    lap(&mut phases.data_in);
                    let out: rquickjs::Value =
                        f.call((data, call_ctx)).catch(&ctx).map_err(|e| classify(describe(e)))?;
                    lap(&mut phases.run);
                    no_promise(name, &out)?;
                    let text = stringify(out)?;
                    lap(&mut phases.data_out);
                    vec![text]
                }
                Task::Each { export: key, items } => {
                    let f = export(key)?;
                    let mut out = Vec::with_capacity(items.len());
                    for (parent, args) in items {
                        let result: rquickjs::Value = f
                            .call((json(parent)?, json(args)?))
                            .catch(&ctx)
                            .map_err(|e| classify(describe(e)))?;
                        no_promise(name, &result)?;
                        out.push(stringify(result)?);
                    }
                    lap(&mut phases.run);
                    out
                }
            };
            Ok(Done { outputs, bytecode, phases })
        })
    }
}

/// A Promise (an `async` function's answer) has no value yet, and JSON would make it `{}`:
/// refused with a clear error (probe 2, L8).
fn no_promise(name: &str, v: &rquickjs::Value<'_>) -> Result<(), ScriptError> {
    if v.is_promise() {
        return Err(ScriptError::Contract {
            script: name.to_owned(),
            message: "returned a Promise (an async function?): transforms and @js functions must return their value synchronously".to_owned(),
        });
    }
    Ok(())
}

/// Loads a module from bytecode.
///
/// SAFETY argument for the one `unsafe` call: QuickJS trusts bytecode, so malformed bytes
/// could make it read out of bounds. The bytes here are never a user's: they are what
/// `Module::write` produced from source in a worker of this same binary (the same QuickJS),
/// kept in the server's memory only (never stored, never read back from the registry or a
/// file), and handed to the worker over its private socket. Should they still be wrong, the
/// damage stays in this worker process: its call fails and the pool starts a new worker.
#[allow(unsafe_code)]
fn load<'js>(ctx: &Ctx<'js>, bytes: &[u8]) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
    // SAFETY: see above; the bytes are copied by QuickJS (`JS_READ_OBJ_ROM_DATA` is 0 in
    // this QuickJS), so nothing borrows them after the call.
    unsafe { Module::load(ctx.clone(), bytes) }
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
) -> Result<Vec<u8>, ScriptError> {
    let mut out = Vec::with_capacity(16 * 1024);
    match crossing::write_json(ctx, &v, &mut out) {
        Ok(true) => Ok(out),
        Ok(false) => Ok(b"null".to_vec()),
        Err(message) => Err(classify(message)),
    }
}

#[cfg(test)]
mod tests {
    //! QuickJS as a worker runs it, in this process: semantics, limits and isolation. What
    //! needs a real worker process (the watchdog, crashes, the queue) is tested through the
    //! pool in `tests/api/scripts.rs`.
    use super::*;

    fn engine() -> Engine {
        Engine::new(ScriptLimits::default()).unwrap()
    }

    /// One call, then what a worker does between calls.
    fn call(e: &mut Engine, name: &str, code: Code<'_>, task: Task<'_>) -> Result<Done, ScriptError> {
        let result = e.call(name, code, task);
        e.settle().unwrap();
        result
    }

    fn transform(e: &mut Engine, source: &str, data: &str, ctx: &str) -> Result<String, ScriptError> {
        let task = Task::Transform { data: data.as_bytes(), ctx: ctx.as_bytes() };
        let done = call(e, "test.js", Code::Source(source.as_bytes()), task)?;
        Ok(String::from_utf8(done.outputs[0].clone()).unwrap())
    }

    fn check(e: &mut Engine, name: &str, source: &str, export: &str) -> Result<Done, ScriptError> {
        call(e, name, Code::Source(source.as_bytes()), Task::Check { export })
    }

    #[test]
    fn a_transform_shapes_data_with_ctx() {
        let s = "export default function transform(data, ctx) { return { n: data.items.length, who: ctx.client }; }";
        let out = transform(&mut engine(), s, r#"{"items":[1,2,3]}"#, r#"{"client":"tv"}"#).unwrap();
        assert_eq!(out, r#"{"n":3,"who":"tv"}"#);
    }

    #[test]
    fn an_async_transform_is_a_clear_error_not_an_empty_object() {
        let mut e = engine();
        let async_one = "export default async function (data) { return data; }";
        let err = transform(&mut e, async_one, "{\"a\":1}", "{}").unwrap_err().to_string();
        assert!(err.contains("returned a Promise"), "{err}");
        let promise = "export default function (data) { return Promise.resolve(data); }";
        assert!(transform(&mut e, promise, "{}", "{}").unwrap_err().to_string().contains("Promise"));
        // A plain object with a `then` is still an object.
        let thenable = "export default function () { return { then: 1 }; }";
        assert_eq!(transform(&mut e, thenable, "{}", "{}").unwrap(), "{\"then\":1}");
    }

    #[test]
    fn an_endless_loop_is_stopped_at_the_deadline_and_the_engine_keeps_serving() {
        let mut e = engine();
        let started = thread_cpu_nanos();
        let err =
            transform(&mut e, "export default function () { while (true) {} }", "{}", "{}").unwrap_err();
        assert!(matches!(err, ScriptError::Deadline { .. }), "{err}");
        assert!(thread_cpu_nanos() - started >= 50_000_000, "the deadline counts CPU time");
        assert_eq!(e.replaced, 1, "an interrupted runtime is replaced");
        for _ in 0..4 {
            assert_eq!(
                transform(&mut e, "export default function (d) { return d; }", "[1]", "{}").unwrap(),
                "[1]"
            );
        }
    }

    #[test]
    fn try_catch_cannot_swallow_the_deadline() {
        let s = "export default function () { for (;;) { try { while (true) {} } catch (e) {} } }";
        let err = transform(&mut engine(), s, "{}", "{}").unwrap_err();
        assert!(matches!(err, ScriptError::Deadline { .. }), "{err}");
    }

    #[test]
    fn a_gibibyte_is_refused_at_the_memory_cap() {
        let mut e = engine();
        let s = "export default function () { const a = []; for (;;) a.push(new Array(1 << 20).fill(1)); }";
        let err = transform(&mut e, s, "{}", "{}").unwrap_err();
        assert!(matches!(err, ScriptError::OutOfMemory { .. }), "{err}");
        let s = "export default function () { return 'x'.repeat(1 << 30).length; }";
        let err = transform(&mut e, s, "{}", "{}").unwrap_err();
        assert!(matches!(err, ScriptError::OutOfMemory { .. } | ScriptError::Thrown { .. }), "{err}");
    }

    #[test]
    fn deep_recursion_is_an_ordinary_error() {
        let s = "function f(n) { return f(n + 1) + 1; }\nexport default function () { return f(0); }";
        let err = transform(&mut engine(), s, "{}", "{}").unwrap_err();
        assert!(err.to_string().to_lowercase().contains("stack"), "{err}");
    }

    #[test]
    fn no_way_out_of_the_sandbox() {
        let mut e = engine();
        for probe in ["std", "os", "require", "fetch", "setTimeout", "process"] {
            let s = format!("export default function () {{ return typeof {probe}; }}");
            assert_eq!(transform(&mut e, &s, "{}", "{}").unwrap(), "\"undefined\"", "{probe}");
        }
        let s = "import * as os from 'os';\nexport default function () { return 1; }";
        assert!(transform(&mut e, s, "{}", "{}").is_err(), "static import of os");
        let s = "export default function () { return import('/etc/passwd'); }";
        let r = transform(&mut e, s, "{}", "{}");
        assert!(r.is_err() || r.as_deref().ok() == Some("{}"), "dynamic import must not load a file: {r:?}");
    }

    #[test]
    fn errors_name_the_script_and_line_from_source_and_from_bytecode() {
        let mut e = engine();
        let source = "export default function (data) {\n  return data.missing.field;\n}";
        let compiled = check(&mut e, "tv/home@3", source, "default").unwrap();
        let bytecode = compiled.bytecode.expect("a check of source writes bytecode");
        for code in [Code::Source(source.as_bytes()), Code::Bytecode(&bytecode)] {
            let task = Task::Transform { data: b"{}", ctx: b"{}" };
            let error = call(&mut e, "tv/home@3", code, task).err().unwrap();
            assert_eq!(error.position().map(|(line, _)| line), Some(2), "{error}");
            let text = error.to_string();
            assert!(text.starts_with("tv/home@3:") && text.contains(":2:"), "{text}");
        }
        let err = check(&mut e, "broken.js", "export default function (\n", "default").err().unwrap();
        assert!(matches!(err, ScriptError::Compile { .. }), "{err}");
        let err = check(&mut e, "nodefault.js", "export function x() {}", "default").err().unwrap();
        assert!(err.to_string().contains("export default function"), "{err}");
    }

    #[test]
    fn bytecode_gives_the_same_answer_as_source_in_a_fresh_realm_each_call() {
        let mut e = engine();
        let source = "let n = 0;\nexport default function (d) { n += 1; return { n, sum: d.a + d.b }; }";
        let bytecode = check(&mut e, "sum.js", source, "default").unwrap().bytecode.unwrap();
        for _ in 0..3 {
            let task = Task::Transform { data: br#"{"a":1,"b":2}"#, ctx: b"{}" };
            let done = call(&mut e, "sum.js", Code::Bytecode(&bytecode), task).unwrap();
            assert_eq!(done.outputs[0], br#"{"n":1,"sum":3}"#, "module state starts afresh");
        }
    }

    #[test]
    fn each_runs_a_batch_in_one_realm() {
        let mut e = engine();
        let s = "export function double(parent, args) { return parent.n * args.k; }";
        let items: Vec<(String, String)> =
            (0..200).map(|n| (format!("{{\"n\":{n}}}"), "{\"k\":2}".into())).collect();
        let items = items.iter().map(|(p, a)| (p.as_bytes(), a.as_bytes())).collect();
        let done =
            call(&mut e, "double.js", Code::Source(s.as_bytes()), Task::Each { export: "double", items })
                .unwrap();
        assert_eq!(done.outputs.len(), 200);
        assert_eq!(done.outputs[199], b"398");
    }

    /// Attacks that change shared built-ins or keep state, each paired with a victim call
    /// that would show the change.
    const ATTACKS: &[(&str, &str, &str)] = &[
        (
            "const g = globalThis; g.stash = g.stash || []; const map = Array.prototype.map;\n\
             Array.prototype.map = function (...a) { g.stash.push(JSON.stringify(this)); return map.apply(this, a); };",
            "return [1, 2].map((x) => x).concat(globalThis.stash || []);",
            "[1,2]",
        ),
        ("Math.round = () => 5;", "return Math.round(2.2);", "2"),
        ("Object.prototype.toJSON = function () { return 'owned'; };", "return { a: 1 };", r#"{"a":1}"#),
        ("const p = JSON.parse; JSON.parse = (t) => ({ owned: true });", "return JSON.parse('[1]');", "[1]"),
        (
            "String.prototype.toUpperCase = function () { return 'owned'; };",
            "return 'a'.toUpperCase();",
            r#""A""#,
        ),
        (
            "Function.prototype.call = function () { return 'owned'; };",
            "return [Math.max.call(null, 1, 2)];",
            "[2]",
        ),
        ("globalThis.secret = 'from another tenant';", "return typeof secret;", r#""undefined""#),
        (
            "Object.defineProperty(Object.prototype, 'x', { get() { return 'owned'; } });",
            "return ({}).x ?? null;",
            "null",
        ),
        (
            "Promise.resolve().then(() => { globalThis.later = 'owned'; });",
            "return typeof later;",
            r#""undefined""#,
        ),
    ];

    #[test]
    fn no_state_survives_from_one_call_to_the_next() {
        // One engine, so every call lands on the runtime the attacker would have changed.
        let mut e = engine();
        for (attack, victim, expected) in ATTACKS {
            // As a transform of another team (runs its top level, then its function) ...
            let evil = format!("{attack}\nexport default function () {{ return 1; }}");
            transform(&mut e, &evil, "{}", "{}").unwrap();
            // ... and as a refused publish (no default export), which still evaluates the module.
            let refused = format!("{attack}\nexport const nothing = 1;");
            assert!(check(&mut e, "web/sneaky@new", &refused, "default").is_err());
            let victim = format!("export default function () {{ {victim} }}");
            assert_eq!(transform(&mut e, &victim, "{}", "{}").unwrap(), *expected, "after {attack}");
        }
    }

    #[test]
    fn two_devices_of_one_endpoint_share_nothing() {
        let mut e = engine();
        let s = "let seen = [];\nexport default function (data) { seen.push(data.device); return seen; }";
        let a = transform(&mut e, s, r#"{"device":"a"}"#, "{}").unwrap();
        let b = transform(&mut e, s, r#"{"device":"b"}"#, "{}").unwrap();
        assert_eq!((a.as_str(), b.as_str()), (r#"["a"]"#, r#"["b"]"#));
    }

    #[test]
    fn an_endless_microtask_chain_is_stopped_and_does_not_reach_the_next_call() {
        let mut e = engine();
        let s = "function again() { globalThis.ticks = (globalThis.ticks || 0) + 1; Promise.resolve().then(again); }\n\
                 export default function () { again(); return 'done'; }";
        let err = transform(&mut e, s, "{}", "{}").unwrap_err();
        assert!(matches!(err, ScriptError::Deadline { .. }), "{err}");
        let ok = "export default function () { return typeof ticks; }";
        assert_eq!(transform(&mut e, ok, "{}", "{}").unwrap(), r#""undefined""#);
    }

    #[test]
    fn garbage_of_past_calls_never_crowds_out_the_next_call() {
        // Each call builds about 1 MiB and leaves its realm behind as garbage; with a 4 MiB
        // heap, 50 calls in a row only pass if garbage is collected in time.
        let limits = ScriptLimits { memory_bytes: 4 * 1024 * 1024, ..ScriptLimits::default() };
        let mut e = Engine::new(limits).unwrap();
        let s = "export default function () { const a = []; for (let i = 0; i < 20000; i++) a.push({ i, s: 'x' + i }); return a.length; }";
        for _ in 0..50 {
            assert_eq!(transform(&mut e, s, "{}", "{}").unwrap(), "20000");
        }
        assert_eq!(e.replaced, 0);
    }

    #[test]
    fn a_compile_out_of_memory_replaces_the_runtime() {
        let limits = ScriptLimits { memory_bytes: 2 * 1024 * 1024, ..ScriptLimits::default() };
        let mut e = Engine::new(limits).unwrap();
        let huge = format!("export default function () {{ return [{}]; }}", "1,".repeat(400_000));
        let err = check(&mut e, "huge.js", &huge, "default").err().unwrap();
        assert!(err.to_string().contains("out of memory"), "{err}");
        assert_eq!(transform(&mut e, "export default function () { return 1; }", "{}", "{}").unwrap(), "1");
        assert_eq!(e.replaced, 1);
    }
}
