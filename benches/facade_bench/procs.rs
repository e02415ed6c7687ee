//! Child processes of the harness: the demo backends, Facade, and the static comparison
//! server, each this same binary re-executed with a hidden subcommand, so every side runs in
//! its own process and the harness never picks up a stale build of another binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;

/// A running child; killed when dropped.
pub struct Proc {
    pub child: Child,
    /// The first line the child printed on stdout (its address or its backends as JSON).
    pub announce: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn start(args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("current exe")?;
        let mut command = Command::new(exe);
        command.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        command.env("RUST_LOG", "warn");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().with_context(|| format!("spawn {args:?}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("read child announce line")?;
        if line.trim().is_empty() {
            let _ = child.kill();
            bail!("{args:?} exited before announcing itself");
        }
        Ok(Self { child, announce: line.trim().to_owned() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size of the child, from /proc (Linux), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.pid())
    }

    /// CPU time the child has used so far (user + system, all threads), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    /// The kernel's part of [`Self::cpu_seconds`] (system time), in seconds.
    pub fn system_seconds(&self) -> Option<f64> {
        cpu_times(&format!("/proc/{}/stat", self.pid())).map(|(_, system)| system)
    }
}

/// Peak resident set size of process `pid`, from /proc (Linux), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// CPU time (user + system) of the process whose `stat` file is at `path`, in seconds: fields
/// 14 and 15 of /proc/PID/stat, counted after the command name's closing parenthesis (the name
/// may hold spaces). They are in USER_HZ ticks, which the kernel fixes at 100 per second for
/// /proc on every architecture Facade builds for.
pub fn cpu_seconds(path: &str) -> Option<f64> {
    cpu_times(path).map(|(user, system)| user + system)
}

/// User and system time of the process whose `stat` file is at `path`, in seconds.
fn cpu_times(path: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user as f64 / 100.0, system as f64 / 100.0))
}

/// The demo backends as a separate process.
pub struct Backends {
    /// The child: it lives as long as this value.
    proc: Proc,
    /// (name, base URL) in the order of `facade::demo::BACKEND_NAMES`.
    pub urls: Vec<(String, String)>,
}

impl Backends {
    pub fn start() -> anyhow::Result<Self> {
        let proc = Proc::start(&["_demo-backends"], &[])?;
        let list: Vec<Value> = serde_json::from_str(&proc.announce).context("demo backends announce")?;
        let urls = list
            .iter()
            .map(|b| {
                (b["name"].as_str().unwrap_or("").to_owned(), b["baseUrl"].as_str().unwrap_or("").to_owned())
            })
            .collect();
        Ok(Self { proc, urls })
    }

    /// CPU time the backends' process has used so far, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.proc.cpu_seconds()
    }

    pub fn url(&self, name: &str) -> &str {
        &self.urls.iter().find(|(n, _)| n == name).expect("known backend").1
    }

    /// `FACADE_BACKENDS__<NAME>__URL` variables binding a Facade to these backends.
    pub fn facade_env(&self) -> Vec<(String, String)> {
        self.urls
            .iter()
            .map(|(n, u)| (format!("FACADE_BACKENDS__{}__URL", n.to_uppercase()), u.clone()))
            .collect()
    }
}

/// A server child that announces `... http://ADDR`; returns the URL.
pub fn server_url(proc: &Proc) -> anyhow::Result<String> {
    proc.announce
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_owned)
        .with_context(|| format!("no URL in {:?}", proc.announce))
}
