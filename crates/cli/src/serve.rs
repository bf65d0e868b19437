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
    /// Executions one agent runs at once on this node, so that other agents' runs always find a sandbox worker.
    /// Default: three quarters of the workers.
    #[arg(long, env = "SUNDIAL_MAX_RUNS_PER_AGENT")]
    max_runs_per_agent: Option<usize>,
    /// Seconds a client may take to send a request's headers. Default: 10.
    #[arg(long, env = "SUNDIAL_HEADER_READ_TIMEOUT")]
    header_read_timeout: Option<u64>,
    /// Connections the server holds at once. Default: 4096.
    #[arg(long, env = "SUNDIAL_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Connections one client address holds at once (behind a reverse proxy, raise it, or list the proxy in
    /// trusted_proxies). Default: 256.
    #[arg(long, env = "SUNDIAL_MAX_CONNECTIONS_PER_CLIENT")]
    max_connections_per_client: Option<usize>,
    /// Connections of one client address still sending their request headers. Default: 32.
    #[arg(long, env = "SUNDIAL_MAX_PENDING_CONNECTIONS_PER_CLIENT")]
    max_pending_connections_per_client: Option<usize>,
    /// Failed authentications (API keys, dashboard sign-ins) one client address may make per minute; past them it
    /// gets 429. Default: 30.
    #[arg(long, env = "SUNDIAL_AUTH_FAILURES_PER_MINUTE")]
    auth_failures_per_minute: Option<u32>,
    /// The URL clients reach the server at, e.g. `https://sundial.example.com` (with `https://`, the dashboard's
    /// cookies are `Secure` and `__Host-` prefixed).
    #[arg(long, env = "SUNDIAL_PUBLIC_URL")]
    public_url: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed: addresses or networks,
    /// comma-separated (`10.0.0.0/8,::1`). Default: none.
    #[arg(long, env = "SUNDIAL_TRUSTED_PROXIES")]
    trusted_proxies: Option<String>,
    /// Seconds a dashboard session lasts after sign-in. Default: 43200.
    #[arg(long, env = "SUNDIAL_SESSION_LIFETIME")]
    session_lifetime: Option<u64>,
    /// A file holding the secret key that encrypts agents' env values at rest (as `SUNDIAL_SECRET_KEY` does; at
    /// least 16 bytes). Default: none (values are stored as set).
    #[arg(long, env = "SUNDIAL_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
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
    max_runs_per_agent: Option<usize>,
    header_read_timeout: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    max_pending_connections_per_client: Option<usize>,
    auth_failures_per_minute: Option<u32>,
    public_url: Option<String>,
    trusted_proxies: Option<String>,
    session_lifetime: Option<u64>,
    secret_key_file: Option<PathBuf>,
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
    max_runs_per_agent: Option<usize>,
    connections: sundial_api::ConnectionLimits,
    auth_failures_per_minute: u32,
    public_url: Option<String>,
    trusted_proxies: Vec<sundial_api::Network>,
    session_lifetime: u64,
    secret_key_file: Option<PathBuf>,
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
        max_runs_per_agent: args.max_runs_per_agent.or(file.max_runs_per_agent),
        connections: sundial_api::ConnectionLimits {
            max_connections: args.max_connections.or(file.max_connections).unwrap_or(4096),
            per_client: args.max_connections_per_client.or(file.max_connections_per_client).unwrap_or(256),
            pending_per_client: args
                .max_pending_connections_per_client
                .or(file.max_pending_connections_per_client)
                .unwrap_or(32),
            header_read_timeout: std::time::Duration::from_secs(
                args.header_read_timeout.or(file.header_read_timeout).unwrap_or(10),
            ),
        },
        auth_failures_per_minute: args.auth_failures_per_minute.or(file.auth_failures_per_minute).unwrap_or(30),
        public_url: args.public_url.or(file.public_url),
        trusted_proxies: match args.trusted_proxies.or(file.trusted_proxies) {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .filter(|entry| !entry.trim().is_empty())
                .map(|entry| entry.parse().map_err(|error: String| anyhow::anyhow!("trusted_proxies: {error}")))
                .collect::<anyhow::Result<_>>()?,
        },
        session_lifetime: args.session_lifetime.or(file.session_lifetime).unwrap_or(12 * 3600),
        secret_key_file: args.secret_key_file.or(file.secret_key_file),
    };
    if settings.max_runs_per_agent == Some(0) {
        bail!("max_runs_per_agent: must be at least 1");
    }
    let limits = &settings.connections;
    if limits.max_connections == 0 || limits.per_client == 0 || limits.pending_per_client == 0 {
        bail!("max_connections, max_connections_per_client and max_pending_connections_per_client: must be at least 1");
    }
    if limits.header_read_timeout.is_zero() {
        bail!("header_read_timeout: must be at least 1 second");
    }
    if settings.auth_failures_per_minute == 0 || settings.session_lifetime == 0 {
        bail!("auth_failures_per_minute and session_lifetime: must be at least 1");
    }
    if let Some(url) = &settings.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("public_url: expected an http:// or https:// URL, got {url:?}");
        }
    }
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

/// Creates agent `default` and, unless `SUNDIAL_API_KEY` sets one, the admin key on the first start. Several nodes
/// starting together on one database may race here: whoever loses finds the winner's rows.
///
/// The admin key `SUNDIAL_API_KEY` sets is configuration, checked in memory and never stored; a copy an earlier
/// version stored (as an unsalted hash) is revoked, which forgets its hash.
async fn first_run(store: &dyn Store, configured: Option<&str>) -> anyhow::Result<()> {
    if store.agent_get("default").await?.is_none() {
        match store.agent_insert(&Agent::new("default", chrono::Utc::now())).await {
            Ok(()) | Err(sundial_store::StoreError::Conflict(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    if let Some(key) = configured {
        if let Some(stored) = store.key_find(&hash_key(key)).await? {
            let agent = stored.agent_id.as_deref().unwrap_or("default");
            store.key_revoke(agent, &stored.id, chrono::Utc::now()).await?;
        }
        eprintln!("sundial: admin key taken from SUNDIAL_API_KEY");
        return Ok(());
    }
    if store.admin_key_count().await? == 0 {
        let (_, secret) = create_key(store, Some("default"), None, true)
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
    // What the server writes (the database, its journal, backups) is for its own user alone.
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    raise_open_files_limit();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data directory {}", settings.data_dir.display()))?;
    keep_private(&settings.data_dir, 0o700)?;
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
            let store = store.with_context(|| format!("cannot open database {}", database.display()))?;
            // Files an earlier version made readable by others.
            for suffix in ["", "-wal", "-shm"] {
                let file = settings.data_dir.join(format!("sundial.db{suffix}"));
                if file.exists() {
                    keep_private(&file, 0o600)?;
                }
            }
            Arc::new(store)
        }
    };
    let admin_key = std::env::var("SUNDIAL_API_KEY").ok().filter(|key| !key.trim().is_empty());
    first_run(store.as_ref(), admin_key.as_deref()).await?;

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
        max_runs_per_agent: settings.max_runs_per_agent,
        ..EngineConfig::default()
    };
    config.schedule_limits.min_interval_seconds = settings.min_interval;
    config.lease = Duration::seconds(i64::from(settings.lease_seconds));
    if settings.database.is_some() {
        // Each write to PostgreSQL is a round trip and a transaction: starts are marked running a little earlier and
        // gathered over 40 ms, outcomes over 20 ms, so a steady stream of runs shares far fewer writes.
        config.start_lead = Duration::milliseconds(60);
        config.start_coalesce = Duration::milliseconds(40);
        config.outcome_linger = Duration::milliseconds(20);
    }
    let engine = Engine::new(store, Arc::new(SystemClock), pool.clone(), config);
    let secrets = secret_key(&settings)?
        .map(|secret| sundial_scheduler::secrets::SecretBox::new(&secret).map_err(|error| anyhow::anyhow!("{error}")))
        .transpose()
        .context("SUNDIAL_SECRET_KEY")?;
    let sealed = engine.prepare_env(secrets).await.context("cannot read the agents' env values")?;
    if sealed > 0 {
        eprintln!("sundial: encrypted {sealed} env value(s) stored before with SUNDIAL_SECRET_KEY");
    }
    let scheduler = engine.start().await.context("cannot start the scheduler")?;

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    println!("sundial: listening on http://{address} (data in {})", settings.data_dir.display());
    tracing::info!(%address, "listening");
    let options = sundial_api::ApiOptions {
        admin_key,
        public_url: settings.public_url.clone(),
        trusted_proxies: settings.trusted_proxies.clone(),
        session_lifetime: std::time::Duration::from_secs(settings.session_lifetime),
        auth_failures_per_minute: settings.auth_failures_per_minute,
    };
    let router = sundial_api::router_with(engine.clone(), options);
    sundial_api::serve(listener, router, settings.connections, shutdown_signal()).await?;
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

/// The secret key that encrypts agents' env values: `SUNDIAL_SECRET_KEY`, or the contents of `secret_key_file`.
fn secret_key(settings: &Settings) -> anyhow::Result<Option<String>> {
    if let Some(secret) = std::env::var("SUNDIAL_SECRET_KEY").ok().filter(|secret| !secret.trim().is_empty()) {
        return Ok(Some(secret));
    }
    let Some(path) = &settings.secret_key_file else { return Ok(None) };
    let secret =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the secret key file {}", path.display()))?;
    Ok(Some(secret.trim().to_owned()))
}

/// Gives `path` the mode `mode` (the data directory 0700, its files 0600).
fn keep_private(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot make {} private (mode {mode:o})", path.display()))
}

/// Raises the soft limit of open files to the hard one: every connection and sandbox worker holds descriptors, and
/// a default soft limit of 1024 would refuse connections long before the connection limits do.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the plain struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
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
