//! `facade-bench`: measures what Facade promises, side by side, on loopback.
//!
//! `cargo run --release --bin facade-bench -- all` starts the demo backends and Facade as
//! separate processes (this binary re-executed with hidden subcommands), runs every scenario
//! and prints one markdown table per scenario. See docs/BENCHMARKS.md.

mod chaos;
mod federation;
mod js_micro;
mod load;
mod procs;
mod scenarios;
mod static_server;
mod subgraphs;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc instead of the system allocator: glibc's arenas contended on a lock when memory
/// allocated on one worker thread is freed on another (about a third of server CPU in a
/// profile of the home query; see docs/benchmarks-history.md).
#[global_allocator]
static ALLOCATOR: facade::alloc::Mimalloc = facade::alloc::Mimalloc;

/// Benchmarks for Facade: chattiness, batching, parallelism, throughput, overhead, isolation.
#[derive(Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    /// Scenarios to run, in order.
    #[arg(value_enum, default_value = "all")]
    scenarios: Vec<Scenario>,
    /// A few seconds per scenario: checks the harness, measures nothing worth keeping.
    #[arg(long)]
    smoke: bool,
    /// Also write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// How long `chaos` measures, in seconds (at least 60).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    chaos_secs: u64,
    /// How long `chaos` runs first, faults and load alike, without counting anything: by
    /// default one full cycle of the faults (6 backends × 4 faults × 20 s), so that the
    /// baseline minute comes after the process has met each of them once.
    #[arg(long, value_name = "SECS", default_value_t = 480)]
    chaos_warmup_secs: u64,
    /// The Hive Router binary `federation` compares with (default: `$HIVE_ROUTER`, else
    /// `hive_router` on the PATH; without one, Facade is measured alone).
    #[arg(long, value_name = "FILE")]
    hive_router: Option<PathBuf>,
    /// The CPUs `federation` pins each router to (taskset's list syntax).
    #[arg(long, value_name = "LIST", default_value = "0,1")]
    router_cpus: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Chattiness,
    Batching,
    Parallelism,
    Throughput,
    Overhead,
    Isolation,
    ById,
    Scripts,
    Reload,
    /// Not in `all`: ten minutes of device and ad-hoc load while a fault moves across the
    /// backends (`--chaos-secs`).
    Chaos,
    /// Not in `all`: The Guild's federation benchmark, Facade beside Hive Router
    /// (`--hive-router`), in alternating rounds.
    Federation,
}

#[derive(Subcommand)]
enum Child {
    #[command(name = "_demo-backends", hide = true)]
    DemoBackends,
    #[command(name = "_serve", hide = true)]
    Serve,
    /// The server started by `_serve` runs its script workers as this binary.
    #[command(name = "script-worker", hide = true)]
    ScriptWorker(facade::scripts::worker::WorkerArgs),
    #[command(name = "_static-server", hide = true)]
    StaticServer {
        #[arg(long)]
        backends: String,
    },
    /// Serves the four subgraphs of The Guild's federation benchmark (accounts, inventory,
    /// products, reviews) at `POST /NAME`, each's SDL at `GET /NAME/sdl`.
    Subgraphs {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4200")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let servers = || tokio::runtime::Builder::new_multi_thread().enable_all().build();
    match cli.child {
        // The demo backends on one thread too: they need about a third of a core at Facade's
        // peak, and a second worker would add wake-ups and work stealing between the two.
        Some(Child::DemoBackends) => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(demo_backends())
        }
        Some(Child::Serve) => servers()?.block_on(serve()),
        Some(Child::ScriptWorker(args)) => Ok(args.run()?),
        Some(Child::StaticServer { backends }) => {
            servers()?.block_on(static_server::serve(serde_json::from_str(&backends)?))
        }
        Some(Child::Subgraphs { listen }) => Ok(servers()?.block_on(subgraphs::serve(listen))?),
        // The load generator on one thread, as wrk runs with `-t1`: it needs a fraction of a
        // core, and a second worker thread would only add wake-ups between the two (CPU taken
        // from the servers measured on the same two cores).
        None => tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(run(
            cli.scenarios,
            cli.smoke,
            cli.json,
            (cli.chaos_secs, cli.chaos_warmup_secs),
            (cli.hive_router, cli.router_cpus),
        )),
    }
}

async fn demo_backends() -> anyhow::Result<()> {
    let demo = facade::demo::DemoBackends::start(&facade::demo::DemoOptions::default()).await?;
    println!("{}", serde_json::to_string(&demo.info())?);
    std::future::pending::<()>().await;
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let mut config = facade::config::Config::load(None)?;
    config.listen = "127.0.0.1:0".parse()?;
    if std::env::var_os("FACADE_SCHEMA_DIR").is_none() {
        config.schema_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema");
    }
    config.log.filter = "warn".into();
    // One load generator is one client: the door's per-client limit (5,000/s) would answer
    // 429 past it, and shared backend calls take the home query past it.
    config.limits.client_rate_per_sec = 10_000_000;
    config.limits.client_burst = 10_000_000;
    let _traces = facade::telemetry::init(&config.log, &config.telemetry);
    let app = facade::app::App::build(&config).await?;
    println!("facade listening on http://{}", app.local_addr());
    app.run_until(std::future::pending()).await?;
    Ok(())
}

async fn run(
    mut scenarios: Vec<Scenario>,
    smoke: bool,
    json: Option<PathBuf>,
    (chaos_secs, chaos_warmup_secs): (u64, u64),
    (hive_router, router_cpus): (Option<PathBuf>, String),
) -> anyhow::Result<()> {
    if scenarios.contains(&Scenario::All) {
        scenarios = vec![
            Scenario::Chattiness,
            Scenario::Batching,
            Scenario::Parallelism,
            Scenario::Throughput,
            Scenario::Overhead,
            Scenario::Isolation,
            Scenario::ById,
            Scenario::Scripts,
            Scenario::Reload,
        ];
    }
    // The federation scenario brings its own subgraphs and routers.
    let env = if scenarios.iter().all(|s| *s == Scenario::Federation) {
        None
    } else {
        Some(scenarios::Env::start(smoke)?)
    };
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "# facade-bench{} — commit {commit}, {} cores\n",
        if smoke { " (smoke)" } else { "" },
        num_cpus()
    );
    let mut all = serde_json::Map::new();
    for scenario in scenarios {
        if scenario == Scenario::Federation {
            let report = federation::federation(smoke, hive_router.clone(), &router_cpus).await?;
            println!("## {}\n\n{}\n", report.name, report.table);
            all.insert(report.name.to_owned(), report.figures);
            continue;
        }
        let Some(env) = &env else { unreachable!("started above for every other scenario") };
        let report = match scenario {
            Scenario::Chattiness => scenarios::chattiness(env).await?,
            Scenario::Batching => scenarios::batching(env).await?,
            Scenario::Parallelism => scenarios::parallelism(env).await?,
            Scenario::Throughput => scenarios::throughput(env).await?,
            Scenario::Overhead => scenarios::overhead(env).await?,
            Scenario::Isolation => scenarios::isolation(env).await?,
            Scenario::ById => scenarios::by_id(env).await?,
            Scenario::Scripts => scenarios::scripts(env).await?,
            Scenario::Reload => scenarios::reload(env).await?,
            Scenario::Chaos => chaos::chaos(env, chaos_secs, chaos_warmup_secs).await?,
            Scenario::All | Scenario::Federation => unreachable!("expanded or run above"),
        };
        println!("## {}\n\n{}\n", report.name, report.table);
        all.insert(report.name.to_owned(), report.figures);
    }
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
