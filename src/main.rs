//! The `facade` command: thin on purpose. Parses flags, loads config, starts telemetry and
//! hands over to `facade::app` or the tool commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use facade::config::{Config, LogConfig, LogFormat};
use facade::demo::{DEFAULT_BASE_PORT, DemoBackends, DemoOptions, Faults};

/// mimalloc instead of the system allocator: glibc's arenas contended on a lock when memory
/// allocated on one worker thread is freed on another (about a third of server CPU in a
/// profile of the home query; see docs/benchmarks-history.md). Built with `no_thp`: otherwise it asks
/// for transparent huge pages on its arenas, and every 2 MiB page touched stays resident
/// (idle RSS 54 MiB instead of 28 MiB; benchmarks-history.md §15).
#[global_allocator]
static ALLOCATOR: facade::alloc::Mimalloc = facade::alloc::Mimalloc;

/// Facade: a GraphQL composition server for device APIs.
///
/// Devices make one request per screen; Facade runs it on a facade schema bound to backend
/// services in SDL (`schema/*.graphql`), fetching from backends in parallel and batched.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Examples:\n  \
    facade serve --demo                     demo backends, a SQLite registry, sample endpoints\n  \
    curl 'localhost:8080/v1/tv/home?profileId=1'\n  \
    facade token create --admin             a first admin token for a fresh install\n  \
    facade publish resolvers-js/endpoints   publish endpoints (FACADE_URL, FACADE_TOKEN)\n  \
    facade schema check                     check schema/*.graphql before it ships\n  \
    facade schema diff schema next-schema   what a change breaks, by endpoint version\n\n\
    Docs: README.md, docs/ (endpoints, schema, scripts, resilience, configuration)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    ///
    /// Reads `facade.toml` (or --config) and FACADE_* environment variables (`__` between
    /// levels, e.g. FACADE_LOG__FORMAT=json), loads the schema folder and listens.
    Serve {
        /// Config file (default: ./facade.toml if present).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Folder holding the facade schema (*.graphql) [default: schema].
        #[arg(long, value_name = "DIR")]
        schema: Option<PathBuf>,
        /// Also start the demo backends in-process on loopback and bind the schema to them.
        #[arg(long)]
        demo: bool,
        /// Log format.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Run only the demo backends (members, lists, catalog, artwork, ratings, history) on
    /// consecutive ports, for a Facade started without --demo or for load tests.
    DemoBackends {
        /// Port of the first backend; the others follow in order. 0 lets the OS pick each.
        #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Latency added to every request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Extra random latency up to this many milliseconds.
        #[arg(long, default_value_t = 0)]
        jitter_ms: u64,
        /// Share of requests answered with HTTP 500 (0.0 to 1.0).
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
    },
    /// A script worker (started by `facade serve`, not by hand): runs transforms and `@js`
    /// functions sent as frames on standard input, one at a time.
    #[command(hide = true)]
    ScriptWorker(facade::scripts::worker::WorkerArgs),
    /// The facade schema: check, diff, publish, reload, usage.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Admin and team tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Apply the registry's database migrations (serve does it too, at start).
    Migrate {
        /// Config file (default: ./facade.toml if present); the database is [database] url.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Publish every <client>/<name>.graphql in DIR (with <name>.js beside it, if any)
    /// through the admin API of a running Facade. Unchanged files keep their version.
    Publish {
        /// Folder of <client>/<name>.graphql files.
        dir: PathBuf,
        #[command(flatten)]
        api: Api,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Endpoints of a running Facade.
    Endpoints {
        #[command(subcommand)]
        command: EndpointsCommand,
    },
    /// Change which versions of an endpoint devices get.
    Rollout {
        /// CLIENT/NAME, such as tv/home.
        endpoint: String,
        /// Stable version.
        #[arg(long, conflicts_with_all = ["promote", "rollback"], required_unless_present_any = ["promote", "rollback"])]
        stable: Option<i64>,
        /// Canary version.
        #[arg(long, requires = "stable")]
        canary: Option<i64>,
        /// Share of devices on the canary, 0 to 100.
        #[arg(long, default_value_t = 0, requires = "canary")]
        percent: i64,
        /// Make the canary the stable version.
        #[arg(long, conflicts_with = "rollback")]
        promote: bool,
        /// Drop the canary, or go back to the previous stable version.
        #[arg(long)]
        rollback: bool,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: Api,
    },
}

/// Where the admin API is and how to authenticate.
#[derive(clap::Args)]
struct Api {
    /// Base URL of a running Facade.
    #[arg(long, env = "FACADE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin or team token.
    #[arg(long, env = "FACADE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum EndpointsCommand {
    /// List endpoints with their stable and canary versions.
    List {
        #[command(flatten)]
        api: Api,
    },
    /// Print the TypeScript types of an endpoint's `data` and of its transform's `ctx`, to
    /// write and check a transform in TypeScript against: of a stored version
    /// (`CLIENT/ENDPOINT[@VERSION]`, the latest without one, on the schema the server runs),
    /// or of a document not published yet (`--document FILE`, on `--schema DIR`).
    Types {
        /// CLIENT/ENDPOINT or CLIENT/ENDPOINT@VERSION.
        #[arg(required_unless_present = "document", conflicts_with = "document")]
        endpoint: Option<String>,
        /// A GraphQL document instead, read from this file.
        #[arg(long, value_name = "FILE")]
        document: Option<PathBuf>,
        /// With --document: the schema folder to type it on.
        #[arg(long, value_name = "DIR", default_value = "schema")]
        schema: PathBuf,
        /// With --document: the operation to type, when it holds several.
        #[arg(long, value_name = "NAME")]
        operation: Option<String>,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token in the registry database and print it (only this once; the database
    /// keeps its SHA-256). `--admin` for a first admin token of a fresh install.
    Create {
        /// An admin token: may do everything.
        #[arg(long, conflicts_with = "team", required_unless_present = "team")]
        admin: bool,
        /// A team token: may touch only that team's clients.
        #[arg(long)]
        team: Option<String>,
        /// A name for the token in the audit log.
        #[arg(long, default_value = "cli")]
        label: String,
        /// Let the token expire by itself after this long (`30d`, `12h`); without it, it
        /// works until revoked (`DELETE /admin/v1/tokens/{id}`).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Config file (default: ./facade.toml if present); the database is [database] url.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Make a random admin token without a database: prints the token and the hash line for
    /// facade.toml's [admin] token_sha256 (a bootstrap or break-glass token).
    New,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Check every *.graphql file and list every problem with file:line:column.
    Check {
        /// Folder holding the facade schema.
        #[arg(long, value_name = "DIR", default_value = "schema")]
        schema: PathBuf,
        /// Folder whose *.js files export the functions of @js fields.
        #[arg(long, value_name = "DIR", default_value = "resolvers-js")]
        resolvers: PathBuf,
        /// Also validate every stored endpoint version against this schema, so a change that
        /// would break a published document is caught before it ships. The registry is the
        /// `[database] url` of the config (or FACADE_DATABASE__URL).
        #[arg(long)]
        against_registry: bool,
        /// Config file, for --against-registry (default: ./facade.toml if present).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Every change between two schemas, classified breaking, dangerous or safe, with the
    /// live endpoint versions each one affects (read from the registry of the config).
    /// Fails when a breaking change affects a live version.
    ///
    /// OLD and NEW are folders of *.graphql, `registry` (the published version instances
    /// run) or `registry:N`.
    Diff {
        old: String,
        new: String,
        /// Print JSON (for CI) instead of text.
        #[arg(long)]
        json: bool,
        /// Config file, for the registry (default: ./facade.toml if present).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Publish a folder as the schema of every instance that runs with
    /// `[schema] source = "registry"` (checked against every live version first).
    Publish {
        /// Folder holding the facade schema.
        dir: PathBuf,
        #[command(flatten)]
        api: Api,
        /// Why, for the audit log (required with --force).
        #[arg(long)]
        reason: Option<String>,
        /// Apply even if live endpoint versions break (they stop being served).
        #[arg(long)]
        force: bool,
    },
    /// Ask a running server to read its schema again (as SIGHUP or a file change does).
    Reload {
        #[command(flatten)]
        api: Api,
        /// Why, for the audit log (required with --force).
        #[arg(long)]
        reason: Option<String>,
        /// Apply even if live endpoint versions break (they stop being served).
        #[arg(long)]
        force: bool,
    },
    /// Compose subgraph SDLs (Apollo Federation) into one supergraph (Federation 2, join
    /// v0.3), the file a federated schema is loaded from. Problems are listed as
    /// `subgraph:line:column: reason`.
    ///
    /// Each subgraph is NAME=SOURCE: a file of SDL, or the subgraph's http(s) URL (asked for
    /// `{ _service { sdl } }`; the URL is also where the supergraph routes to it).
    Compose {
        #[arg(required = true, value_name = "NAME=SOURCE")]
        subgraphs: Vec<String>,
        /// Where a subgraph read from a file is reached, as NAME=URL (repeatable).
        #[arg(long = "url", value_name = "NAME=URL")]
        urls: Vec<String>,
        /// Write the supergraph here instead of printing it.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Which live endpoint versions use each type, field and argument, with their calls in
    /// the last hour, and the deprecated fields still in use by client.
    Usage {
        #[command(flatten)]
        api: Api,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // reqwest is built without a default TLS provider; install ring before any client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schema { command: SchemaCommand::Check { schema, resolvers, against_registry, config } } => {
            check(&schema, &resolvers).and_then(|()| {
                if !against_registry {
                    return Ok(());
                }
                runtime().and_then(|rt| {
                    rt.block_on(async {
                        let config = Config::load(config.as_deref())?;
                        facade::cli::check_against_registry(&config, &schema, &resolvers).await
                    })
                })
            })
        }
        Command::Schema { command: SchemaCommand::Diff { old, new, json, config } } => {
            runtime().and_then(|rt| {
                rt.block_on(async {
                    let config = Config::load(config.as_deref())?;
                    facade::cli::schema_diff(&config, &old, &new, json).await
                })
            })
        }
        Command::Schema { command: SchemaCommand::Publish { dir, api, reason, force } } => runtime()
            .and_then(|rt| {
                rt.block_on(async {
                    let client = facade::cli::AdminClient::new(&api.url, api.token)?;
                    facade::cli::schema_publish(&client, &dir, reason.as_deref(), force).await
                })
            }),
        Command::Schema { command: SchemaCommand::Reload { api, reason, force } } => {
            runtime().and_then(|rt| {
                rt.block_on(async {
                    let client = facade::cli::AdminClient::new(&api.url, api.token)?;
                    facade::cli::schema_reload(&client, reason.as_deref(), force).await
                })
            })
        }
        Command::Schema { command: SchemaCommand::Compose { subgraphs, urls, out } } => runtime()
            .and_then(|rt| rt.block_on(facade::cli::schema_compose(&subgraphs, &urls, out.as_deref()))),
        Command::Schema { command: SchemaCommand::Usage { api, json } } => runtime().and_then(|rt| {
            rt.block_on(async {
                let client = facade::cli::AdminClient::new(&api.url, api.token)?;
                facade::cli::schema_usage(&client, json).await
            })
        }),
        Command::Token { command: TokenCommand::New } => new_token(),
        Command::Token { command: TokenCommand::Create { admin: _, team, label, expires_in, config } } => {
            runtime().and_then(|rt| {
                rt.block_on(async {
                    let config = Config::load(config.as_deref())?;
                    facade::cli::create_token(&config, team.as_deref(), &label, expires_in).await
                })
            })
        }
        Command::Migrate { config } => runtime().and_then(|rt| {
            rt.block_on(async {
                let config = Config::load(config.as_deref())?;
                facade::cli::migrate(&config).await
            })
        }),
        Command::Publish { dir, api, reason } => runtime().and_then(|rt| {
            rt.block_on(async {
                let client = facade::cli::AdminClient::new(&api.url, api.token)?;
                facade::cli::publish(&client, &dir, reason.as_deref()).await
            })
        }),
        Command::Endpoints {
            command: EndpointsCommand::Types { endpoint, document, schema, operation, api },
        } => runtime().and_then(|rt| {
            rt.block_on(async {
                let types = match (endpoint, document) {
                    (Some(endpoint), _) => {
                        let client = facade::cli::AdminClient::new(&api.url, api.token)?;
                        facade::cli::endpoint_types(&client, &endpoint).await?
                    }
                    (None, Some(file)) => {
                        let text = std::fs::read_to_string(&file)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                        let what = file.display().to_string();
                        facade::cli::document_types(&schema, &text, operation.as_deref(), &what)
                            .await
                            .map_err(|errors| anyhow::anyhow!("{what}: {}", errors.join("\n")))?
                    }
                    (None, None) => unreachable!("clap requires one"),
                };
                print!("{types}");
                Ok(())
            })
        }),
        Command::Endpoints { command: EndpointsCommand::List { api } } => runtime().and_then(|rt| {
            rt.block_on(async {
                let client = facade::cli::AdminClient::new(&api.url, api.token)?;
                facade::cli::list_endpoints(&client).await
            })
        }),
        Command::Rollout { endpoint, stable, canary, percent, promote, rollback, reason, api } => {
            use facade::cli::RolloutChange;
            let change = match (promote, rollback, stable) {
                (true, _, _) => RolloutChange::Promote,
                (_, true, _) => RolloutChange::Rollback,
                (_, _, Some(stable)) => RolloutChange::Set { stable, canary, percent },
                _ => unreachable!("clap requires --stable, --promote or --rollback"),
            };
            runtime().and_then(|rt| {
                rt.block_on(async {
                    let client = facade::cli::AdminClient::new(&api.url, api.token)?;
                    facade::cli::rollout(&client, &endpoint, change, reason.as_deref()).await
                })
            })
        }
        Command::Serve { config, listen, schema, demo, log_format } => {
            runtime().and_then(|rt| rt.block_on(serve(config, listen, schema, demo, log_format)))
        }
        Command::ScriptWorker(args) => {
            facade::alloc::tune_for_server();
            args.run().context("script worker")
        }
        Command::DemoBackends { base_port, seed, latency_ms, jitter_ms, error_rate } => {
            let faults = Faults { latency_ms, jitter_ms, error_rate, ..Faults::default() };
            runtime().and_then(|rt| rt.block_on(demo_backends(DemoOptions { seed, base_port, faults })))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the tokio runtime")
}

fn new_token() -> anyhow::Result<()> {
    let (token, hash) = facade::http::auth::new_token().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    println!("token: {token}");
    println!("# facade.toml (or FACADE_ADMIN__TOKEN_SHA256='[\"{hash}\"]'):");
    println!("[admin]\ntoken_sha256 = [\"{hash}\"]");
    Ok(())
}

fn check(dir: &std::path::Path, resolvers: &std::path::Path) -> anyhow::Result<()> {
    let schema = facade::graphql::check_dir(dir)?;
    facade::graphql::check_js_functions(&schema, resolvers)?;
    let fields: usize = schema
        .types
        .values()
        .map(|t| match t {
            facade::graphql::model::TypeDef::Object { fields, .. } => fields.len(),
            _ => 0,
        })
        .sum();
    println!(
        "{}: ok ({} types, {} fields, {} backends)",
        dir.display(),
        schema.types.len(),
        fields,
        schema.backends.len()
    );
    Ok(())
}

async fn serve(
    config_file: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    schema: Option<PathBuf>,
    demo: bool,
    log_format: Option<LogFormat>,
) -> anyhow::Result<()> {
    let mut config = Config::load(config_file.as_deref())?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(schema) = schema {
        config.schema_dir = schema;
    }
    if let Some(format) = log_format {
        config.log.format = format;
    }
    config.demo.enabled |= demo;
    let _traces = facade::telemetry::init(&config.log, &config.telemetry);
    let app = facade::app::App::build(&config).await?;
    if let Some(demo) = app.demo() {
        for b in demo.info() {
            tracing::info!(backend = b.name, url = %b.base_url, "demo backend listening");
        }
    }
    tracing::info!(address = %app.local_addr(), schema = %config.schema_dir.display(), "facade listening");
    // One machine-readable line on stdout, for scripts and the benchmark harness.
    println!("facade listening on http://{}", app.local_addr());
    app.run_until(facade::app::shutdown_signal()).await?;
    Ok(())
}

async fn demo_backends(options: DemoOptions) -> anyhow::Result<()> {
    let _ = facade::telemetry::init(&LogConfig::default(), &Default::default());
    let demo = DemoBackends::start(&options).await?;
    for b in demo.info() {
        tracing::info!(backend = b.name, url = %b.base_url, "demo backend listening");
    }
    // One machine-readable line on stdout: the backends and their URLs, as JSON.
    println!("{}", serde_json::to_string(&demo.info())?);
    facade::app::shutdown_signal().await;
    Ok(())
}
