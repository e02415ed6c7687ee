//! Scripts: transforms and `@js` functions, run in **script workers** — child processes
//! (`facade script-worker`) that the server starts, feeds through a bounded queue and ends
//! when a call passes its deadline, whatever the call is doing (ADR 0007). Scripts are pure:
//! no `std`/`os` modules, no loader for `import`, no timers, no network; `console.*` lines
//! come back with the answer and go to tracing at debug level.
//!
//! - `pool.rs` (server side): the queue, one thread per worker that hands it calls, the
//!   backstop that kills a worker that does not answer, and the phases of each call.
//! - `worker.rs` (worker side): the loop on the worker's socket and the CPU-time watchdog.
//! - `engine.rs` (worker side): QuickJS, a fresh realm per call (ADR 0005), bytecode.
//! - `frame.rs`: length-prefixed frames; `wire` below: what goes in them.
//!
//! Architecture Invariant: nothing here does IO except the pool's pipe to its workers, and no
//! tokio worker thread ever waits on a script: callers await a oneshot answer.

pub mod crossing;
mod engine;
mod frame;
mod pool;
pub mod typescript;
pub mod worker;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use engine::Intrinsics;
pub use pool::{PoolSettings, ScriptPool, WorkerProgram};

/// Limits of one script call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScriptLimits {
    /// CPU time one call may use (the script's own thread, not wall time).
    pub deadline: Duration,
    /// QuickJS heap of one worker.
    pub memory_bytes: usize,
    pub stack_bytes: usize,
}

impl From<&crate::config::ScriptsConfig> for ScriptLimits {
    fn from(c: &crate::config::ScriptsConfig) -> Self {
        Self {
            deadline: Duration::from_millis(c.deadline_ms),
            memory_bytes: c.memory_mib * 1024 * 1024,
            stack_bytes: c.stack_kib * 1024,
        }
    }
}

/// `[scripts]`'s defaults (written there once).
impl Default for ScriptLimits {
    fn default() -> Self {
        Self::from(&crate::config::ScriptsConfig::default())
    }
}

/// Why a script call failed; the message names the script and, where QuickJS tells it,
/// line:column.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScriptError {
    #[error("{script}: {message}")]
    Thrown { script: String, message: String },
    #[error("{script}: stopped after the {deadline_ms} ms deadline (CPU time)")]
    Deadline { script: String, deadline_ms: u64 },
    #[error("{script}: out of memory (limit {limit_mib} MiB)")]
    OutOfMemory { script: String, limit_mib: usize },
    #[error("{script}: does not compile: {message}")]
    Compile { script: String, message: String },
    #[error("{script}: {message}")]
    Contract { script: String, message: String },
    #[error("the script pool is busy ({capacity} calls queued); try again")]
    Busy { capacity: usize },
    #[error("no script worker was free within {waited_ms} ms; try again")]
    Waited { waited_ms: u64 },
    #[error("the script worker ended during the call: {message}")]
    Crashed { message: String },
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
            ScriptError::Waited { .. } => "waited",
            ScriptError::Crashed { .. } => "crashed",
            ScriptError::Closed => "closed",
        }
    }

    /// The same error told of another script (the worker's errors carry the name it was
    /// sent; the watchdog's carry none).
    fn named(self, script: &str, limits: &ScriptLimits) -> Self {
        let script = script.to_owned();
        match self {
            ScriptError::Thrown { message, .. } => ScriptError::Thrown { script, message },
            ScriptError::Deadline { .. } => {
                ScriptError::Deadline { script, deadline_ms: limits.deadline.as_millis() as u64 }
            }
            ScriptError::OutOfMemory { .. } => {
                ScriptError::OutOfMemory { script, limit_mib: limits.memory_bytes / (1024 * 1024) }
            }
            ScriptError::Compile { message, .. } => ScriptError::Compile { script, message },
            ScriptError::Contract { message, .. } => ScriptError::Contract { script, message },
            other => other,
        }
    }
}

/// A script: its source (JavaScript or TypeScript), the name errors and logs use, the
/// JavaScript it runs as (`typescript.rs`: types stripped to spaces, positions kept; or why
/// it cannot run), and its bytecode once compiled (at publish, when a registry snapshot is
/// built, when `@js` files are loaded). Clones share the bytecode. Each call still runs in a
/// realm of its own.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: Arc<str>,
    pub source: Arc<str>,
    code: Result<Arc<str>, Arc<str>>,
    bytecode: Arc<OnceLock<Arc<[u8]>>>,
}

impl Script {
    pub fn new(name: impl Into<Arc<str>>, source: &str) -> Self {
        let name = name.into();
        let code = typescript::strip(&name, source).map(Arc::from).map_err(Arc::from);
        Self { name, source: Arc::from(source), code, bytecode: Arc::default() }
    }

    /// The JavaScript QuickJS compiles, or the compile error of a script that cannot run.
    fn code(&self) -> Result<&str, ScriptError> {
        match &self.code {
            Ok(code) => Ok(code),
            Err(message) => {
                Err(ScriptError::Compile { script: self.name.to_string(), message: message.to_string() })
            }
        }
    }

    /// Whether the script has been compiled to bytecode.
    pub fn compiled(&self) -> bool {
        self.bytecode.get().is_some()
    }
}

/// Where one script call's time went, end to end (wall time; `worker_cpu` is the worker's
/// CPU time for the call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Waiting in the queue for a worker.
    pub queue_wait: Duration,
    /// Framing, the trip to the worker and back, and reading the frames on both sides.
    pub hand_off: Duration,
    /// Making the realm (zero when the worker made it while it waited).
    pub realm: Duration,
    /// Compiling or loading bytecode, and evaluating the module.
    pub load: Duration,
    /// The data (and ctx) into JavaScript values.
    pub data_in: Duration,
    /// The script's own run.
    pub run: Duration,
    /// The result out as JSON text.
    pub data_out: Duration,
    /// CPU time the worker process used for the call.
    pub worker_cpu: Duration,
}

impl Phases {
    /// The phases as `{"queueWaitUs": …}` for the debug waterfall.
    pub fn to_json(&self) -> serde_json::Value {
        let us = |d: Duration| d.as_micros() as u64;
        serde_json::json!({
            "queueWaitUs": us(self.queue_wait), "handOffUs": us(self.hand_off), "realmUs": us(self.realm),
            "loadUs": us(self.load), "dataInUs": us(self.data_in), "runUs": us(self.run),
            "dataOutUs": us(self.data_out), "workerCpuUs": us(self.worker_cpu),
        })
    }
}

/// A transform's answer: the JSON text it returned, and where the time went.
#[derive(Debug, Clone)]
pub struct Transformed {
    pub json: Vec<u8>,
    pub phases: Phases,
}

/// What goes in the frames between the pool and a worker.
///
/// Request: task (u8), script name, code kind (u8) and code, export name, argument list.
/// Reply: outcome (u8: 0 ok, else an error kind), error message, outputs (list), bytecode
/// (empty if none), five worker phases and the worker's CPU time (u64 nanoseconds each),
/// console lines (list).
mod wire {
    use super::ScriptError;
    use super::engine::{Done, WorkerPhases};
    use super::frame::{Reader, Writer};

    pub const TRANSFORM: u8 = 0;
    pub const EACH: u8 = 1;
    pub const CHECK: u8 = 2;
    pub const SOURCE: u8 = 0;
    pub const BYTECODE: u8 = 1;

    const OK: u8 = 0;
    const THROWN: u8 = 1;
    const DEADLINE: u8 = 2;
    const OUT_OF_MEMORY: u8 = 3;
    const COMPILE: u8 = 4;
    const CONTRACT: u8 = 5;
    const CRASHED: u8 = 6;
    /// The deadline, answered by the watchdog: the worker ends after this reply.
    const STOPPED: u8 = 7;

    /// The watchdog's answer for the call it stops, before the worker ends.
    pub fn stopped(cpu_nanos: u64) -> Writer {
        let mut w =
            reply(Err(ScriptError::Deadline { script: String::new(), deadline_ms: 0 }), &[], cpu_nanos);
        w.set_first(STOPPED);
        w
    }

    pub fn reply(result: Result<Done, ScriptError>, console: &[String], cpu_nanos: u64) -> Writer {
        let size = result.as_ref().map_or(0, |d| d.outputs.iter().map(|o| o.len() + 4).sum::<usize>());
        let mut w = Writer::with_capacity(size + 128);
        let (outcome, message, done) = match result {
            Ok(done) => (OK, String::new(), Some(done)),
            Err(e) => {
                let (code, message) = match e {
                    ScriptError::Thrown { message, .. } => (THROWN, message),
                    ScriptError::Deadline { .. } => (DEADLINE, String::new()),
                    ScriptError::OutOfMemory { .. } => (OUT_OF_MEMORY, String::new()),
                    ScriptError::Compile { message, .. } => (COMPILE, message),
                    ScriptError::Contract { message, .. } => (CONTRACT, message),
                    other => (CRASHED, other.to_string()),
                };
                (code, message, None)
            }
        };
        w.u8(outcome).bytes(message.as_bytes());
        let empty: [&[u8]; 0] = [];
        match &done {
            Some(d) => w.list(&d.outputs),
            None => w.list(&empty),
        };
        w.bytes(done.as_ref().and_then(|d| d.bytecode.as_deref()).unwrap_or_default());
        let p = done.map(|d| d.phases).unwrap_or_default();
        w.u64(p.realm).u64(p.load).u64(p.data_in).u64(p.run).u64(p.data_out).u64(cpu_nanos);
        w.list(console);
        w
    }

    /// What a call answered: its outputs (JSON text each) and the module's bytecode, if it
    /// was compiled.
    pub type Outputs = (Vec<Vec<u8>>, Option<Vec<u8>>);

    /// A decoded reply: outputs, bytecode, phases, CPU nanoseconds, console lines, and whether
    /// the worker is ending (its watchdog answered).
    pub struct Reply {
        pub result: Result<Outputs, ScriptError>,
        pub ending: bool,
        pub phases: WorkerPhases,
        pub cpu_nanos: u64,
        pub console: Vec<String>,
    }

    pub fn decode(frame: &[u8]) -> std::io::Result<Reply> {
        let mut r = Reader::new(frame);
        let outcome = r.u8()?;
        let message = String::from_utf8_lossy(r.bytes()?).into_owned();
        let outputs: Vec<Vec<u8>> = r.list()?.into_iter().map(<[u8]>::to_vec).collect();
        let bytecode = r.bytes()?;
        let bytecode = (!bytecode.is_empty()).then(|| bytecode.to_vec());
        let phases = WorkerPhases {
            realm: r.u64()?,
            load: r.u64()?,
            data_in: r.u64()?,
            run: r.u64()?,
            data_out: r.u64()?,
        };
        let cpu_nanos = r.u64()?;
        let console = r.list()?.into_iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
        let script = String::new();
        let result = match outcome {
            OK => Ok((outputs, bytecode)),
            THROWN => Err(ScriptError::Thrown { script, message }),
            DEADLINE | STOPPED => Err(ScriptError::Deadline { script, deadline_ms: 0 }),
            OUT_OF_MEMORY => Err(ScriptError::OutOfMemory { script, limit_mib: 0 }),
            COMPILE => Err(ScriptError::Compile { script, message }),
            CONTRACT => Err(ScriptError::Contract { script, message }),
            _ => Err(ScriptError::Crashed { message }),
        };
        Ok(Reply { result, ending: outcome == STOPPED, phases, cpu_nanos, console })
    }
}

#[cfg(test)]
mod tests {
    use super::engine::{Done, WorkerPhases};
    use super::*;

    fn decode(w: frame::Writer) -> wire::Reply {
        let bytes = w.finish().unwrap();
        wire::decode(&bytes[4..]).unwrap()
    }

    #[test]
    fn replies_come_back_as_they_were_written() {
        let phases = WorkerPhases { realm: 1, load: 2, data_in: 3, run: 4, data_out: 5 };
        let done = Done { outputs: vec![b"{\"a\":1}".to_vec()], bytecode: Some(vec![1, 2, 3]), phases };
        let r = decode(wire::reply(Ok(done), &["console.log: hi".to_owned()], 99));
        let (outputs, bytecode) = r.result.unwrap();
        assert_eq!((outputs, bytecode), (vec![b"{\"a\":1}".to_vec()], Some(vec![1, 2, 3])));
        assert_eq!(
            (r.phases, r.cpu_nanos, r.console, r.ending),
            (phases, 99, vec!["console.log: hi".to_owned()], false)
        );
        let thrown = ScriptError::Thrown { script: "x".into(), message: "boom (at x:2:3)".into() };
        let r = decode(wire::reply(Err(thrown), &[], 1));
        let named = r.result.unwrap_err().named("tv/home@2", &ScriptLimits::default());
        assert_eq!(named.to_string(), "tv/home@2: boom (at x:2:3)");
        assert_eq!(named.position(), Some((2, 3)));
    }

    #[test]
    fn only_the_watchdogs_answer_says_the_worker_is_ending() {
        let interrupted = ScriptError::Deadline { script: String::new(), deadline_ms: 0 };
        let r = decode(wire::reply(Err(interrupted), &[], 80_000_000));
        assert!(
            matches!(r.result, Err(ScriptError::Deadline { .. })) && !r.ending,
            "the interrupt handler's"
        );
        let r = decode(wire::stopped(75_000_000));
        assert!(matches!(r.result, Err(ScriptError::Deadline { .. })) && r.ending, "the watchdog's");
        let named = r.result.unwrap_err().named("web/bomb@1", &ScriptLimits::default());
        assert_eq!(named.to_string(), "web/bomb@1: stopped after the 50 ms deadline (CPU time)");
    }
}
