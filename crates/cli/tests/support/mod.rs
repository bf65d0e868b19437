//! Test support: an engine on a hand-moved clock with the real store and real sandbox workers, and the real
//! `sundial` binary started on a random port.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sundial_core::{Execution, ExecutionStatus};
use sundial_sandbox::{Pool, PoolConfig};
use sundial_scheduler::{Caller, Engine, EngineConfig, JobDetail, ManualClock, NewJob, SchedulerHandle};
use sundial_store::{Agent, SqliteStore, Store};

/// The `sundial` binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sundial"))
}

/// An engine whose clock only moves when the test moves it.
pub struct TestEngine {
    pub engine: Engine,
    pub clock: ManualClock,
    pub store: Arc<dyn Store>,
    handle: Option<SchedulerHandle>,
    _directory: tempfile::TempDir,
}

impl TestEngine {
    /// A fresh engine at `start`, with agent `a` and two sandbox workers.
    pub async fn start(start: DateTime<Utc>) -> TestEngine {
        Self::start_with_workers(start, 2).await
    }

    /// A fresh engine at `start`, with agent `a` and `workers` sandbox workers.
    pub async fn start_with_workers(start: DateTime<Utc>, workers: usize) -> TestEngine {
        sundial_scheduler::outbound::tls_ready();
        let directory = tempfile::tempdir().expect("temporary directory");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&directory.path().join("sundial.db")).expect("open store"));
        store.agent_insert(&Agent::new("a", start)).await.expect("agent");
        let mut config = PoolConfig::new(binary(), vec!["worker".into()]);
        config.workers = workers;
        let pool = Pool::start(config).await.expect("start sandbox pool");
        let clock = ManualClock::new(start);
        let engine = Engine::new(store.clone(), Arc::new(clock.clone()), pool, EngineConfig::default());
        let handle = engine.start().await.expect("start scheduler");
        TestEngine { engine, clock, store, handle: Some(handle), _directory: directory }
    }

    /// The agent, optionally as a user.
    pub fn caller(user: Option<&str>) -> Caller {
        Caller::agent_for_user("a", user.map(str::to_owned))
    }

    /// Creates a job from a JSON body as the API would.
    pub async fn create(&self, body: Value, user: Option<&str>) -> JobDetail {
        let new = NewJob::parse(&body, self.engine.config()).expect("valid job");
        self.engine.create_job(&Self::caller(user), new).await.expect("create job")
    }

    /// Moves the clock forward by `seconds` in steps no longer than the poll interval, giving the loop a moment
    /// after each step.
    pub async fn advance(&self, seconds: f64) {
        let mut left = (seconds * 1000.0) as i64;
        while left > 0 {
            let step = left.min(400);
            self.clock.advance(chrono::Duration::milliseconds(step));
            left -= step;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    /// Waits (in real time, up to 20 s) until the job has `count` executions in a final state; returns them oldest
    /// first.
    pub async fn wait_final(&self, job_id: &str, count: usize) -> Vec<Execution> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (mut executions, _) = self.store.execution_list(job_id, None, 1000, 0).await.expect("list");
            executions.retain(|execution| execution.status.is_final());
            if executions.len() >= count {
                executions.reverse();
                return executions;
            }
            assert!(
                Instant::now() < deadline,
                "job {job_id} reached {} final executions, not {count}",
                executions.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every execution of a job, oldest first.
    pub async fn executions(&self, job_id: &str) -> Vec<Execution> {
        let (mut executions, _) = self.store.execution_list(job_id, None, 1000, 0).await.expect("list");
        executions.reverse();
        executions
    }

    /// Stops the scheduler loop.
    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
        self.engine.pool().shutdown().await;
    }
}

/// The statuses of executions, in order.
pub fn statuses(executions: &[Execution]) -> Vec<ExecutionStatus> {
    executions.iter().map(|execution| execution.status).collect()
}

/// A running `sundial serve` process.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub key: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts the real binary on a random port with the admin key `key`, data in `data_dir`.
    pub fn start(data_dir: &Path, key: &str) -> Server {
        Server::start_with(data_dir, key, &[])
    }

    /// Starts the real binary with extra `serve` flags.
    pub fn start_with(data_dir: &Path, key: &str, flags: &[&str]) -> Server {
        Server::start_with_env(data_dir, key, flags, &[])
    }

    /// Starts the real binary with extra `serve` flags and environment variables.
    pub fn start_with_env(data_dir: &Path, key: &str, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(binary());
        command.args(["serve", "--listen", "127.0.0.1:0"]).envs(env.iter().copied());
        Server::spawn(command, data_dir, key, flags)
    }

    /// Starts the real binary inside the network namespace `namespace`, listening on `address`.
    pub fn start_in_namespace(namespace: &str, address: &str, data_dir: &Path, key: &str, flags: &[&str]) -> Server {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", namespace]).arg(binary()).args(["serve", "--listen", &format!("{address}:0")]);
        Server::spawn(command, data_dir, key, flags)
    }

    fn spawn(mut command: Command, data_dir: &Path, key: &str, flags: &[&str]) -> Server {
        sundial_scheduler::outbound::tls_ready();
        if !flags.contains(&"--workers") {
            command.args(["--workers", "2"]);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(flags)
            .env("SUNDIAL_API_KEY", key)
            .env("SUNDIAL_LOG", "warn")
            .env_remove("SUNDIAL_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sundial serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().expect("server exited before listening").expect("read stdout");
            if let Some(rest) = line.strip_prefix("sundial: listening on ") {
                break rest.split_whitespace().next().unwrap_or_default().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url, key: key.to_owned(), data_dir: data_dir.to_owned() }
    }

    /// Sends SIGTERM (a routine stop, as systemd or Kubernetes sends it).
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// Sends `signal` to the server and to every process it started (its sandbox workers), as systemd's default
    /// `KillMode` does to every process of a service; the workers first.
    pub fn signal_every_process(&self, signal: libc::c_int) {
        let server = libc::pid_t::try_from(self.child.id()).expect("pid");
        for pid in children_of(server).into_iter().chain([server]) {
            // SAFETY: sending a signal to our own child process or to one of its children.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Waits up to `seconds` for the process to exit; answers its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, seconds: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for sundial serve") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A request builder with the admin key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(method, format!("{}{}", self.url, path)).bearer_auth(&self.key)
    }

    /// GET returning (status, JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.request(reqwest::Method::GET, path)).await
    }

    /// POST a JSON body returning (status, JSON).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.request(reqwest::Method::POST, path).json(&body)).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a request; answers (status, JSON body or the text as a JSON string).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Polls `probe` every 50 ms until it answers `Some`, for at most `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The processes whose parent is `parent` (read from `/proc/<pid>/stat`).
pub fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // `pid (name) state ppid …`: the name may hold spaces and parentheses, so read after the last `)`.
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after_name.split_whitespace().nth(1).and_then(|ppid| ppid.parse::<libc::pid_t>().ok()) == Some(parent)
        })
        .collect()
}

/// `pairs` URL-encoded (`application/x-www-form-urlencoded`, for a query string or a form body).
pub fn form_encoded(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    pairs.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect::<Vec<_>>().join("&")
}
