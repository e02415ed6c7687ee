//! A script worker: the process `facade script-worker` runs. It reads calls as frames on its
//! standard input (a socket the server made for it), runs each in the QuickJS engine
//! (`engine.rs`) and writes the answer back. Beside the loop, a watchdog thread ends the
//! process when a call has used more CPU time than its deadline allows: the engine's
//! interrupt handler stops scripts between bytecodes, but not a native built-in that runs
//! long (a string search on two long strings), and only ending the process stops that.
//! Its address space is capped by the OS (`RLIMIT_AS`, counted from what it maps at start), it dies with the server
//! (`PR_SET_PDEATHSIG`), and it never writes a core file.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::engine::{Code, Engine, Task};
use super::frame::{self, Reader};
use super::{ScriptError, ScriptLimits, wire};

/// The exit status of a worker its watchdog ended.
pub const WATCHDOG_EXIT: i32 = 75;

/// CPU time this process has used, in nanoseconds.
fn process_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The worker's answers go out through this; the watchdog takes it to answer for a call it
/// stops, so the two never interleave a frame.
struct Out {
    stream: UnixStream,
    /// The process CPU time at which the running call started (`None`: no call running).
    running: Option<u64>,
}

/// A worker's command line (`script-worker` of `facade`, and of any binary that runs a
/// server from the library and so must answer to it too).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// CPU time one call may use, in microseconds.
    #[arg(long)]
    pub deadline_us: u64,
    /// QuickJS heap, in bytes.
    #[arg(long)]
    pub memory_bytes: usize,
    /// Stack one call may use, in bytes.
    #[arg(long)]
    pub stack_bytes: usize,
    /// Address space the worker may map beyond what it has once started, in bytes (0: no cap).
    #[arg(long, default_value_t = 0)]
    pub address_space_bytes: u64,
}

impl WorkerArgs {
    /// Runs the worker these arguments describe (see [`run`]).
    pub fn run(&self) -> std::io::Result<()> {
        let limits = ScriptLimits {
            deadline: Duration::from_micros(self.deadline_us),
            memory_bytes: self.memory_bytes,
            stack_bytes: self.stack_bytes,
        };
        run(WorkerSettings { limits, address_space: self.address_space_bytes })
    }
}

/// Settings of a worker.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    pub limits: ScriptLimits,
    /// Address space the worker may map beyond what it has once started (0: no cap).
    pub address_space: u64,
}

/// The CPU time a call may use before the watchdog ends the worker: the deadline plus half
/// of it (at least 5 ms), so the interrupt handler, which stops a script at the deadline and
/// keeps the worker, gets there first whenever it can.
pub fn hard_limit(deadline: Duration) -> Duration {
    deadline + (deadline / 2).max(Duration::from_millis(5))
}

/// Runs a worker on this process's standard input until the server closes it.
pub fn run(settings: WorkerSettings) -> std::io::Result<()> {
    // Die with the server, however it ends; never leave a core file of a script's heap.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit { current: Some(0), maximum: Some(0) },
    );
    let stdin = std::io::stdin();
    let socket = UnixStream::from(std::os::fd::AsFd::as_fd(&stdin).try_clone_to_owned()?);
    if socket.local_addr().is_err() {
        return Err(std::io::Error::other(
            "standard input is not a socket: script workers are started by `facade serve`, not by hand",
        ));
    }
    let mut input = BufReader::with_capacity(64 * 1024, socket.try_clone()?);
    let out = Arc::new(Mutex::new(Out { stream: socket, running: None }));
    let hard = hard_limit(settings.limits.deadline);
    {
        let out = out.clone();
        std::thread::Builder::new().name("watchdog".into()).spawn(move || watchdog(&out, hard))?;
    }
    let mut engine = Engine::new(settings.limits)
        .map_err(|e| std::io::Error::other(format!("cannot start QuickJS: {e}")))?;
    // The cap counts from what the started worker has mapped (the binary, the allocator's
    // reserved arena, two thread stacks: ~1.1 GiB of address space, ~22 MiB resident).
    if settings.address_space > 0 {
        let cap = Some(mapped_bytes()? + settings.address_space);
        let limit = rustix::process::Rlimit { current: cap, maximum: cap };
        rustix::process::setrlimit(rustix::process::Resource::As, limit)?;
    }
    // Ready: the server waits for this before it hands the worker any call.
    if let Ok(mut o) = out.lock() {
        frame::Writer::with_capacity(0).send(&mut o.stream)?;
    }
    while let Some(request) = frame::receive(&mut input)? {
        let started_cpu = process_cpu_nanos();
        if let Ok(mut o) = out.lock() {
            o.running = Some(started_cpu);
        }
        let result = serve(&mut engine, &request);
        let console = engine.take_console();
        let cpu = process_cpu_nanos().saturating_sub(started_cpu);
        let mut o = out.lock().map_err(|_| std::io::Error::other("the answer lock is poisoned"))?;
        o.running = None;
        wire::reply(result, &console, cpu).send(&mut o.stream)?;
        drop(o);
        engine.settle().map_err(|e| std::io::Error::other(format!("cannot rebuild QuickJS: {e}")))?;
    }
    Ok(())
}

/// The address space this process has mapped (`VmSize`), in bytes.
fn mapped_bytes() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| std::io::Error::other("no VmSize in /proc/self/status"))
}

/// One request frame, decoded and run.
fn serve(engine: &mut Engine, request: &[u8]) -> Result<super::engine::Done, ScriptError> {
    let bad = |e: std::io::Error| ScriptError::Crashed { message: format!("a malformed request: {e}") };
    let mut r = Reader::new(request);
    let kind = r.u8().map_err(bad)?;
    let name = String::from_utf8_lossy(r.bytes().map_err(bad)?).into_owned();
    let code = match r.u8().map_err(bad)? {
        wire::BYTECODE => Code::Bytecode(r.bytes().map_err(bad)?),
        _ => Code::Source(r.bytes().map_err(bad)?),
    };
    let export = std::str::from_utf8(r.bytes().map_err(bad)?).unwrap_or("default");
    let args = r.list().map_err(bad)?;
    let task = match kind {
        wire::TRANSFORM if args.len() == 2 => Task::Transform { data: args[0], ctx: args[1] },
        wire::EACH => Task::Each {
            export,
            items: args.chunks(2).map(|p| (p[0], p.get(1).copied().unwrap_or(b"{}"))).collect(),
        },
        wire::CHECK => Task::Check { export },
        _ => return Err(bad(std::io::Error::other(format!("unknown task {kind}")))),
    };
    engine.call(&name, code, task)
}

/// Ends the process when the running call has used more than `hard` of CPU time, after
/// answering for it. Ticks at a tenth of the limit (1 to 10 ms).
fn watchdog(out: &Mutex<Out>, hard: Duration) {
    let tick = (hard / 10).clamp(Duration::from_millis(1), Duration::from_millis(10));
    let hard = hard.as_nanos() as u64;
    loop {
        std::thread::sleep(tick);
        let Ok(mut o) = out.lock() else { std::process::exit(WATCHDOG_EXIT) };
        if let Some(started) = o.running
            && process_cpu_nanos().saturating_sub(started) > hard
        {
            let _ = wire::stopped(hard).send(&mut o.stream);
            let _ = o.stream.flush();
            std::process::exit(WATCHDOG_EXIT);
        }
    }
}
