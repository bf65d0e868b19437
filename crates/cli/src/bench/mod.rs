//! `sundial bench`: the workloads of `bench/workloads.md` (W1 burst, W2 spread, W3 recurring, W4 memory) and
//! Sundial's own W5 (a million scheduled jobs, restart) and W6 (`kill -9` during W2), run through the HTTP API.
//!
//! Each run prints one JSON line on stdout (progress goes to stderr). Without `--server` every run gets a server of
//! its own — this executable as `sundial serve` on a fresh temporary data directory — which is stopped and removed
//! at the end of the run; with `--server` the runs use that server, each as a fresh agent.

mod api;
mod server;
mod stats;
mod workloads;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::{json, Map, Value};

use api::Api;
use server::{OwnedServer, Target};

/// Flags of `sundial bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Workload: W1, W2, W3, W4, W5, W6 or all (W1 to W6 in order).
    workload: String,
    /// Use this running server (e.g. http://127.0.0.1:7777) instead of starting one per run.
    #[arg(long)]
    server: Option<String>,
    /// API key for --server: an admin key (a fresh agent is created per run), or the key of --agent.
    #[arg(long)]
    key: Option<String>,
    /// Run every workload as this existing agent instead of a fresh agent per run.
    #[arg(long)]
    agent: Option<String>,
    /// Process id of --server, to report its RSS and CPU time (null without it).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Runs of each workload (one JSON line each).
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// W5's number of scheduled jobs.
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    /// Sandbox worker processes of the server the bench starts.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Jobs per create request (at most 10000). Default: 5000; W3 1, its jobs created back to back as the workload
    /// says, so that their slots spread as their creations do (with one request, all 1,000 fall due together).
    #[arg(long)]
    batch: Option<usize>,
    /// Batch-create requests in flight at once (at most 50).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Hard wall-clock limit of one run in seconds. Default: 240, W5 1800.
    #[arg(long)]
    limit_s: Option<u64>,
    /// Keep the data directory and log of a server the bench started when its run failed.
    #[arg(long)]
    keep_failed: bool,
    /// Run the servers the bench starts on this PostgreSQL database (`postgres://user@host:5432/db`), each run in a
    /// fresh schema dropped afterwards; the JSON line then says what PostgreSQL did per execution (transactions,
    /// tuples read and written, WAL bytes, the CPU of its processes on this machine).
    #[arg(long, env = "SUNDIAL_BENCH_DATABASE")]
    database: Option<String>,
    /// Nodes the bench starts on --database (every node records, claims and runs; jobs are created and read back
    /// through the first).
    #[arg(long, env = "SUNDIAL_BENCH_NODES", default_value_t = 1)]
    nodes: usize,
    /// With --database: load this many recurring jobs due in a day, and as many finished executions of other jobs,
    /// into a schema that every run of this invocation then uses (what a database holds after long use).
    #[arg(long, default_value_t = 0)]
    backlog: i64,
}

/// One of the workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    W1,
    W2,
    W3,
    W4,
    W5,
    W6,
}

impl Workload {
    const ALL: [Workload; 6] = [Workload::W1, Workload::W2, Workload::W3, Workload::W4, Workload::W5, Workload::W6];

    fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W6 => "W6",
        }
    }

    fn parse(text: &str) -> anyhow::Result<Vec<Workload>> {
        if text.eq_ignore_ascii_case("all") {
            return Ok(Workload::ALL.to_vec());
        }
        match Workload::ALL.into_iter().find(|workload| workload.name().eq_ignore_ascii_case(text)) {
            Some(workload) => Ok(vec![workload]),
            None => bail!("workload: expected W1, W2, W3, W4, W5, W6 or all, got {text:?}"),
        }
    }

    fn default_limit(self) -> Duration {
        match self {
            Workload::W5 => Duration::from_secs(1800),
            _ => Duration::from_secs(240),
        }
    }
}

/// What a workload works with: the server, the flags, and the report it fills as it goes (so that what was
/// measured before a failure or the hard limit is still printed).
pub struct Run<'a> {
    target: &'a mut Target,
    args: &'a BenchArgs,
    workload: Workload,
    /// Unique per run: part of agent and job names.
    tag: String,
    report: Map<String, Value>,
    config: Map<String, Value>,
    /// When the run must be over.
    deadline: Instant,
    /// What PostgreSQL counts of the run's schema (runs on --database).
    database: Option<sundial_store_postgres::observe::Observer>,
}

impl BenchArgs {
    /// Jobs per create request in `workload`.
    fn batch_for(&self, workload: Workload) -> usize {
        self.batch.unwrap_or(if workload == Workload::W3 { 1 } else { 5000 })
    }
}

impl Run<'_> {
    /// Records a field of the run's JSON line.
    fn put(&mut self, key: &str, value: impl Into<Value>) {
        self.report.insert(key.to_owned(), value.into());
    }

    /// Records a field of the run's `config`.
    fn configure(&mut self, key: &str, value: impl Into<Value>) {
        self.config.insert(key.to_owned(), value.into());
    }

    /// A client of the server as the agent of `--agent`, or as a fresh agent created for this run.
    async fn agent(&mut self, label: &str) -> anyhow::Result<Api> {
        let admin = Api::new(self.target.base_url(), self.target.key(), "default")?;
        if let Some(agent) = &self.args.agent {
            return Ok(admin.as_agent(agent, self.target.key()));
        }
        let agent = format!("bench-{}-{label}", self.tag);
        let key = admin.create_agent(&agent).await?;
        Ok(admin.as_agent(&agent, &key))
    }

    /// Whether the bench started the server (and removes it with its data at the end of the run).
    fn owns_server(&self) -> bool {
        matches!(self.target, Target::Owned(_))
    }

    /// Time left before the hard limit.
    fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// What PostgreSQL counted so far, and the CPU seconds of its processes (runs on --database).
    async fn database_snapshot(&self) -> Option<(sundial_store_postgres::observe::DatabaseCounters, f64)> {
        let observer = self.database.as_ref()?;
        match observer.counters().await {
            Ok(counters) => Some((counters, server::postgres_cpu_seconds())),
            Err(error) => {
                progress(format_args!("cannot read the database's counters: {error}"));
                None
            }
        }
    }

    /// Waits until PostgreSQL has published what its sessions did (at most a second after they did it), then
    /// answers [`Run::database_snapshot`].
    async fn database_settled(&self) -> Option<(sundial_store_postgres::observe::DatabaseCounters, f64)> {
        self.database.as_ref()?;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        self.database_snapshot().await
    }

    /// Reports what PostgreSQL did per execution between two snapshots: transactions committed (in the whole
    /// database), tuples read, index scans and tuples written in the run's schema, WAL bytes and the CPU of its
    /// processes.
    fn put_database(
        &mut self,
        executions: usize,
        before: Option<(sundial_store_postgres::observe::DatabaseCounters, f64)>,
        after: Option<(sundial_store_postgres::observe::DatabaseCounters, f64)>,
    ) {
        let (Some((before, cpu_before)), Some((after, cpu_after))) = (before, after) else { return };
        let done = after.since(&before);
        let per = |value: f64| (value / executions.max(1) as f64 * 100.0).round() / 100.0;
        self.put(
            "database_per_execution",
            json!({
                "commits": per(done.commits as f64),
                "tuples_read": per(done.tuples_read as f64),
                "index_scans": per(done.index_scans as f64),
                "tuples_inserted": per(done.tuples_inserted as f64),
                "tuples_updated": per(done.tuples_updated as f64),
                "hot_updates": per(done.tuples_hot_updated as f64),
                "tuples_deleted": per(done.tuples_deleted as f64),
                "wal_bytes": per(done.wal_bytes).round(),
                "cpu_us": (per((cpu_after - cpu_before) * 1e6)).round(),
            }),
        );
    }
}

fn progress(message: impl std::fmt::Display) {
    eprintln!("bench: {message}");
}

/// Runs the chosen workloads and prints one JSON line per run.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let workloads = Workload::parse(&args.workload)?;
    if args.runs == 0 {
        bail!("runs: must be at least 1");
    }
    if let Some(batch) = args.batch.filter(|batch| *batch == 0 || *batch > 10_000) {
        bail!("batch: must be between 1 and 10000, got {batch}");
    }
    if args.concurrency == 0 || args.concurrency > 50 {
        bail!("concurrency: must be between 1 and 50, got {}", args.concurrency);
    }
    if args.server.is_some() && args.key.is_none() {
        bail!("--server needs --key (an admin key, or the key of --agent)");
    }
    if args.nodes == 0 || (args.nodes > 1 && args.database.is_none()) {
        bail!("nodes: more than one node needs --database (several nodes share a PostgreSQL database)");
    }
    if args.database.is_some() && args.server.is_some() {
        bail!("--database starts servers of the bench's own: leave out --server");
    }
    if args.backlog < 0 || (args.backlog > 0 && args.database.is_none()) {
        bail!("backlog: a number of jobs and executions to load into --database");
    }
    let backlog = match (&args.database, args.backlog) {
        (Some(url), count) if count > 0 => Some(load_backlog(url, count).await?),
        _ => None,
    };
    let mut failed = false;
    for workload in workloads {
        for run in 1..=args.runs {
            progress(format_args!("{} run {run}/{}", workload.name(), args.runs));
            let line = run_once(&args, workload, run, backlog.as_ref()).await;
            failed |= !line["error"].is_null();
            println!("{line}");
        }
    }
    if let Some((observer, _, _)) = backlog {
        if let Err(error) = observer.drop_schema().await {
            progress(format_args!("cannot drop the backlog's schema: {error}"));
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A schema that holds a backlog: its observer, its name and how long loading it took (seconds).
type Backlog = (sundial_store_postgres::observe::Observer, String, f64);

/// Makes a schema on `url` holding a backlog of `count` jobs due in a day and `count` finished executions.
async fn load_backlog(url: &str, count: i64) -> anyhow::Result<Backlog> {
    let schema = format!("bench_backlog_{}", sundial_store::new_id("b").trim_start_matches("b_"));
    let began = Instant::now();
    progress(format_args!("loading a backlog of {count} jobs and {count} finished executions into {schema}"));
    sundial_store_postgres::PostgresStore::connect_schema(url, 1, &schema)
        .await
        .map_err(|error| anyhow::anyhow!("cannot make the backlog's schema: {error}"))?
        .close();
    let observer = sundial_store_postgres::observe::Observer::new(url, &schema)
        .map_err(|error| anyhow::anyhow!("cannot reach --database: {error}"))?;
    observer
        .load_backlog("default", count, count, true)
        .await
        .map_err(|error| anyhow::anyhow!("cannot load the backlog: {error}"))?;
    let took = round3(began.elapsed().as_secs_f64());
    progress(format_args!("loaded the backlog in {took} s"));
    Ok((observer, schema, took))
}

/// One run of one workload: the server, the workload under its hard limit, and the JSON line.
async fn run_once(args: &BenchArgs, workload: Workload, run: u32, backlog: Option<&Backlog>) -> Value {
    let limit = args.limit_s.map(Duration::from_secs).unwrap_or_else(|| workload.default_limit());
    let began = Instant::now();
    let loadavg_start = server::load_average();
    let client_cpu_start = server::own_cpu_seconds();
    let client_rss_start = server::rss_mb(std::process::id());
    let tag = sundial_store::new_id("r").trim_start_matches("r_").chars().skip(12).collect::<String>();
    let schema = backlog.map_or_else(|| format!("bench_{tag}"), |(_, schema, _)| schema.clone());
    let database = args.database.as_ref().map(|url| server::Database { url: url.clone(), schema });
    let observer = match &database {
        Some(database) => match sundial_store_postgres::observe::Observer::new(&database.url, &database.schema) {
            Ok(observer) => Some(observer),
            Err(error) => return failed_line(workload, run, format!("cannot reach --database: {error}")),
        },
        None => None,
    };
    let target = match &args.server {
        Some(url) => Ok(Target::External {
            base_url: url.clone(),
            key: args.key.clone().unwrap_or_default(),
            pid: args.server_pid,
        }),
        None => OwnedServer::start(args.workers, database.as_ref(), args.nodes)
            .await
            .map(|server| Target::Owned(Box::new(server))),
    };
    let mut error: Option<String> = None;
    let mut timed_out = false;
    let mut report = Map::new();
    let mut config = Map::new();
    let (mut server_cpu, mut server_rss) = (None, (None, None));
    match target {
        Err(start_error) => error = Some(format!("{start_error:#}")),
        Ok(mut target) => {
            if let Some((_, _, took)) = backlog {
                report.insert("backlog_load_s".into(), json!(took));
            }
            let cpu_start = target.cpu_seconds();
            server_rss.0 = target.rss_mb();
            let mut context = Run {
                target: &mut target,
                args,
                workload,
                tag,
                report: Map::new(),
                config: Map::new(),
                deadline: began + limit,
                database: observer,
            };
            match tokio::time::timeout(limit.saturating_sub(began.elapsed()), workloads::run(&mut context)).await {
                Ok(Ok(())) => {}
                Ok(Err(run_error)) => error = Some(format!("{run_error:#}")),
                Err(_) => {
                    timed_out = true;
                    error = Some(format!("the run passed its hard limit of {} s", limit.as_secs()));
                }
            }
            report.extend(std::mem::take(&mut context.report));
            config = std::mem::take(&mut context.config);
            let observer = context.database.take();
            server_rss.1 = target.rss_mb();
            server_cpu = match (cpu_start, target.cpu_seconds()) {
                (Some(start), Some(end)) => Some(end - start),
                _ => None,
            };
            if let Target::Owned(server) = target {
                let keep = args.keep_failed && error.is_some();
                if let Err(stop_error) = (*server).shut_down(keep).await {
                    progress(format_args!("cannot stop the server: {stop_error:#}"));
                }
            }
            // A run's own schema goes with it; the backlog's is the invocation's.
            let own_schema = backlog.is_none() && !(args.keep_failed && error.is_some());
            if let (Some(observer), true) = (observer, own_schema) {
                if let Err(drop_error) = observer.drop_schema().await {
                    progress(format_args!("cannot drop the run's schema: {drop_error}"));
                }
            }
        }
    }
    if let Some(message) = &error {
        progress(format_args!("{} run {run} failed: {message}", workload.name()));
    }
    timed_out |= report.get("timed_out").and_then(Value::as_bool).unwrap_or(false);
    let client_cpu = match (client_cpu_start, server::own_cpu_seconds()) {
        (Some(start), Some(end)) => Some(round3(end - start)),
        _ => None,
    };
    let mut line = Map::new();
    line.insert("peer".into(), json!("sundial"));
    line.insert("peer_version".into(), json!(env!("CARGO_PKG_VERSION")));
    line.insert("workload".into(), json!(workload.name()));
    line.insert("run".into(), json!(run));
    let mut full_config = Map::new();
    full_config.insert("workers".into(), json!(args.workers));
    full_config.insert("batch_size".into(), json!(args.batch_for(workload)));
    full_config.insert("create_requests_in_flight".into(), json!(args.concurrency));
    full_config.insert(
        "server".into(),
        json!(match (&args.server, &args.database) {
            (Some(_), _) => "external".to_owned(),
            (None, None) => "own per run (fresh data dir, engine defaults)".to_owned(),
            (None, Some(_)) =>
                format!("{} own node(s) per run on PostgreSQL (a fresh schema, engine defaults)", args.nodes),
        }),
    );
    if args.database.is_some() {
        full_config.insert("store".into(), json!("postgresql"));
        full_config.insert("nodes".into(), json!(args.nodes));
        full_config.insert("backlog".into(), json!(args.backlog));
    }
    full_config.insert("agent".into(), json!(args.agent.clone().unwrap_or_else(|| "fresh per run".into())));
    full_config.insert("code".into(), json!(workloads::CODE));
    full_config.extend(config);
    line.insert("config".into(), Value::Object(full_config));
    line.insert("loadavg_start".into(), json!(loadavg_start));
    line.insert("loadavg_end".into(), json!(server::load_average()));
    line.insert("client_cpu_s".into(), json!(client_cpu));
    line.insert("server_cpu_s".into(), json!(server_cpu.map(round3)));
    line.insert("client_rss_mb_start".into(), json!(client_rss_start.map(round1)));
    line.insert("client_rss_mb_end".into(), json!(server::rss_mb(std::process::id()).map(round1)));
    line.insert("server_rss_mb_start".into(), json!(server_rss.0.map(round1)));
    line.insert("server_rss_mb_end".into(), json!(server_rss.1.map(round1)));
    line.extend(report);
    line.insert("timed_out".into(), json!(timed_out));
    line.insert("error".into(), json!(error));
    line.insert("wall_s".into(), json!(round3(began.elapsed().as_secs_f64())));
    Value::Object(line)
}

/// The line of a run that could not start.
fn failed_line(workload: Workload, run: u32, error: String) -> Value {
    progress(format_args!("{} run {run} failed: {error}", workload.name()));
    json!({"peer": "sundial", "workload": workload.name(), "run": run, "error": error})
}

fn round1(value: f64) -> f64 {
    stats::round1(value)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
