//! The server under test: one the bench starts itself (a `sundial serve` child on a fresh data directory, which it
//! can stop, `kill -9` and restart) or an existing one given by URL; and what `/proc` says about its processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux userland ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// How long a started server may take to print its address.
const STARTUP_LIMIT: Duration = Duration::from_secs(120);

/// How long a stopped server may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// The PostgreSQL database and schema the bench's servers run on.
#[derive(Clone, Debug)]
pub struct Database {
    /// `postgres://…`
    pub url: String,
    /// A schema of the run's own.
    pub schema: String,
}

/// The server a run talks to.
pub enum Target {
    /// Started by the bench for this run.
    Owned(Box<OwnedServer>),
    /// Given with `--server`; its process (for RSS and CPU) only with `--server-pid`.
    External {
        /// `http://host:port`.
        base_url: String,
        /// The admin key, or the key of `--agent`.
        key: String,
        /// Its process id, when known.
        pid: Option<u32>,
    },
}

impl Target {
    /// `http://host:port` of the server.
    pub fn base_url(&self) -> &str {
        match self {
            Target::Owned(server) => &server.base_url,
            Target::External { base_url, .. } => base_url,
        }
    }

    /// The key the bench was given (the admin key of an owned server).
    pub fn key(&self) -> &str {
        match self {
            Target::Owned(server) => &server.key,
            Target::External { key, .. } => key,
        }
    }

    /// The server's process id, when known.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Target::Owned(server) => server.pid,
            Target::External { pid, .. } => *pid,
        }
    }

    /// The owned server, or why a workload that needs one cannot run.
    pub fn owned(&mut self) -> anyhow::Result<&mut OwnedServer> {
        match self {
            Target::Owned(server) => Ok(server),
            Target::External { .. } => {
                bail!("this workload stops and restarts the server: run it without --server so the bench owns one")
            }
        }
    }

    /// CPU seconds used so far by the server and its sandbox workers (for an owned server, over all its restarts,
    /// and with every node it started).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let (earlier, peers) = match self {
            Target::Owned(server) => (
                server.earlier_cpu_seconds,
                server.peers.iter().filter_map(|peer| peer.pid.and_then(tree_cpu_seconds)).sum::<f64>(),
            ),
            Target::External { .. } => (0.0, 0.0),
        };
        match self.pid() {
            Some(pid) => tree_cpu_seconds(pid).map(|now| earlier + now + peers),
            None => matches!(self, Target::Owned(_)).then_some(earlier + peers),
        }
    }

    /// CPU seconds used so far by the server's parts (for an owned server, since its last start, over its nodes).
    pub fn cpu_parts(&self) -> Option<CpuParts> {
        let mut parts = self.pid().and_then(cpu_parts)?;
        if let Target::Owned(server) = self {
            for peer in server.peers.iter().filter_map(|peer| peer.pid.and_then(cpu_parts)) {
                parts.store += peer.store;
                parts.runtime += peer.runtime;
                parts.workers += peer.workers;
            }
        }
        Some(parts)
    }

    /// Resident set size of the server process in MB.
    pub fn rss_mb(&self) -> Option<f64> {
        self.pid().and_then(rss_mb)
    }

    /// Summed resident set size of the server's child processes (its sandbox workers) in MB.
    pub fn workers_rss_mb(&self) -> Option<f64> {
        self.pid().map(|pid| children(pid).into_iter().filter_map(rss_mb).sum())
    }

    /// Size of the SQLite database and its WAL in MB (only known for an owned server).
    pub fn database_mb(&self) -> Option<f64> {
        match self {
            Target::Owned(server) => Some(server.database_bytes() as f64 / 1e6),
            Target::External { .. } => None,
        }
    }
}

/// A `sundial serve` child process on a data directory of its own.
pub struct OwnedServer {
    executable: PathBuf,
    root: PathBuf,
    data_dir: PathBuf,
    key: String,
    workers: usize,
    child: Option<Child>,
    pid: Option<u32>,
    base_url: String,
    earlier_cpu_seconds: f64,
    /// The PostgreSQL database it runs on (the embedded SQLite file without it).
    database: Option<Database>,
    /// The other nodes on the same database.
    peers: Vec<OwnedServer>,
}

impl OwnedServer {
    /// Starts `sundial serve` (this executable) on a fresh temporary data directory with a random admin key — on
    /// `database` when given, with `nodes - 1` more nodes on it.
    pub async fn start(workers: usize, database: Option<&Database>, nodes: usize) -> anyhow::Result<OwnedServer> {
        let key = sundial_store::new_id("sk_bench");
        let mut server = OwnedServer::start_one(workers, database, &key).await?;
        for _ in 1..nodes {
            match OwnedServer::start_one(workers, database, &key).await {
                Ok(peer) => server.peers.push(peer),
                Err(error) => {
                    let _ = server.shut_down(false).await;
                    return Err(error);
                }
            }
        }
        Ok(server)
    }

    async fn start_one(workers: usize, database: Option<&Database>, key: &str) -> anyhow::Result<OwnedServer> {
        let executable = std::env::current_exe().context("cannot find the sundial executable")?;
        let root = std::env::temp_dir().join(format!("sundial-bench-{}", sundial_store::new_id("run")));
        let data_dir = root.join("data");
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let mut server = OwnedServer {
            executable,
            root,
            data_dir,
            key: key.to_owned(),
            workers,
            child: None,
            pid: None,
            base_url: String::new(),
            earlier_cpu_seconds: 0.0,
            database: database.cloned(),
            peers: Vec::new(),
        };
        if let Err(error) = server.spawn().await {
            server.remove_files(false);
            return Err(error);
        }
        Ok(server)
    }

    /// The server's log (its stderr), kept in the run's temporary directory.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Starts the server process on the data directory and waits for its `listening on` line. Returns how long
    /// that took.
    pub async fn spawn(&mut self) -> anyhow::Result<Duration> {
        if self.child.is_some() {
            bail!("the server is already running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("cannot open {}", self.log_path().display()))?;
        let mut command = Command::new(&self.executable);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--workers", &self.workers.to_string()])
            .args(self.database.iter().flat_map(|database| {
                ["--database", &database.url, "--database-schema", &database.schema].map(str::to_owned)
            }))
            .env("SUNDIAL_API_KEY", &self.key)
            .env_remove("SUNDIAL_CONFIG")
            .env_remove("SUNDIAL_DATA_DIR")
            .env_remove("SUNDIAL_LISTEN")
            .env_remove("SUNDIAL_WORKERS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        // Dropping the child kills it, but a bench that is itself killed never drops it: the kernel then ends the
        // server (gracefully; its workers follow it) when the thread that started it goes away.
        // SAFETY: `prctl` is async-signal-safe and touches no memory of the parent; nothing else runs in the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let began = Instant::now();
        let mut child = command.spawn().context("cannot start the sundial server")?;
        let pid = child.id();
        let stdout = child.stdout.take().context("the server's stdout is not piped")?;
        self.child = Some(child);
        self.pid = pid;
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(STARTUP_LIMIT, async {
            while let Some(line) = lines.next_line().await.context("cannot read the server's stdout")? {
                if let Some(rest) = line.strip_prefix("sundial: listening on ") {
                    return rest
                        .split_whitespace()
                        .next()
                        .map(str::to_owned)
                        .with_context(|| format!("no address in {line:?}"));
                }
            }
            bail!("the server exited before it listened (see {})", self.log_path().display())
        })
        .await
        .map_err(|_| anyhow::anyhow!("the server did not listen within {STARTUP_LIMIT:?}"))??;
        let elapsed = began.elapsed();
        // Keep reading stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.base_url = address;
        Ok(elapsed)
    }

    /// Stops the server with SIGTERM (SIGKILL after a while) and waits for it. Returns how long it took.
    pub async fn stop(&mut self) -> anyhow::Result<Duration> {
        let Some(mut child) = self.child.take() else { return Ok(Duration::ZERO) };
        self.account_cpu();
        let began = Instant::now();
        if let Some(pid) = self.pid.take() {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !sent.is_ok_and(|status| status.success()) {
                child.start_kill().context("cannot stop the server")?;
            }
        }
        if tokio::time::timeout(STOP_LIMIT, child.wait()).await.is_err() {
            eprintln!("bench: the server did not stop within {STOP_LIMIT:?} after SIGTERM; killing it");
            child.start_kill().context("cannot kill the server")?;
            child.wait().await.context("cannot wait for the server")?;
        }
        Ok(began.elapsed())
    }

    /// Kills the server with SIGKILL (`kill -9`) and waits for it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        self.account_cpu();
        self.pid = None;
        child.start_kill().context("cannot kill the server")?;
        child.wait().await.context("cannot wait for the killed server")?;
        Ok(())
    }

    /// Adds the CPU time of the running process to the total before it goes away.
    fn account_cpu(&mut self) {
        if let Some(seconds) = self.pid.and_then(tree_cpu_seconds) {
            self.earlier_cpu_seconds += seconds;
        }
    }

    /// Bytes of `sundial.db` and `sundial.db-wal`.
    pub fn database_bytes(&self) -> u64 {
        ["sundial.db", "sundial.db-wal"]
            .iter()
            .filter_map(|name| std::fs::metadata(self.data_dir.join(name)).ok())
            .map(|metadata| metadata.len())
            .sum()
    }

    /// Stops the server (and its peers) and removes its directory (kept, with its log, when `keep` is set).
    pub async fn shut_down(mut self, keep: bool) -> anyhow::Result<()> {
        for peer in std::mem::take(&mut self.peers) {
            if let Err(error) = Box::pin(peer.shut_down(keep)).await {
                eprintln!("bench: cannot stop a node: {error:#}");
            }
        }
        let stopped = self.stop().await;
        self.remove_files(keep);
        stopped.map(|_| ())
    }

    fn remove_files(&self, keep: bool) {
        if keep {
            eprintln!("bench: kept the server's data and log in {}", self.root.display());
        } else if let Err(error) = std::fs::remove_dir_all(&self.root) {
            eprintln!("bench: cannot remove {}: {error}", self.root.display());
        }
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces), starting with the state.
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of one process in seconds, plus cutime + cstime (its exited, reaped children) with `reaped`.
fn process_cpu_seconds(pid: &str, reaped: bool) -> Option<f64> {
    let fields = stat_fields(pid)?;
    // After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let end = if reaped { 15 } else { 13 };
    let ticks: f64 = fields.get(11..end)?.iter().filter_map(|field| field.parse::<f64>().ok()).sum();
    Some(ticks / TICKS_PER_SECOND)
}

/// The direct children of a process (the server's sandbox workers).
pub fn children(pid: u32) -> Vec<u32> {
    let parent = pid.to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()))
        .filter(|child| stat_fields(&child.to_string()).is_some_and(|fields| fields.get(1) == Some(&parent)))
        .collect()
}

/// CPU seconds of a process, its reaped children and its live children.
pub fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    let own = process_cpu_seconds(&pid.to_string(), true)?;
    let live: f64 = children(pid).into_iter().filter_map(|child| process_cpu_seconds(&child.to_string(), true)).sum();
    Some(own + live)
}

/// CPU seconds of a server by part: its SQLite writer thread, its other threads (the tokio runtime: HTTP, the
/// scheduler, the pool's hand-offs), and its sandbox workers (live, and exited ones it reaped).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuParts {
    pub store: f64,
    pub runtime: f64,
    pub workers: f64,
}

impl CpuParts {
    /// What each part used since `earlier`.
    pub fn since(&self, earlier: &CpuParts) -> CpuParts {
        CpuParts {
            store: self.store - earlier.store,
            runtime: self.runtime - earlier.runtime,
            workers: self.workers - earlier.workers,
        }
    }

    pub fn total(&self) -> f64 {
        self.store + self.runtime + self.workers
    }
}

/// The name the SQLite store gives its writer thread.
const STORE_THREAD: &str = "sundial-sqlite";

/// The server's CPU by part. The runtime's share is the process's own time less the writer thread's, so threads that
/// came and went (the blocking pool's) are counted too.
pub fn cpu_parts(pid: u32) -> Option<CpuParts> {
    let fields = stat_fields(&pid.to_string())?;
    let ticks = |range: std::ops::Range<usize>| -> f64 {
        fields.get(range).map_or(0.0, |slice| slice.iter().filter_map(|field| field.parse::<f64>().ok()).sum())
    };
    let own = ticks(11..13) / TICKS_PER_SECOND;
    let reaped = ticks(13..15) / TICKS_PER_SECOND;
    let mut store = 0.0;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else { continue };
        if &text[open + 1..close] != STORE_THREAD {
            continue;
        }
        let times: f64 =
            text[close + 1..].split_whitespace().skip(11).take(2).filter_map(|field| field.parse::<f64>().ok()).sum();
        store += times / TICKS_PER_SECOND;
    }
    let live: f64 = children(pid).into_iter().filter_map(|child| process_cpu_seconds(&child.to_string(), true)).sum();
    Some(CpuParts { store, runtime: own - store, workers: reaped + live })
}

/// `VmRSS` of a process in MB.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes / 1024.0)
}

/// CPU seconds this process (the bench) has used, without the servers it started and reaped.
pub fn own_cpu_seconds() -> Option<f64> {
    process_cpu_seconds("self", false)
}

/// CPU seconds used so far by the PostgreSQL processes on this machine (every process named `postgres…`, with the
/// backends that exited, which the postmaster reaped).
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .filter(|pid| pid.bytes().all(|byte| byte.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|name| name.starts_with("postgres"))
        })
        .filter_map(|pid| process_cpu_seconds(&pid, true))
        .sum()
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|field| field.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}
