//! The server's side of the script workers: a bounded queue of calls, and one **lane** per
//! worker — a dedicated OS thread (never a tokio worker) that owns one worker process, hands
//! it a call at a time over a socket and waits for the answer. A lane drops a call whose
//! caller has gone, refuses one that waited longer than `max_wait` (and the caller stops
//! waiting for a lane at `max_wait` itself, however long the lanes are held), kills a worker that does
//! not answer within the backstop (wall time, far above the deadline: the worker's own
//! watchdog stops a call on CPU time), and starts a new worker after a crash or a kill, so a
//! crash costs only the call that caused it.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::frame::{self, Writer};
use super::{Phases, Script, ScriptError, ScriptLimits, Transformed, wire, worker};
use crate::telemetry::metrics as m;

/// The program a worker runs: `PROGRAM script-worker …`. The server's own executable unless
/// configured (tests and tools that link the library point it at the `facade` binary).
#[derive(Debug, Clone)]
pub struct WorkerProgram(pub PathBuf);

impl WorkerProgram {
    /// The running executable, which must be `facade` (or accept its `script-worker` command).
    pub fn this_executable() -> std::io::Result<Self> {
        std::env::current_exe().map(Self)
    }
}

/// What a call asks of a worker.
enum Work {
    Transform { data: Vec<u8>, ctx: Vec<u8> },
    Each { export: String, items: Vec<(String, String)> },
    Check { export: String },
}

struct Job {
    script: Script,
    work: Work,
    queued: Instant,
    reply: oneshot::Sender<Result<Answer, ScriptError>>,
    /// Set by the lane that takes the call: from then on its caller waits for the answer
    /// (which the lane's backstop bounds); before, only for `max_wait`.
    taken: Arc<AtomicBool>,
}

struct Answer {
    outputs: Vec<Vec<u8>>,
    phases: Phases,
}

/// Counters the lanes keep, and each lane's worker.
#[derive(Default)]
struct Counts {
    trips: AtomicU64,
    replaced: AtomicU64,
    dropped: AtomicU64,
    /// The process ID of each lane's worker (0: none running).
    pids: Vec<std::sync::atomic::AtomicU32>,
}

/// The pool. Cloning shares it; it stops (its workers ended) when the last clone is dropped.
#[derive(Clone)]
pub struct ScriptPool {
    tx: Sender<Job>,
    capacity: usize,
    max_wait: Duration,
    counts: Arc<Counts>,
}

/// How a pool runs its workers.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub program: WorkerProgram,
    /// Worker processes (0: one per core).
    pub workers: usize,
    /// Calls waiting for a worker at most; more are refused at once.
    pub queue: usize,
    /// Longest a call may wait in the queue before it is refused.
    pub max_wait: Duration,
    pub limits: ScriptLimits,
    /// Address space a worker may map beyond what it has once started, in bytes (0: no cap).
    pub address_space: u64,
}

impl ScriptPool {
    /// Starts the workers (each on its lane) and returns once they are started.
    pub fn start(settings: PoolSettings) -> std::io::Result<Self> {
        let workers = if settings.workers == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            settings.workers
        };
        let queue = settings.queue.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue);
        let pids = (0..workers).map(|_| std::sync::atomic::AtomicU32::new(0)).collect();
        let counts = Arc::new(Counts { pids, ..Counts::default() });
        let (started_tx, started) = std::sync::mpsc::channel();
        for i in 0..workers {
            let mut lane =
                Lane { index: i, settings: settings.clone(), worker: None, counts: counts.clone() };
            let (rx, started_tx) = (rx.clone(), started_tx.clone());
            // Each lane starts its own workers: a worker dies with the thread that started it
            // (`PR_SET_PDEATHSIG` follows the thread, not the process).
            std::thread::Builder::new().name(format!("facade-js-{i}")).spawn(move || {
                match lane.spawn() {
                    Ok(worker) => lane.worker = Some(worker),
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                }
                let _ = started_tx.send(Ok(()));
                drop(started_tx);
                lane.serve(&rx)
            })?;
        }
        drop(started_tx);
        // One word from each lane.
        for _ in 0..workers {
            started.recv().map_err(|_| std::io::Error::other("a script lane ended at start"))??;
        }
        Ok(Self { tx, capacity: queue, max_wait: settings.max_wait, counts })
    }

    /// A pool with default settings and `workers` workers running `program` (tools and tests).
    pub fn with_program(
        program: WorkerProgram,
        workers: usize,
        limits: ScriptLimits,
    ) -> std::io::Result<Self> {
        Self::start(PoolSettings {
            program,
            workers,
            queue: 64,
            max_wait: Duration::from_secs(5),
            limits,
            address_space: 0,
        })
    }

    /// Workers ended and replaced (a call hit the deadline in a native built-in, the
    /// worker crashed or did not answer).
    pub fn workers_replaced(&self) -> u64 {
        self.counts.replaced.load(Ordering::Relaxed)
    }

    /// Calls handed to a worker so far (one per call or per batch).
    pub fn trips(&self) -> u64 {
        self.counts.trips.load(Ordering::Relaxed)
    }

    /// Calls waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// The process IDs of the workers running now.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.counts.pids.iter().map(|p| p.load(Ordering::Relaxed)).filter(|&p| p != 0).collect()
    }

    /// Calls dropped before they ran because their caller had gone.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    async fn submit(&self, script: &Script, work: Work) -> Result<Answer, ScriptError> {
        // A span per script call when traces are on (the call runs in a worker; the span
        // covers the trip there and back and carries the phases).
        let span = if crate::telemetry::otel::traced() {
            tracing::info_span!(
                "script call",
                facade.script = %script.name,
                facade.outcome = tracing::field::Empty,
                facade.script.queue_wait_us = tracing::field::Empty,
                facade.script.hand_off_us = tracing::field::Empty,
                facade.script.realm_us = tracing::field::Empty,
                facade.script.load_us = tracing::field::Empty,
                facade.script.data_in_us = tracing::field::Empty,
                facade.script.run_us = tracing::field::Empty,
                facade.script.data_out_us = tracing::field::Empty,
                facade.script.worker_cpu_us = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let result = self.submit_in(script, work).instrument(span.clone()).await;
        span.record("facade.outcome", result.as_ref().map_or_else(ScriptError::kind, |_| "ok"));
        if let Ok(a) = &result
            && !span.is_none()
        {
            let p = &a.phases;
            let us = |d: Duration| d.as_micros() as u64;
            span.record("facade.script.queue_wait_us", us(p.queue_wait));
            span.record("facade.script.hand_off_us", us(p.hand_off));
            span.record("facade.script.realm_us", us(p.realm));
            span.record("facade.script.load_us", us(p.load));
            span.record("facade.script.data_in_us", us(p.data_in));
            span.record("facade.script.run_us", us(p.run));
            span.record("facade.script.data_out_us", us(p.data_out));
            span.record("facade.script.worker_cpu_us", us(p.worker_cpu));
        }
        result
    }

    async fn submit_in(&self, script: &Script, work: Work) -> Result<Answer, ScriptError> {
        // A script whose TypeScript could not be stripped never reaches a worker.
        script.code()?;
        let (reply, mut answer) = oneshot::channel();
        let taken = Arc::new(AtomicBool::new(false));
        let queued = Instant::now();
        let job = Job { script: script.clone(), work, queued, reply, taken: taken.clone() };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(self.refused(script, ScriptError::Busy { capacity: self.capacity }));
            }
            Err(TrySendError::Disconnected(_)) => return Err(ScriptError::Closed),
        }
        // A lane judges `max_wait` only when it gets to the call; with every lane held (a
        // starved machine, workers stopped) that can be far later, so the caller gives up at
        // `max_wait` by itself if no lane has taken the call by then (the lane then finds it
        // abandoned and drops it).
        let result = match tokio::time::timeout(self.max_wait, &mut answer).await {
            Ok(answer) => answer.unwrap_or(Err(ScriptError::Closed)),
            Err(_) if !taken.load(Ordering::Acquire) => {
                Err(ScriptError::Waited { waited_ms: queued.elapsed().as_millis() as u64 })
            }
            Err(_) => answer.await.unwrap_or(Err(ScriptError::Closed)),
        };
        result.map_err(|e| self.refused(script, e))
    }

    fn refused(&self, script: &Script, e: ScriptError) -> ScriptError {
        metrics::counter!(m::SCRIPT_ERRORS, "script" => script.name.to_string(), "kind" => e.kind())
            .increment(1);
        e
    }

    /// Runs `export default function (data, ctx)` with JSON texts; returns its result as JSON
    /// text and where the time went.
    pub async fn transform(
        &self,
        script: &Script,
        data: Vec<u8>,
        ctx: Vec<u8>,
    ) -> Result<Transformed, ScriptError> {
        let mut a = self.submit(script, Work::Transform { data, ctx }).await?;
        Ok(Transformed { json: a.outputs.pop().ok_or(ScriptError::Closed)?, phases: a.phases })
    }

    /// Calls `export function NAME(parent, args)` for every item, in one trip.
    pub async fn each(
        &self,
        script: &Script,
        export: &str,
        items: Vec<(String, String)>,
    ) -> Result<Vec<String>, ScriptError> {
        let a = self.submit(script, Work::Each { export: export.to_owned(), items }).await?;
        Ok(a.outputs.into_iter().map(|o| String::from_utf8_lossy(&o).into_owned()).collect())
    }

    /// Compiles the script to bytecode (kept in the script, shared by its clones) and checks
    /// it exports what is named (`None`: a default function). Evaluates the module in a
    /// worker, never in the server.
    pub async fn check(&self, script: &Script, export: Option<&str>) -> Result<(), ScriptError> {
        let export = export.unwrap_or("default").to_owned();
        self.submit(script, Work::Check { export }).await.map(|_| ())
    }
}

/// A running worker process and the server's end of its socket.
struct Worker {
    child: Child,
    socket: UnixStream,
    input: BufReader<UnixStream>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One lane: a thread, a worker, and the calls it hands that worker one at a time.
struct Lane {
    index: usize,
    settings: PoolSettings,
    worker: Option<Worker>,
    counts: Arc<Counts>,
}

impl Lane {
    /// The wall time a lane waits for an answer before it kills the worker: twenty times the
    /// hard CPU limit plus two seconds, so only a worker that is stopped or starved for long
    /// is killed on wall time (the watchdog stops calls on CPU time first).
    fn backstop(&self) -> Duration {
        worker::hard_limit(self.settings.limits.deadline) * 20 + Duration::from_secs(2)
    }

    fn spawn(&self) -> std::io::Result<Worker> {
        let (ours, theirs) = UnixStream::pair()?;
        let limits = &self.settings.limits;
        let child = Command::new(&self.settings.program.0)
            .arg("script-worker")
            .arg(format!("--deadline-us={}", limits.deadline.as_micros()))
            .arg(format!("--memory-bytes={}", limits.memory_bytes))
            .arg(format!("--stack-bytes={}", limits.stack_bytes))
            .arg(format!("--address-space-bytes={}", self.settings.address_space))
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start a script worker ({}): {e}", self.settings.program.0.display()),
                )
            })?;
        let mut worker =
            Worker { input: BufReader::with_capacity(64 * 1024, ours.try_clone()?), child, socket: ours };
        // The worker says it is ready once its runtime and limits are set; one that cannot
        // (a limit refused, QuickJS failing to start) exits with its reason on stderr.
        worker.socket.set_read_timeout(Some(self.backstop().max(Duration::from_secs(30))))?;
        match frame::receive(&mut worker.input) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                let _ = worker.child.kill();
                let status = worker.child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "a script worker ({}) did not start: {status} (its reason is in the log above)",
                    self.settings.program.0.display()
                )));
            }
        }
        worker.socket.set_read_timeout(Some(self.backstop()))?;
        self.counts.pids[self.index].store(worker.child.id(), Ordering::Relaxed);
        Ok(worker)
    }

    fn serve(mut self, rx: &Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            if job.reply.is_closed() {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let queue_wait = job.queued.elapsed();
            if queue_wait > self.settings.max_wait {
                let _ = job.reply.send(Err(ScriptError::Waited { waited_ms: queue_wait.as_millis() as u64 }));
                continue;
            }
            job.taken.store(true, Ordering::Release);
            self.counts.trips.fetch_add(1, Ordering::Relaxed);
            let result = self.call(&job).map(|mut a| {
                a.phases.queue_wait = queue_wait;
                a
            });
            let _ = job.reply.send(result);
        }
    }

    /// One call on this lane's worker, starting a worker first if there is none.
    fn call(&mut self, job: &Job) -> Result<Answer, ScriptError> {
        let limits = self.settings.limits;
        let request = encode(job).map_err(|e| ScriptError::Contract {
            script: job.script.name.to_string(),
            message: e.to_string(),
        })?;
        let started = Instant::now();
        let sent = match self.worker.as_mut() {
            Some(w) => w.socket.write_all(&request).is_ok(),
            None => false,
        };
        if !sent {
            // The worker is gone (it died between calls, or could not be started): a new one.
            self.replace();
            let w = self.worker.as_mut().ok_or_else(|| ScriptError::Crashed {
                message: "no script worker could be started (see the server log)".to_owned(),
            })?;
            w.socket.write_all(&request).map_err(|e| ScriptError::Crashed { message: e.to_string() })?;
        }
        let w = self.worker.as_mut().expect("a worker after a send");
        let received = frame::receive(&mut w.input);
        let round_trip = started.elapsed();
        let frame = match received {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(self.ended(job, None)),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(self.ended(job, Some(round_trip)));
            }
            Err(e) => {
                let error = self.ended(job, None);
                tracing::warn!(script = %job.script.name, error = %e, "a script worker's answer could not be read");
                return Err(error);
            }
        };
        let reply = match wire::decode(&frame) {
            Ok(r) => r,
            Err(e) => {
                self.replace();
                return Err(ScriptError::Crashed { message: format!("a malformed answer: {e}") });
            }
        };
        for line in &reply.console {
            tracing::debug!(script = %job.script.name, message = %line, "script console");
        }
        if reply.ending {
            // The watchdog answered and is ending its worker: the next call gets a new one.
            self.replace();
        }
        let (mut outputs, bytecode) = reply.result.map_err(|e| e.named(&job.script.name, &limits))?;
        if let Some(bytes) = bytecode {
            let _ = job.script.bytecode.set(Arc::from(bytes));
        }
        if matches!(job.work, Work::Check { .. }) {
            outputs.clear();
        }
        let p = reply.phases;
        let ns = Duration::from_nanos;
        let inside = ns(p.realm + p.load + p.data_in + p.run + p.data_out);
        let phases = Phases {
            queue_wait: Duration::ZERO,
            hand_off: round_trip.saturating_sub(inside),
            realm: ns(p.realm),
            load: ns(p.load),
            data_in: ns(p.data_in),
            run: ns(p.run),
            data_out: ns(p.data_out),
            worker_cpu: ns(reply.cpu_nanos),
        };
        Ok(Answer { outputs, phases })
    }

    /// The worker ended or stopped answering during `job`: it is killed (if still there),
    /// its exit read, a new one started, and the call's error says what happened.
    fn ended(&mut self, job: &Job, timed_out: Option<Duration>) -> ScriptError {
        let status = self.worker.as_mut().map(|w| {
            if timed_out.is_some() {
                let _ = w.child.kill();
            }
            w.child.wait()
        });
        self.replace();
        let limits = &self.settings.limits;
        let name = job.script.name.to_string();
        use std::os::unix::process::ExitStatusExt;
        match (timed_out, status) {
            (Some(waited), _) => ScriptError::Crashed {
                message: format!("{name}: no answer after {} ms; the worker was killed", waited.as_millis()),
            },
            (None, Some(Ok(s))) if s.code() == Some(worker::WATCHDOG_EXIT) => {
                ScriptError::Deadline { script: name, deadline_ms: limits.deadline.as_millis() as u64 }
            }
            (None, Some(Ok(s))) => ScriptError::Crashed {
                message: match s.signal() {
                    Some(sig) => format!("{name}: the worker was ended by signal {sig}"),
                    None => format!("{name}: the worker exited with {s}"),
                },
            },
            (None, _) => ScriptError::Crashed { message: format!("{name}: the worker is gone") },
        }
    }

    /// Ends the current worker (if any) and starts a new one.
    fn replace(&mut self) {
        if self.worker.take().is_some() {
            self.counts.replaced.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::SCRIPT_WORKERS_REPLACED).increment(1);
        }
        self.worker =
            self.spawn().map_err(|e| tracing::error!(error = %e, "cannot start a script worker")).ok();
    }
}

/// A call as a request frame (length prefix included); too large a call is an error.
fn encode(job: &Job) -> std::io::Result<Vec<u8>> {
    let script = &job.script;
    let (kind, export, args): (u8, &str, Vec<&[u8]>) = match &job.work {
        Work::Transform { data, ctx } => (wire::TRANSFORM, "default", vec![data, ctx]),
        Work::Each { export, items } => {
            (wire::EACH, export, items.iter().flat_map(|(p, a)| [p.as_bytes(), a.as_bytes()]).collect())
        }
        Work::Check { export } => (wire::CHECK, export, Vec::new()),
    };
    // Checked before the job was queued (`submit_in`).
    let code = script.code().unwrap_or_default();
    let size: usize = args.iter().map(|a| a.len() + 4).sum::<usize>() + code.len() + 64;
    let mut w = Writer::with_capacity(size);
    w.u8(kind).bytes(script.name.as_bytes());
    // A check always compiles the source (it is what makes the bytecode).
    match script.bytecode.get() {
        Some(bytes) if kind != wire::CHECK => w.u8(wire::BYTECODE).bytes(bytes),
        _ => w.u8(wire::SOURCE).bytes(code.as_bytes()),
    };
    w.bytes(export.as_bytes()).list(&args);
    w.finish()
}
