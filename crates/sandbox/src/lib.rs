//! Runs a job's JavaScript with a timeout, a memory cap and host calls, inside sandboxed QuickJS worker processes.
//!
//! # Process model
//!
//! A [`Pool`] pre-starts `workers` sandbox worker processes (the `sundial` binary's hidden `worker` subcommand, or
//! `sundial-sandbox-worker`; both call [`worker_main`]). Each worker runs one execution at a time. At start-up it
//! builds its world once — a QuickJS runtime and context with the prelude, `console` and the library — in a memory
//! arena of its own, and copies the arena aside; every run starts from that copy and the arena is copied back after
//! it, so each execution sees a context no job has touched, and nothing of one run (objects, timers, garbage, an
//! interrupted or out-of-memory engine) reaches the next. A worker is started with an empty environment, only its
//! three standard descriptors (stdin and stdout are its channel to the server, stderr is a bounded diagnostic pipe),
//! `RLIMIT_AS` (memory cap + 512 MiB), a small `RLIMIT_NOFILE`, no core dumps and a parent-death signal (SIGKILL,
//! tied to the pool's own spawner thread, so dropping or shutting down the pool kills its workers). After start-up
//! the worker installs a seccomp allow-list (see `worker/seccomp.rs`) and reports whether that worked in its hello.
//!
//! The server never trusts a worker to stop: a run that is still going at `timeout + kill_grace` gets its worker
//! SIGKILLed and ends `timeout`. That covers native calls that never look at the deadline (`a.join(',')` on a huge
//! sparse array) and engine crashes (`abort()`), which end `failed` with the signal named. A worker that hit a
//! limit (timeout, memory) exits by itself; the pool replaces every worker that ended, counting it in
//! [`PoolStats::restarts`]. A run stopped by the interrupt handler (timeout) or the memory cap does not cost the
//! worker: it puts its world back like after any run. The wait for a free worker does not count against a run's
//! timeout.
//!
//! # Protocol
//!
//! Frames in both directions are a `u32` big-endian length followed by that many bytes of JSON: one message, tagged
//! by `"type"` (the pool's messages carry their fields in `"body"`). JSON payloads that job code produces or
//! receives (results, host-call arguments and answers) travel as JSON *text* inside the frame, parsed only where
//! they are used; the job object of a run travels as raw JSON.
//!
//! ```text
//! server → worker  setup     {memoryLimitBytes, maxLogLines, …}        once, first: the limits of every run
//! worker → server  hello     {pid, seccomp, seccompError?, snapshotBytes}  once, when the world is built
//! server → worker  run       {code, kind, describe, job, env, timeoutMs, startDelayUs}
//! worker → server  log       {level, message, at}                      streamed as console.* is called
//! worker → server  host_call {call, method, args}                      job code called a host API
//! server → worker  host_reply{call, ok, payload}                       payload: answer JSON text, or error text
//! worker → server  done      {status, result?, error?}                 the run ended (describe: result = definition);
//!                                                                      the worker is ready for the next run
//! server → worker  test      {action}                                  test hooks (abort, try to open a file)
//! ```
//!
//! A host call's `args` are JSON text; its reply `payload` is the answer's JSON text when `ok`, else an error message.
//! Frames are capped (results and host-call arguments well below the cap), so a misbehaving worker cannot make the
//! pool buffer without bound. The `test` message is reachable only through the hidden
//! [`Pool::run_test_action`], never from job code: tests use it to crash a worker and to probe the seccomp filter.
//!
//! The worker never decides authorization: a host call names a method and carries the job's arguments, and the
//! server's [`Host`] answers it from the execution's own agent and user.
//!
//! # Pre-defined jobs
//!
//! A [`RunRequest`] of [`CodeKind::Module`] carries a whole job file (SPEC §7) instead of one function. The worker
//! tells its two forms apart with one rule: **the file is an ES module when it contains an `import` or `export`
//! declaration** (found by a small tokenizer that skips strings, comments, template literals and regular
//! expressions; dynamic `import(…)`, `import.meta` and properties named `import`/`export` do not count), **otherwise
//! it is a CommonJS script**. No valid script contains such a declaration, so the rule only ever picks the form the
//! file can be.
//!
//! - An ES module is compiled as `job.js`; its default export is the definition. It may import `lua-cli`,
//!   `lua-cli/skill` and `sundial`, one built-in module exporting `LuaJob`, `defineJob`, `User`, `Data`, `Products`,
//!   `Jobs`, `env` and `fetch`. Any other specifier, relative paths included, fails the run (and a describe) with
//!   `import of "fs" is not available in jobs`; such an error carries `code: 'ERR_IMPORT_NOT_AVAILABLE'`.
//! - A CommonJS script (lua-cli's compiled artifact) runs inside `function (exports, require, module, __filename,
//!   __dirname)` with `__filename = '/index.js'`, `__dirname = '/'`; `require` answers the built-in module for the
//!   same three names and throws `require of "zod" is not available in jobs` otherwise. The definition is
//!   `module.exports.default` when that is set, else `module.exports`.
//!
//! A definition is `{name, description, schedule, timeout?, retry?, metadata?, execute}` (a plain object, or
//! `defineJob`'s argument), a `LuaJob` (read through lua-cli's getters `getName` … `getMetadata`; `LuaJob` keeps a
//! copy of its configuration and validates nothing itself), or lua-cli's artifact `{__lua_primitive__: {kind: 'job',
//! …}, primitive: {…}}`, whose `primitive` is the definition. Its `name` must be a non-empty string, its `schedule`
//! an object and its `execute` a function (deeper checks are the server's). The module's top level runs first,
//! within the run's timeout and memory cap; then `execute(job)` is called with `this` = the definition and awaited,
//! keeping its module scope. Logs, host calls, the `job` object and the outcome are as for a function.
//!
//! [`Pool::describe`] evaluates a job file the same way on a worker, with every host call failing with `…: host
//! calls are not available while describing a job`, and answers the definition without `execute` as JSON (`Date`s
//! as ISO strings, missing optional fields left out). It never calls `execute`. Errors are messages: a syntax error
//! with its line and column, `the default export is not a job definition (expected {name, schedule, execute})`, a
//! missing name or schedule, an `execute` that is not a function, a top-level exception with its stack, a timeout.
//!
//! # Inside the worker
//!
//! Inside the worker, the memory cap is enforced by the arena's allocator, whose out-of-memory flag stays set even
//! when job code catches the error; the interrupt handler (deadline or memory flag) stays armed while the result,
//! the error text and log lines are serialized; a wall-clock timeout surrounds the event loop for promises that
//! never settle; `performance.now()` is coarsened to whole milliseconds.

mod pool;
mod protocol;
pub mod source;
mod worker;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use pool::{Pool, PoolStats, Reservation};
pub use protocol::TestAction;
pub use worker::worker_main;

/// Errors of the pool itself. A job's own failure is never one of these: it is an [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The configuration cannot work (for example zero workers).
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// A worker process could not be started.
    #[error("could not start sandbox worker {program}: {source}")]
    Spawn {
        /// The worker executable.
        program: PathBuf,
        /// Why the operating system refused.
        source: std::io::Error,
    },
    /// A worker started but did not greet the pool as expected.
    #[error("sandbox worker handshake failed: {0}")]
    Handshake(String),
    /// The pool was shut down.
    #[error("sandbox pool is shut down")]
    Shutdown,
}

/// The longest timeout a run gets; longer ones are cut to this (the server allows far less anyway).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// A `Result` whose error is a [`SandboxError`].
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// How a [`Pool`] starts and limits its workers.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// The worker executable.
    pub program: PathBuf,
    /// Arguments for it, e.g. `["worker"]` when the server binary re-executes itself.
    pub args: Vec<OsString>,
    /// How many worker processes run at once (default 4).
    pub workers: usize,
    /// The JS heap cap per execution (default 64 MiB); exceeding it ends the run `killed`.
    pub memory_limit_bytes: usize,
    /// How long past its timeout a run may go before the pool kills its worker (default 500 ms).
    pub kill_grace: Duration,
    /// Per-execution limits on logs, results and host calls.
    pub limits: Limits,
    /// Runs that compute at once (default: the machine's cores; 0 for no limit); see the pool's documentation.
    pub cpu_slots: usize,
}

impl PoolConfig {
    /// A configuration with the defaults: 4 workers, 64 MiB heap, 500 ms kill grace, default [`Limits`], one CPU slot
    /// per core.
    pub fn new(program: PathBuf, args: Vec<OsString>) -> Self {
        PoolConfig {
            program,
            args,
            workers: 4,
            memory_limit_bytes: 64 * 1024 * 1024,
            kill_grace: Duration::from_millis(500),
            limits: Limits::default(),
            cpu_slots: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        }
    }
}

/// Per-execution limits that the worker enforces (and the pool double-checks).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Console lines kept per execution (default 1,000); further lines are counted in one final line.
    pub max_log_lines: usize,
    /// Bytes kept of one console line (default 8 KiB); longer lines are cut and marked.
    pub max_log_line_bytes: usize,
    /// Bytes of the JSON result (default 1 MiB); a larger result fails the run.
    pub max_result_bytes: usize,
    /// Host calls outstanding at once per execution (default 64); one more rejects at once.
    pub max_host_calls_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_log_lines: 1000,
            max_log_line_bytes: 8 * 1024,
            max_result_bytes: 1024 * 1024,
            max_host_calls_in_flight: 64,
        }
    }
}

/// One execution to run.
///
/// `Default` gives empty code of [`CodeKind::Function`], an empty job text (read as `null`), no variables and a zero
/// timeout: set at least `code` and `timeout`.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// JS source: of a function for [`CodeKind::Function`], of a whole job file for [`CodeKind::Module`].
    pub code: String,
    /// The job object as JSON text: `{id, name, metadata, activeVersion, data?, userId?, execution: {…}}`. Without
    /// `data`, the job's `data` (the full Job) is asked of the host (`job.data`) the first time job code reads it.
    pub job: String,
    /// The agent's variables, readable with `env(key)`.
    pub env: BTreeMap<String, String>,
    /// How long the run may take (at most [`MAX_TIMEOUT`]), loading a module included.
    pub timeout: Duration,
    /// What `code` is.
    pub kind: CodeKind,
    /// When the job's code should start, if not at once: the worker sets the run up first and then waits for this
    /// instant, so a run prepared ahead of its due time starts on it. At most [`MAX_START_DELAY`] ahead.
    pub start_at: Option<Instant>,
}

/// The furthest ahead of its start a run may be handed to a worker.
pub const MAX_START_DELAY: Duration = Duration::from_secs(1);

/// What a job's code is: the source of one function (a dynamic job) or of a whole job file (a pre-defined job).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    /// An arrow function, a `function` expression, or method shorthand `execute(job) {…}`, called as `execute(job)`.
    /// Free variables are globals only: nothing of the module it was written in exists here.
    #[default]
    Function,
    /// A job file: an ES module whose default export is the job definition, or lua-cli's compiled CommonJS artifact
    /// (see the crate documentation, "Pre-defined jobs"). Its `execute` keeps its module scope.
    Module,
}

/// How an execution ended; the names match the execution statuses of the wire API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeStatus {
    /// The function returned (or its promise resolved).
    Completed,
    /// It threw, its promise rejected, its code was not a function, its result was too large, or the worker crashed.
    Failed,
    /// It ran past its timeout.
    Timeout,
    /// It exceeded the memory cap.
    Killed,
}

/// The result of one execution. Every failure of a run is an outcome, never a Rust error.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How it ended.
    pub status: OutcomeStatus,
    /// The awaited return value as JSON (`None` for `undefined` or when it did not complete).
    pub result: Option<serde_json::Value>,
    /// Error text: `"<name>: <message>"` on the first line for a thrown `Error`, optionally followed by its stack.
    pub error: Option<String>,
    /// Console lines captured, including those streamed before a timeout, kill or crash.
    pub logs: Vec<LogLine>,
    /// Wall time the run took, as the pool saw it.
    pub duration: Duration,
}

/// One captured console line.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LogLine {
    /// `log`, `info`, `warn` or `error`.
    pub level: String,
    /// The formatted arguments.
    pub message: String,
    /// When it was written, in Unix milliseconds.
    pub at: i64,
}

/// Answers host calls from job code. The server implements it, authorising from the execution's own agent/user.
///
/// The calls, with the `args` the sandbox sends and the answer it expects:
///
/// | method | args | answer |
/// |---|---|---|
/// | `job.user` | `{jobId}` | the user `{userId, …fields}` (an `Err` when the job has no user context) |
/// | `job.data` | `{jobId}` | the Job, as `Jobs.getJob` answers it (asked once, when job code first reads `job.data`) |
/// | `user.send` | `{userId, messages}` | anything (the job sees `true`) |
/// | `user.update` | `{userId, data}` | the updated user |
/// | `User.get` | `{userId}` | the user, or `null` |
/// | `job.updateMetadata` | `{jobId, patch}` | `{metadata}` (becomes `job.metadata`) |
/// | `job.trigger` | `{jobId, versionId?}` | the JobExecution |
/// | `job.delete` | `{jobId}` | e.g. `{deleted, deactivated, message}` |
/// | `job.activate`, `job.deactivate` | `{jobId}` | the Job (becomes `job.data`) |
/// | `Jobs.create` | `{config, code}`: the config without `execute`, and `execute.toString()` | the Job |
/// | `Jobs.getJob` | `{jobId}` | the Job |
/// | `Jobs.getAll` | `{includeDynamic}` | an array of Jobs (or `{jobs: [...]}`) |
/// | `Data.<m>`, `Products.<m>`, `fetch` | `{args: [...]}`, the positional arguments | any JSON |
///
/// Arguments are the job's values as JSON (own enumerable properties, `Date`s as ISO strings); nothing in them is
/// trusted. List answers of `Data.get`, `Data.search`, `Products.get` and `Products.search` (an array, or
/// `{data: [...]}`) reach the job as an array that also answers `.data`. An `Err(message)` rejects the job's
/// promise with `new Error(message)`.
pub trait Host: Send + Sync + 'static {
    /// Answers one call.
    fn call(
        &self,
        method: String,
        args: serde_json::Value,
    ) -> futures_util::future::BoxFuture<'static, Result<serde_json::Value, String>>;
}
