//! The server side: a pool of sandbox worker processes, and one execution driven on one of them.
//!
//! A semaphore with one permit per worker decides who runs; idle workers wait in a list. A run takes a permit and a
//! worker, sends `run`, then serves the worker's messages (log lines, host calls) until `done`, the worker's death,
//! or `timeout + kill_grace`, when it SIGKILLs the worker. After `done` the worker goes straight back to the idle
//! list (it puts its world back before it reads its next message); a worker that died or was killed is replaced by
//! a fresh process in the background, which then gives the permit back. A run whose future is dropped half-way
//! retires its worker the same way. Frames to a worker go through a writer task of its own, so that serving a
//! worker's frames never waits for the worker to read.
//!
//! At most `cpu_slots` runs compute at once (one per core by default): a run takes a slot with its worker and gives it
//! back when it ends, when it waits on the host, when it waits for its start instant, or [`CPU_SLICE`] after it
//! started, whichever is first; a run waits at most [`CPU_SLICE`] for a slot and starts without one after that. Idle
//! workers are taken last-in first-out, so under a burst the same few workers run one run after another and their
//! memory (the world each run starts from, 451 KB) stays in the cores' caches instead of eight workers' memory
//! taking turns; a run that waits on I/O or computes for long does not hold the others back.
//!
//! Worker processes are forked from one dedicated "spawner" thread, because the parent-death signal fires when the
//! *thread* that forked a child exits: tying it to a thread that lives exactly as long as the pool means that
//! dropping or shutting down the pool kills every worker, and that no short-lived runtime thread takes workers
//! down with it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::protocol::{
    self, FromWorker, RunMessage, Setup, TestAction, ToWorker, MAX_ERROR_BYTES, MAX_HOST_ARGS_BYTES,
    MAX_HOST_REPLY_BYTES,
};
use crate::worker::{
    arena_size, duration_text, memory_message, memory_text, result_too_large, timed_out_message, truncate,
};
use crate::{CodeKind, Host, LogLine, Outcome, OutcomeStatus, PoolConfig, Result, RunRequest, SandboxError};

/// How long a new worker may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a run of a test action may take.
const TEST_ACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames a worker may have sent that the pool has not handled yet.
const FRAME_QUEUE: usize = 16;
/// Bytes of a worker's stderr kept for diagnostics.
const STDERR_TAIL_BYTES: usize = 4096;
/// Descriptors a worker may hold (it needs four).
const WORKER_MAX_FILES: u64 = 16;
/// Address space a worker gets beyond its JS heap's arena (code, stacks, buffers).
const ADDRESS_SPACE_SLACK: u64 = 512 * 1024 * 1024;
/// How long a run holds its CPU slot at most, and how long a run waits for one at most (see the module documentation).
const CPU_SLICE: Duration = Duration::from_millis(1);

/// A snapshot of the pool for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Configured number of worker processes.
    pub workers: usize,
    /// Runs in progress.
    pub busy: usize,
    /// Workers replaced so far (after a timeout, a memory kill, a crash or a cancelled run).
    pub restarts: u64,
    /// Whether the most recently started worker runs under its seccomp filter.
    pub seccomp: bool,
}

/// A pool of pre-started sandbox worker processes. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    config: PoolConfig,
    permits: Arc<Semaphore>,
    /// The CPU slots (`None` without a limit).
    cpu: Option<Arc<Semaphore>>,
    idle: Mutex<Vec<Worker>>,
    busy: AtomicUsize,
    restarts: AtomicU64,
    seccomp: AtomicBool,
    closed: AtomicBool,
    spawner: Mutex<Option<std::sync::mpsc::Sender<SpawnReply>>>,
}

type SpawnReply = oneshot::Sender<io::Result<Child>>;

/// One worker process and its channel.
struct Worker {
    child: Child,
    /// Encoded frames for the worker's writer task.
    to_worker: mpsc::UnboundedSender<Vec<u8>>,
    frames: mpsc::Receiver<FromWorker>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        let _ = self.child.start_kill();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pool {
    /// Starts the pool: pre-starts `config.workers` worker processes and waits for each one's hello.
    pub async fn start(config: PoolConfig) -> Result<Pool> {
        if config.workers == 0 {
            return Err(SandboxError::Config("workers must be at least 1".into()));
        }
        if config.memory_limit_bytes < 1024 * 1024 {
            return Err(SandboxError::Config("memory_limit_bytes must be at least 1 MiB".into()));
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| SandboxError::Config("Pool::start must run inside a tokio runtime".into()))?;
        let spawner = start_spawner(&config, handle)
            .map_err(|source| SandboxError::Spawn { program: config.program.clone(), source })?;
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(config.workers)),
            cpu: (config.cpu_slots > 0).then(|| Arc::new(Semaphore::new(config.cpu_slots))),
            idle: Mutex::new(Vec::with_capacity(config.workers)),
            busy: AtomicUsize::new(0),
            restarts: AtomicU64::new(0),
            seccomp: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            spawner: Mutex::new(Some(spawner)),
            config,
        });
        let started = futures_util::future::join_all((0..inner.config.workers).map(|_| inner.spawn_worker())).await;
        let mut workers = Vec::with_capacity(started.len());
        for worker in started {
            match worker {
                Ok(worker) => workers.push(worker),
                Err(e) => {
                    inner.close();
                    return Err(e);
                }
            }
        }
        *lock(&inner.idle) = workers;
        Ok(Pool { inner })
    }

    /// Runs one execution on a free worker, waiting for one if all are busy. Never panics: every failure, including
    /// a crashed worker or a shut-down pool, is an [`Outcome`].
    pub async fn run(&self, request: RunRequest, host: Arc<dyn Host>) -> Outcome {
        match self.reserve().await {
            Ok(reservation) => reservation.run(request, host).await,
            Err(error) => Outcome::failed(error, Vec::new(), Instant::now()),
        }
    }

    /// Waits for a free worker and keeps it for one run. A scheduler reserves before it marks an execution
    /// started, so that `running` means running, not waiting for a worker; dropping the reservation unused gives
    /// the worker back.
    pub async fn reserve(&self) -> std::result::Result<Reservation, String> {
        let lease = self.inner.clone().lease().await.map_err(|e| format!("no sandbox worker available: {e}"))?;
        Ok(Reservation { pool: self.clone(), lease })
    }

    /// Reads a module job's definition without running it: evaluates `code` in a fresh runtime on a worker (same
    /// isolation and limits as a run; every host call fails) and answers `{name, description?, schedule, timeout?,
    /// retry?, metadata?}` as JSON, `Date`s as ISO strings, without `execute`. Module-level code runs; `execute`
    /// never does. Every failure (a syntax error, a definition that is not a job, a timeout, a crash) is a message.
    pub async fn describe(
        &self,
        code: String,
        kind: CodeKind,
        timeout: Duration,
    ) -> std::result::Result<serde_json::Value, String> {
        let outcome = self.describe_outcome(code, kind, timeout).await;
        match outcome.status {
            OutcomeStatus::Completed => match outcome.result {
                Some(definition) if definition.is_object() => Ok(definition),
                _ => Err("the sandbox did not answer a job definition".into()),
            },
            OutcomeStatus::Failed => Err(outcome.error.unwrap_or_else(|| "describing the job failed".into())),
            OutcomeStatus::Timeout => Err(format!(
                "loading the job module timed out after {}",
                duration_text(timeout.min(crate::MAX_TIMEOUT))
            )),
            OutcomeStatus::Killed => Err(format!(
                "loading the job module exceeded the memory limit of {}",
                memory_text(self.inner.config.memory_limit_bytes)
            )),
        }
    }

    /// Test hook behind [`Pool::describe`]: the whole outcome of describing a module, its console lines included.
    #[doc(hidden)]
    pub async fn describe_outcome(&self, code: String, kind: CodeKind, timeout: Duration) -> Outcome {
        let started = Instant::now();
        if kind != CodeKind::Module {
            let error = "only a module job can be described (a function job's options come with its create request)";
            return Outcome::failed(error.into(), Vec::new(), started);
        }
        let timeout = timeout.min(crate::MAX_TIMEOUT);
        let message = match protocol::encode(&ToWorker::Run(self.run_message(
            code,
            kind,
            true,
            serde_json::value::RawValue::from_string("null".to_owned()).expect("null is JSON"),
            BTreeMap::new(),
            timeout,
        ))) {
            Ok(message) => message,
            Err(e) => return Outcome::failed(format!("the job's code cannot be sent: {e}"), Vec::new(), started),
        };
        let mut lease = match self.inner.clone().lease().await {
            Ok(lease) => lease,
            Err(e) => return Outcome::failed(format!("no sandbox worker available: {e}"), Vec::new(), started),
        };
        lease.drive(message, None, timeout, Duration::ZERO).await
    }

    /// A `run` message with the pool's limits, starting at once.
    fn run_message(
        &self,
        code: String,
        kind: CodeKind,
        describe: bool,
        job: Box<serde_json::value::RawValue>,
        env: BTreeMap<String, String>,
        timeout: Duration,
    ) -> RunMessage {
        RunMessage {
            code,
            kind,
            describe,
            job,
            env,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            start_at_monotonic_ns: 0,
        }
    }

    /// Test hook, not for production use: makes a worker perform `action` (abort as an engine crash would, or try to
    /// open a file so a test can see the seccomp filter refuse it). Job code can never request these.
    #[doc(hidden)]
    pub async fn run_test_action(&self, action: TestAction) -> Outcome {
        let started = Instant::now();
        let mut lease = match self.inner.clone().lease().await {
            Ok(lease) => lease,
            Err(e) => return Outcome::failed(format!("no sandbox worker available: {e}"), Vec::new(), started),
        };
        let message = match protocol::encode(&ToWorker::Test { action }) {
            Ok(message) => message,
            Err(e) => return Outcome::failed(e.to_string(), Vec::new(), started),
        };
        lease.drive(message, None, TEST_ACTION_TIMEOUT, Duration::ZERO).await
    }

    /// Counters for metrics.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            workers: self.inner.config.workers,
            busy: self.inner.busy.load(Ordering::SeqCst),
            restarts: self.inner.restarts.load(Ordering::SeqCst),
            seccomp: self.inner.seccomp.load(Ordering::SeqCst),
        }
    }

    /// Stops the pool: runs not yet started end `failed`, idle workers are killed now, busy ones when their run ends.
    pub async fn shutdown(&self) {
        self.inner.close();
        let idle = std::mem::take(&mut *lock(&self.inner.idle));
        for mut worker in idle {
            let _ = worker.child.start_kill();
            let _ = worker.child.wait().await;
        }
    }
}

impl Inner {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        // Ending the spawner thread fires the parent-death signal of every worker it started.
        lock(&self.spawner).take();
    }

    /// Takes a permit, a CPU slot (waiting for one at most [`CPU_SLICE`]) and a live worker (the one that went idle
    /// last; starting one if none is idle).
    async fn lease(self: Arc<Self>) -> Result<Lease> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| SandboxError::Shutdown)?;
        let cpu = match &self.cpu {
            Some(slots) => {
                tokio::time::timeout(CPU_SLICE, slots.clone().acquire_owned()).await.ok().and_then(Result::ok)
            }
            None => None,
        };
        self.busy.fetch_add(1, Ordering::SeqCst);
        let mut lease = Lease { inner: self.clone(), worker: None, permit: Some(permit), cpu, keep: false };
        loop {
            let candidate = lock(&self.idle).pop();
            match candidate {
                Some(mut worker) => {
                    if matches!(worker.child.try_wait(), Ok(None)) {
                        lease.worker = Some(worker);
                        return Ok(lease);
                    }
                    // It died while idle: replace it.
                    self.restarts.fetch_add(1, Ordering::SeqCst);
                }
                None => {
                    lease.worker = Some(self.spawn_worker().await?);
                    return Ok(lease);
                }
            }
        }
    }

    /// Starts one worker process and waits for its hello.
    async fn spawn_worker(&self) -> Result<Worker> {
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let spawner = lock(&self.spawner);
            let sent = spawner.as_ref().map(|spawner| spawner.send(reply_tx).is_ok());
            if sent != Some(true) {
                return Err(SandboxError::Shutdown);
            }
        }
        let spawned = reply_rx.await.map_err(|_| SandboxError::Shutdown)?;
        let mut child =
            spawned.map_err(|source| SandboxError::Spawn { program: self.config.program.clone(), source })?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(SandboxError::Handshake("the worker's pipes are missing".into()));
        };

        let (frames_tx, frames) = mpsc::channel(FRAME_QUEUE);
        // The largest honest frame is a result or host-call arguments plus an error text.
        let max_frame = self.config.limits.max_result_bytes.max(MAX_HOST_ARGS_BYTES) + MAX_ERROR_BYTES + 64 * 1024;
        let reader = tokio::spawn(async move {
            let mut stdout = BufReader::with_capacity(64 * 1024, stdout);
            loop {
                match protocol::read_frame_async::<FromWorker, _>(&mut stdout, max_frame).await {
                    Ok(Some(frame)) => {
                        if frames_tx.send(frame).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "sandbox worker sent an unreadable frame");
                        break;
                    }
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = stderr_tail.clone();
        tokio::spawn(async move {
            let mut stderr = stderr;
            let mut buffer = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                let mut tail = lock(&tail);
                tail.extend_from_slice(&buffer[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                tail.drain(..excess);
            }
        });
        let (to_worker, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer = tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(frame) = outgoing.recv().await {
                if stdin.write_all(&frame).await.is_err() || stdin.flush().await.is_err() {
                    // The worker is gone; its reader reports that to whoever waits for it.
                    break;
                }
            }
        });
        let limits = &self.config.limits;
        let setup = ToWorker::Setup(Setup {
            memory_limit_bytes: self.config.memory_limit_bytes,
            max_log_lines: limits.max_log_lines,
            max_log_line_bytes: limits.max_log_line_bytes,
            max_result_bytes: limits.max_result_bytes,
            max_host_calls_in_flight: limits.max_host_calls_in_flight,
        });
        let setup = protocol::encode(&setup).map_err(|e| SandboxError::Handshake(e.to_string()))?;
        let _ = to_worker.send(setup);
        let mut worker = Worker { child, to_worker, frames, reader, writer, stderr_tail };

        match tokio::time::timeout(HELLO_TIMEOUT, worker.frames.recv()).await {
            Ok(Some(FromWorker::Hello { pid, seccomp, seccomp_error, snapshot_bytes })) => {
                tracing::debug!(pid, snapshot_bytes, "sandbox worker ready");
                self.seccomp.store(seccomp, Ordering::SeqCst);
                if let Some(error) = seccomp_error {
                    tracing::warn!(pid, %error, "sandbox worker runs without its seccomp filter");
                }
                Ok(worker)
            }
            Ok(Some(other)) => Err(SandboxError::Handshake(format!("expected hello, got {other:?}"))),
            Ok(None) => {
                let status = worker.child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                Err(SandboxError::Handshake(format!(
                    "the worker ended before its hello ({status}): {}",
                    worker.stderr_text()
                )))
            }
            Err(_) => Err(SandboxError::Handshake(format!("no hello within {}s", HELLO_TIMEOUT.as_secs()))),
        }
    }

    /// Kills `worker`, counts the restart, and (unless the pool is closed) starts a replacement; then frees `permit`.
    async fn replace(self: Arc<Self>, mut worker: Worker, permit: Option<OwnedSemaphorePermit>) {
        let _ = worker.child.start_kill();
        let _ = worker.child.wait().await;
        drop(worker);
        self.restarts.fetch_add(1, Ordering::SeqCst);
        if !self.closed.load(Ordering::SeqCst) {
            match self.spawn_worker().await {
                Ok(fresh) => self.put_back(fresh),
                Err(e) => tracing::warn!(error = %e, "could not start a replacement sandbox worker"),
            }
        }
        drop(permit);
    }

    fn put_back(&self, worker: Worker) {
        if self.closed.load(Ordering::SeqCst) {
            drop(worker);
        } else {
            lock(&self.idle).push(worker);
        }
    }
}

impl Worker {
    /// Queues one message for the worker (a worker that is gone drops it; its reader reports the death).
    fn send(&self, message: &ToWorker) {
        match protocol::encode(message) {
            Ok(frame) => {
                let _ = self.to_worker.send(frame);
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode a message for a sandbox worker"),
        }
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr_tail)).trim().to_owned()
    }
}

/// A worker and a permit, held for one run. Dropping it hands the worker back (or replaces it) in the background.
/// A worker kept for one run ([`Pool::reserve`]).
pub struct Reservation {
    pool: Pool,
    lease: Lease,
}

impl Reservation {
    /// Runs one execution on the reserved worker. Never panics; every failure is an Outcome.
    pub async fn run(mut self, request: RunRequest, host: Arc<dyn Host>) -> Outcome {
        let started = Instant::now();
        let timeout = request.timeout.min(crate::MAX_TIMEOUT);
        let delay = request.start_at.map(|at| at.saturating_duration_since(started)).unwrap_or_default();
        let delay = delay.min(crate::MAX_START_DELAY);
        let text = if request.job.trim().is_empty() { "null".to_owned() } else { request.job };
        let job = match serde_json::value::RawValue::from_string(text) {
            Ok(job) => job,
            Err(e) => return Outcome::failed(format!("the job object is not JSON: {e}"), Vec::new(), started),
        };
        let mut message = self.pool.run_message(request.code, request.kind, false, job, request.env, timeout);
        if !delay.is_zero() {
            let delay = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
            message.start_at_monotonic_ns = protocol::monotonic_ns().saturating_add(delay);
        }
        let message = match protocol::encode(&ToWorker::Run(message)) {
            Ok(message) => message,
            Err(e) => {
                return Outcome::failed(format!("the job's code and data cannot be sent: {e}"), Vec::new(), started)
            }
        };
        self.lease.drive(message, Some(host), timeout, delay).await
    }
}

struct Lease {
    inner: Arc<Inner>,
    worker: Option<Worker>,
    permit: Option<OwnedSemaphorePermit>,
    /// The run's CPU slot, while it holds one.
    cpu: Option<OwnedSemaphorePermit>,
    /// Whether the worker reported the end of its run and may run again.
    keep: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.busy.fetch_sub(1, Ordering::SeqCst);
        let permit = self.permit.take();
        let Some(worker) = self.worker.take() else {
            return;
        };
        if self.keep && !self.inner.closed.load(Ordering::SeqCst) {
            // The worker reported its run and puts its world back before it reads the next message.
            self.inner.put_back(worker);
            drop(permit);
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(self.inner.clone().replace(worker, permit));
            }
            Err(_) => {
                // No runtime left to replace it in: the worker dies with its handle.
                self.inner.restarts.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

impl Lease {
    /// Sends `message` and serves the worker until the run ends. The timeout (and the outcome's duration) count from
    /// here plus the run's start delay, not from when the caller started waiting for a free worker.
    async fn drive(
        &mut self,
        message: Vec<u8>,
        host: Option<Arc<dyn Host>>,
        timeout: Duration,
        start_delay: Duration,
    ) -> Outcome {
        let started = Instant::now() + start_delay;
        let limits = self.inner.config.limits.clone();
        let memory_limit = self.inner.config.memory_limit_bytes;
        let kill_at =
            tokio::time::Instant::from_std(started) + timeout + self.inner.config.kill_grace.min(crate::MAX_TIMEOUT);
        let Some(worker) = self.worker.as_mut() else {
            return Outcome::failed("no sandbox worker available".into(), Vec::new(), started);
        };
        let mut logs: Vec<LogLine> = Vec::new();
        let mut calls: FuturesUnordered<BoxFuture<'static, ToWorker>> = FuturesUnordered::new();
        // A run that waits for its instant does not compute until then: its slot goes to a run that would.
        if !start_delay.is_zero() {
            self.cpu = None;
        }
        let cpu_until = tokio::time::Instant::from_std(started) + CPU_SLICE;

        if worker.to_worker.send(message).is_err() {
            let error = worker.death(kill_at).await;
            return Outcome::failed(error, logs, started);
        }

        loop {
            tokio::select! {
                frame = worker.frames.recv() => match frame {
                    Some(FromWorker::Log(mut line)) => {
                        if logs.len() <= limits.max_log_lines {
                            line.message = truncate(line.message, limits.max_log_line_bytes + 64);
                            logs.push(line);
                        }
                    }
                    Some(FromWorker::HostCall { call, method, args }) => {
                        let answer = match (&host, serde_json::from_str::<serde_json::Value>(&args)) {
                            (None, _) => Some(Err(format!("{method}: host calls are not available here"))),
                            (_, Err(e)) => Some(Err(format!("{method}: invalid arguments: {e}"))),
                            (Some(_), Ok(_)) if calls.len() >= limits.max_host_calls_in_flight => Some(Err(format!(
                                "{method}: too many host calls in flight (limit {})",
                                limits.max_host_calls_in_flight
                            ))),
                            (Some(host), Ok(args)) => {
                                calls.push(call_host(host.clone(), call, method.clone(), args));
                                // The run waits on the host: its CPU slot goes to a run that would compute.
                                self.cpu = None;
                                None
                            }
                        };
                        if let Some(answer) = answer {
                            worker.send(&reply(call, &method, answer));
                        }
                    }
                    Some(FromWorker::Done { status, result, error }) => {
                        // Host calls the job started but did not await still finish: their effects were asked for.
                        for call in calls {
                            tokio::spawn(call);
                        }
                        self.keep = true;
                        return finish(status, result, error, logs, started, &limits, memory_limit, timeout);
                    }
                    Some(other) => {
                        tracing::warn!(message = ?other, "sandbox worker sent an unexpected message");
                        return Outcome::failed("sandbox worker broke the protocol".into(), logs, started);
                    }
                    None => {
                        let error = worker.death(kill_at).await;
                        for call in calls {
                            tokio::spawn(call);
                        }
                        return Outcome::failed(error, logs, started);
                    }
                },
                Some(reply) = calls.next(), if !calls.is_empty() => {
                    // A failed write means the worker is dying; the frames branch will report it.
                    worker.send(&reply);
                }
                _ = tokio::time::sleep_until(cpu_until), if self.cpu.is_some() => self.cpu = None,
                _ = tokio::time::sleep_until(kill_at) => {
                    let _ = worker.child.start_kill();
                    let _ = worker.child.wait().await;
                    for call in calls {
                        tokio::spawn(call);
                    }
                    return Outcome {
                        status: OutcomeStatus::Timeout,
                        result: None,
                        error: Some(timed_out_message(timeout)),
                        logs,
                        duration: started.elapsed(),
                    };
                }
            }
        }
    }
}

impl Worker {
    /// Waits (until `kill_at`) for a worker whose channel closed to exit, and describes how it ended.
    async fn death(&mut self, kill_at: tokio::time::Instant) -> String {
        let status = match tokio::time::timeout_at(kill_at, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.child.start_kill();
                self.child.wait().await.ok()
            }
        };
        let stderr = self.stderr_text();
        if !stderr.is_empty() {
            tracing::warn!(%stderr, "sandbox worker ended unexpectedly");
        }
        crash_message(status)
    }
}

/// `sandbox worker crashed (signal 6)` or `sandbox worker exited unexpectedly (exit status 3)`.
fn crash_message(status: Option<ExitStatus>) -> String {
    match status {
        Some(status) => match (status.signal(), status.code()) {
            (Some(signal), _) => format!("sandbox worker crashed (signal {signal})"),
            (None, Some(code)) => format!("sandbox worker exited unexpectedly (exit status {code})"),
            (None, None) => format!("sandbox worker ended unexpectedly ({status})"),
        },
        None => "sandbox worker ended unexpectedly".to_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    status: OutcomeStatus,
    result: Option<String>,
    error: Option<String>,
    logs: Vec<LogLine>,
    started: Instant,
    limits: &crate::Limits,
    memory_limit: usize,
    timeout: Duration,
) -> Outcome {
    let duration = started.elapsed();
    let failed = |error: String| Outcome {
        status: OutcomeStatus::Failed,
        result: None,
        error: Some(error),
        logs: Vec::new(),
        duration,
    };
    let mut outcome = match status {
        OutcomeStatus::Completed => match result {
            None => Outcome { status, result: None, error: None, logs: Vec::new(), duration },
            Some(text) if text.len() > limits.max_result_bytes => failed(result_too_large(limits.max_result_bytes)),
            Some(text) => match serde_json::from_str(&text) {
                Ok(value) => Outcome { status, result: Some(value), error: None, logs: Vec::new(), duration },
                Err(e) => failed(format!("result cannot be stored as JSON: {e}")),
            },
        },
        OutcomeStatus::Failed => failed(error.unwrap_or_else(|| "the job failed".to_owned())),
        OutcomeStatus::Timeout => Outcome {
            status,
            result: None,
            error: Some(error.unwrap_or_else(|| timed_out_message(timeout))),
            logs: Vec::new(),
            duration,
        },
        OutcomeStatus::Killed => Outcome {
            status,
            result: None,
            error: Some(error.unwrap_or_else(|| memory_message(memory_limit))),
            logs: Vec::new(),
            duration,
        },
    };
    outcome.logs = logs;
    outcome
}

fn reply(call: u64, method: &str, answer: std::result::Result<serde_json::Value, String>) -> ToWorker {
    match answer {
        Ok(value) => {
            let payload = value.to_string();
            if payload.len() > MAX_HOST_REPLY_BYTES {
                let error = format!("{method}: the answer exceeds {MAX_HOST_REPLY_BYTES} bytes");
                return ToWorker::HostReply { call, ok: false, payload: error };
            }
            ToWorker::HostReply { call, ok: true, payload }
        }
        Err(message) => ToWorker::HostReply { call, ok: false, payload: truncate(message, MAX_ERROR_BYTES) },
    }
}

/// Calls the host and prepares the reply, turning a panic in the host into an error answer.
fn call_host(host: Arc<dyn Host>, call: u64, method: String, args: serde_json::Value) -> BoxFuture<'static, ToWorker> {
    let failed = format!("{method}: the host failed to answer");
    let future = std::panic::catch_unwind(AssertUnwindSafe(|| host.call(method.clone(), args)));
    async move {
        let answer = match future {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await.unwrap_or(Err(failed)),
            Err(_) => Err(failed),
        };
        reply(call, &method, answer)
    }
    .boxed()
}

impl Outcome {
    fn failed(error: String, logs: Vec<LogLine>, started: Instant) -> Outcome {
        Outcome { status: OutcomeStatus::Failed, result: None, error: Some(error), logs, duration: started.elapsed() }
    }
}

/// Starts the thread that forks every worker of the pool (see the module docs for why one thread).
fn start_spawner(
    config: &PoolConfig,
    handle: tokio::runtime::Handle,
) -> io::Result<std::sync::mpsc::Sender<SpawnReply>> {
    let (requests_tx, requests) = std::sync::mpsc::channel::<SpawnReply>();
    let program = config.program.clone();
    let args = config.args.clone();
    let address_space = (arena_size(config.memory_limit_bytes) as u64).saturating_add(ADDRESS_SPACE_SLACK);
    std::thread::Builder::new().name("sandbox-spawner".into()).spawn(move || {
        let _runtime = handle.enter();
        while let Ok(reply) = requests.recv() {
            let _ = reply.send(spawn_process(&program, &args, address_space));
        }
    })?;
    Ok(requests_tx)
}

fn spawn_process(program: &PathBuf, args: &[OsString], address_space: u64) -> io::Result<Child> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls (prctl, getppid,
    // signal, setpgid, setrlimit); it allocates nothing.
    unsafe {
        command.pre_exec(move || harden_child(address_space, parent));
    }
    command.spawn()
}

/// Runs in the forked child before exec: parent-death signal, stop signals, process group and resource limits.
///
/// The server alone decides when a worker ends. A stop signal sent to every process of the service (systemd's
/// default `KillMode`, `kill 0`) or a Ctrl-C in a terminal (which signals the foreground process group) must reach
/// the server, which stops gracefully and lets running executions finish, and not cut those runs off: so a worker
/// ignores SIGTERM, SIGINT and SIGHUP (ignored signals stay ignored across exec) and leads a process group of its own.
fn harden_child(address_space: u64, parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died before the signal was armed.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            if libc::signal(signal, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    set_limit(libc::RLIMIT_AS, address_space)?;
    set_limit(libc::RLIMIT_NOFILE, WORKER_MAX_FILES)?;
    set_limit(libc::RLIMIT_CORE, 0)?;
    Ok(())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

/// Lowers a resource limit to `value` (never raises it: an unprivileged process could not).
fn set_limit(resource: Resource, value: u64) -> io::Result<()> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let value = (value as libc::rlim_t).min(limit.rlim_max);
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: `limit` is a valid rlimit for the duration of the call.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
