//! `sundial serve`: layered configuration (defaults < TOML file < `SUNDIAL_*` environment < flags), first-run setup
//! (data directory, database, agent `default`, the admin key printed once), then the engine and the HTTP server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::Duration;
use clap::Args;
use serde::Deserialize;
use sundial_api::auth::{create_key, hash_key};
use sundial_sandbox::{Pool, PoolConfig};
use sundial_scheduler::{Engine, EngineConfig, SystemClock};
use sundial_store::{Agent, SqliteStore, Store};

/// Flags of `sundial serve`; each also reads a `SUNDIAL_*` variable and the config file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Config file (TOML). Default: `<data-dir>/sundial.toml` when it exists.
    #[arg(long, env = "SUNDIAL_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database and state live. Default: `./sundial-data`.
    #[arg(long, env = "SUNDIAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on. Default: `127.0.0.1:7777`.
    #[arg(long, env = "SUNDIAL_LISTEN")]
    listen: Option<SocketAddr>,
    /// Sandbox worker processes. Default: 8 (a worker waits on the store around each run, so more workers than
    /// cores keep the cores busy).
    #[arg(long, env = "SUNDIAL_WORKERS")]
    workers: Option<usize>,
    /// Largest job timeout in seconds. Default: 600.
    #[arg(long, env = "SUNDIAL_MAX_TIMEOUT")]
    max_timeout: Option<u32>,
    /// JS heap cap per execution in MiB. Default: 64.
    #[arg(long, env = "SUNDIAL_MEMORY_LIMIT_MB")]
    memory_limit_mb: Option<usize>,
    /// Smallest interval in seconds. Default: 1.
    #[arg(long, env = "SUNDIAL_MIN_INTERVAL")]
    min_interval: Option<u64>,
    /// Log format: `text` or `json`. Default: text.
    #[arg(long, env = "SUNDIAL_LOG_FORMAT")]
    log_format: Option<String>,
    /// Database: a PostgreSQL URL (`postgres://user@host:5432/db`) for several nodes on one database; TLS as libpq
    /// reads it (`?sslmode=verify-full&sslrootcert=/path/ca.pem`). Default: the embedded SQLite file
    /// `<data-dir>/sundial.db`.
    #[arg(long, env = "SUNDIAL_DATABASE")]
    database: Option<String>,
    /// PostgreSQL schema to use (created if missing). Default: public.
    #[arg(long, env = "SUNDIAL_DATABASE_SCHEMA")]
    database_schema: Option<String>,
    /// Seconds a node holds a claim or a running execution without a heartbeat; another node takes over after it.
    /// Default: 10.
    #[arg(long, env = "SUNDIAL_LEASE_SECONDS")]
    lease_seconds: Option<u32>,
    /// Active jobs one agent may have. Default: 100000.
    #[arg(long, env = "SUNDIAL_MAX_ACTIVE_JOBS")]
    max_active_jobs: Option<u64>,
    /// Jobs one agent may create per minute. Default: 100000.
    #[arg(long, env = "SUNDIAL_MAX_CREATIONS_PER_MINUTE")]
    max_creations_per_minute: Option<u32>,
    /// Seconds running executions get to finish when the server stops (SIGTERM or Ctrl-C); a second signal stops
    /// at once. Default: 30.
    #[arg(long, env = "SUNDIAL_SHUTDOWN_GRACE")]
    shutdown_grace: Option<u64>,
}

/// The config file's keys (all optional), named like the flags with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    workers: Option<usize>,
    max_timeout: Option<u32>,
    memory_limit_mb: Option<usize>,
    min_interval: Option<u64>,
    log_format: Option<String>,
    max_active_jobs: Option<u64>,
    max_creations_per_minute: Option<u32>,
    database: Option<String>,
    database_schema: Option<String>,
    lease_seconds: Option<u32>,
    shutdown_grace: Option<u64>,
}

/// The resolved configuration.
#[derive(Debug)]
struct Settings {
    data_dir: PathBuf,
    listen: SocketAddr,
    workers: usize,
    max_timeout: u32,
    memory_limit_mb: usize,
    min_interval: u64,
    log_format: String,
    max_active_jobs: u64,
    max_creations_per_minute: u32,
    database: Option<String>,
    database_schema: Option<String>,
    lease_seconds: u32,
    shutdown_grace: u64,
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

fn resolve(args: ServeArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => {
            let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from("sundial-data"));
            let default = data_dir.join("sundial.toml");
            if default.exists() {
                read_config(&default)?
            } else {
                ConfigFile::default()
            }
        }
    };
    let settings = Settings {
        data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("sundial-data")),
        listen: args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7777))),
        workers: args.workers.or(file.workers).unwrap_or(8),
        max_timeout: args.max_timeout.or(file.max_timeout).unwrap_or(600),
        memory_limit_mb: args.memory_limit_mb.or(file.memory_limit_mb).unwrap_or(64),
        min_interval: args.min_interval.or(file.min_interval).unwrap_or(1),
        log_format: args.log_format.or(file.log_format).unwrap_or_else(|| "text".into()),
        max_active_jobs: args.max_active_jobs.or(file.max_active_jobs).unwrap_or(100_000),
        max_creations_per_minute: args.max_creations_per_minute.or(file.max_creations_per_minute).unwrap_or(100_000),
        database: args.database.or(file.database),
        database_schema: args.database_schema.or(file.database_schema),
        lease_seconds: args.lease_seconds.or(file.lease_seconds).unwrap_or(10),
        shutdown_grace: args.shutdown_grace.or(file.shutdown_grace).unwrap_or(30),
    };
    if settings.lease_seconds < 2 {
        bail!("lease_seconds: must be at least 2");
    }
    if let Some(url) = &settings.database {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!(
                "database: expected a postgres:// URL, got {url:?} (leave it unset for the embedded SQLite database)"
            );
        }
    }
    if settings.workers == 0 || settings.workers > 1024 {
        bail!("workers: must be between 1 and 1024, got {}", settings.workers);
    }
    if settings.max_timeout == 0 {
        bail!("max_timeout: must be at least 1 second");
    }
    if settings.memory_limit_mb < 8 {
        bail!("memory_limit_mb: must be at least 8");
    }
    if !matches!(settings.log_format.as_str(), "text" | "json") {
        bail!("log_format: must be text or json, got {:?}", settings.log_format);
    }
    Ok(settings)
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUNDIAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Creates agent `default` and the admin key on the first start; honours `SUNDIAL_API_KEY`. Several nodes starting
/// together on one database may race here: whoever loses finds the winner's rows.
async fn first_run(store: &dyn Store) -> anyhow::Result<()> {
    let configured = std::env::var("SUNDIAL_API_KEY").ok().filter(|key| !key.trim().is_empty());
    if store.agent_get("default").await?.is_none() {
        match store.agent_insert(&Agent::new("default", chrono::Utc::now())).await {
            Ok(()) | Err(sundial_store::StoreError::Conflict(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    if let Some(key) = &configured {
        if store.key_find(&hash_key(key)).await?.is_none() {
            let created = create_key(store, Some("default"), None, true, Some(key.clone())).await;
            if created.is_err() && store.key_find(&hash_key(key)).await?.is_none() {
                anyhow::bail!(
                    "cannot store the admin key: {}",
                    created.err().map(|error| error.message).unwrap_or_default()
                );
            }
            eprintln!("sundial: admin key taken from SUNDIAL_API_KEY");
        }
        return Ok(());
    }
    if store.admin_key_count().await? == 0 {
        let (_, secret) = create_key(store, Some("default"), None, true, None)
            .await
            .map_err(|error| anyhow::anyhow!("{}", error.message))?;
        println!("sundial: first start — created agent \"default\" and its admin key (shown once, keep it):");
        println!("  SUNDIAL_API_KEY={secret}");
    }
    Ok(())
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = resolve(args)?;
    init_logging(&settings.log_format);
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data directory {}", settings.data_dir.display()))?;
    // Every client (webhooks, fetch, PostgreSQL) is built after this.
    sundial_scheduler::outbound::tls_ready();
    let store: Arc<dyn Store> = match &settings.database {
        Some(url) => {
            let store = match &settings.database_schema {
                Some(schema) => sundial_store_postgres::PostgresStore::connect_schema(url, 16, schema).await,
                None => sundial_store_postgres::PostgresStore::connect(url, 16).await,
            };
            Arc::new(store.context("cannot connect to the PostgreSQL database")?)
        }
        None => {
            let database = settings.data_dir.join("sundial.db");
            let store = SqliteStore::open(&database);
            Arc::new(store.with_context(|| format!("cannot open database {}", database.display()))?)
        }
    };
    first_run(store.as_ref()).await?;

    let program = std::env::current_exe().context("cannot find the sundial executable for sandbox workers")?;
    let mut pool_config = PoolConfig::new(program, vec!["worker".into()]);
    pool_config.workers = settings.workers;
    pool_config.memory_limit_bytes = settings.memory_limit_mb * 1024 * 1024;
    let pool = Pool::start(pool_config).await.context("cannot start sandbox workers")?;

    let mut config = EngineConfig {
        max_timeout_seconds: settings.max_timeout,
        max_active_jobs_per_agent: settings.max_active_jobs,
        max_creations_per_minute: settings.max_creations_per_minute,
        single_node: settings.database.is_none(),
        ..EngineConfig::default()
    };
    config.schedule_limits.min_interval_seconds = settings.min_interval;
    config.lease = Duration::seconds(i64::from(settings.lease_seconds));
    let engine = Engine::new(store, Arc::new(SystemClock), pool.clone(), config);
    let scheduler = engine.start().await.context("cannot start the scheduler")?;

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    println!("sundial: listening on http://{address} (data in {})", settings.data_dir.display());
    tracing::info!(%address, "listening");
    let router = sundial_api::router(engine.clone());
    sundial_api::serve(listener, router, 4096, shutdown_signal()).await?;
    let grace = std::time::Duration::from_secs(settings.shutdown_grace);
    tracing::info!(
        grace_seconds = settings.shutdown_grace,
        "stopping: running executions may finish (a second signal stops at once)"
    );
    tokio::spawn(async {
        shutdown_signal().await;
        eprintln!("sundial: second signal: stopping at once");
        std::process::exit(130);
    });
    let drained = scheduler.drain(grace).await;
    if drained.unfinished > 0 {
        tracing::warn!(
            unfinished = drained.unfinished,
            "grace period over: unfinished runs are abandoned and retried when their lease ends"
        );
    }
    tracing::info!(handed_back = drained.handed_back, "stopped");
    pool.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
