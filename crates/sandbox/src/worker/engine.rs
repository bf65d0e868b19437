//! One execution: a fresh QuickJS context (in the worker's kept runtime), the prelude, the job's function or file,
//! and the verdict. Describing a job file is an execution too, one whose host calls all fail and whose result is the
//! definition.
//!
//! The deadline is enforced twice: QuickJS's interrupt handler stops running JS (and stays armed while the prelude
//! serializes the result, the error text and log lines, since getters and `toJSON` run job code), and a wall-clock
//! timeout around the event loop ends a job that waits on a promise that never settles. Elapsed time is checked
//! once more after the run. A run that hit a limit is reported and the process exits without touching the runtime
//! again.
//!
//! Otherwise the context is dropped and the runtime kept for the next run, but only when the run left nothing
//! behind: after a full garbage collection (which also queues any finalizer the job registered) the runtime must
//! have no pending job and no pending future (a timer, a host call), or it is dropped and the next run gets a new
//! one. Contexts of one runtime share no objects; and every native a run's context holds checks that its run is
//! still the current one, so nothing of an earlier run can log, call the host or settle in a later one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rquickjs::module::WriteOptions;
use rquickjs::prelude::Opt;
use rquickjs::{ArrayBuffer, AsyncContext, AsyncRuntime, CatchResultExt, Ctx, Function, Module, Object, Promise};
use tokio::sync::oneshot;

use super::alloc::{CappedAllocator, Meter};
use super::modules::{self, JobLoader, JobResolver, IMPORT_REFUSED_CODE, PRELUDE_NAME};
use super::{exit_now, syntax, Channel, HostReply};
use crate::protocol::{FromWorker, RunMessage, MAX_ERROR_BYTES, MAX_HOST_ARGS_BYTES};
use crate::{CodeKind, LogLine, OutcomeStatus};

/// The JavaScript that builds the job's world: globals, the job object, serialization. See the file itself.
const PRELUDE: &str = include_str!("prelude.js");

/// The parts of the job's world loaded into a run's context on first use: `console` and the timers, and the rest
/// (see the files themselves).
const PARTS: [(&str, &str); 2] = [("console", include_str!("console.js")), ("library", include_str!("library.js"))];

/// The prelude and its parts as QuickJS bytecode.
pub(crate) struct Bytecode {
    prelude: Vec<u8>,
    parts: Rc<Vec<(&'static str, Vec<u8>)>>,
}

/// Compiles the prelude and its parts to QuickJS bytecode once per worker: loading bytecode into each fresh context
/// takes about a tenth of the time parsing the source would.
pub(crate) fn compile_prelude() -> Result<Bytecode, String> {
    let runtime = rquickjs::Runtime::new().map_err(|e| e.to_string())?;
    let context = rquickjs::Context::full(&runtime).map_err(|e| e.to_string())?;
    context.with(|ctx| {
        let compile = |name: &str, source: &str| {
            let module = Module::declare(ctx.clone(), name, source)
                .catch(&ctx)
                .map_err(|e| format!("{name} does not compile: {e}"))?;
            module
                .write(WriteOptions { strip_source: true, ..WriteOptions::default() })
                .map_err(|e| e.to_string())
        };
        let mut parts = Vec::new();
        for (name, source) in PARTS {
            parts.push((name, compile(&format!("{PRELUDE_NAME}/{name}"), source)?));
        }
        Ok(Bytecode { prelude: compile(PRELUDE_NAME, PRELUDE)?, parts: Rc::new(parts) })
    })
}

/// The longest a timer may wait, as in browsers (2^31 - 1 ms).
const MAX_TIMER_MS: f64 = 2_147_483_647.0;

/// The most random bytes one `crypto.getRandomValues` call may ask for, as in browsers.
const MAX_RANDOM_BYTES: usize = 65_536;

/// Runs on one kept runtime before it is replaced anyway, so that nothing slow to free (interned strings, shapes)
/// accumulates without bound.
const RUNS_PER_RUNTIME: u32 = 10_000;

/// How the job's function ended, as the prelude reported it.
enum Settled {
    /// It returned; the JSON text of its value, absent for `undefined`.
    Returned(Option<String>),
    /// It threw or rejected; the error text.
    Threw(String),
}

/// What the worker reports for a run.
enum Verdict {
    Completed(Option<String>),
    Failed(String),
    Timeout,
    Killed,
}

/// State shared by the native functions of one execution.
struct RunState {
    channel: Rc<Channel>,
    /// This run's number; the natives act only while it is the engine's current run.
    run: u64,
    current: Rc<Cell<u64>>,
    started: Instant,
    max_log_lines: usize,
    max_log_line_bytes: usize,
    max_host_calls_in_flight: usize,
    /// Describing a module job: every host call fails.
    describing: bool,
    lines: Cell<usize>,
    dropped: Cell<usize>,
    in_flight: Rc<Cell<usize>>,
    settled: RefCell<Option<oneshot::Sender<Settled>>>,
}

/// A runtime kept from run to run, with its memory meter and the deadline its interrupt handler reads.
struct Kept {
    runtime: AsyncRuntime,
    meter: Arc<Meter>,
    /// The current run's deadline, in nanoseconds after `epoch`.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
    runs: u32,
}

impl Kept {
    async fn new() -> rquickjs::Result<Kept> {
        let meter = Arc::new(Meter::default());
        meter.arm(usize::MAX);
        let runtime = AsyncRuntime::new_with_alloc(CappedAllocator::new(meter.clone()))?;
        let epoch = Instant::now();
        let deadline = Arc::new(AtomicU64::new(0));
        let (flag, until) = (meter.clone(), deadline.clone());
        runtime
            .set_interrupt_handler(Some(Box::new(move || {
                flag.exceeded() || epoch.elapsed().as_nanos() as u64 >= until.load(Ordering::Relaxed)
            })))
            .await;
        runtime.set_loader(JobResolver, JobLoader).await;
        Ok(Kept { runtime, meter, deadline, epoch, runs: 0 })
    }

    /// Sets the cap and the deadline for the run about to start.
    fn arm(&self, memory_limit: usize, deadline: Instant) {
        self.meter.arm(memory_limit);
        let nanos = deadline.saturating_duration_since(self.epoch).as_nanos();
        self.deadline.store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Whether the runtime may serve another run: nothing of the last one is left to run. Collects its garbage
    /// first, which also queues the callbacks of any finalization registry the run left.
    async fn reusable(&self) -> bool {
        if self.runs >= RUNS_PER_RUNTIME {
            return false;
        }
        self.runtime.run_gc().await;
        !self.runtime.is_job_pending().await && !self.meter.exceeded()
    }
}

/// The worker's JavaScript engine: the prelude's bytecode and the runtime kept between runs.
pub(crate) struct Engine {
    channel: Rc<Channel>,
    bytecode: Bytecode,
    kept: Option<Kept>,
    /// The number of the current run (see [`RunState::run`]).
    current: Rc<Cell<u64>>,
}

impl Engine {
    pub(crate) fn new(channel: Rc<Channel>, bytecode: Bytecode) -> Engine {
        Engine { channel, bytecode, kept: None, current: Rc::new(Cell::new(0)) }
    }

    /// Runs one execution and reports it; exits the process when the run hit a limit.
    pub(crate) async fn execute(&mut self, run: RunMessage) {
        let channel = self.channel.clone();
        // The job starts after the delay the pool asked for; its time limit counts from then.
        let delay = Duration::from_micros(run.start_delay_us).min(crate::MAX_START_DELAY);
        let started = Instant::now() + delay;
        let timeout = Duration::from_millis(run.timeout_ms).min(crate::MAX_TIMEOUT);
        let deadline = started + timeout;
        let (settled_tx, settled_rx) = oneshot::channel();
        let run_number = self.current.get() + 1;
        self.current.set(run_number);
        let state = Rc::new(RunState {
            channel: channel.clone(),
            run: run_number,
            current: self.current.clone(),
            started,
            max_log_lines: run.max_log_lines,
            max_log_line_bytes: run.max_log_line_bytes,
            max_host_calls_in_flight: run.max_host_calls_in_flight,
            describing: run.describe,
            lines: Cell::new(0),
            dropped: Cell::new(0),
            in_flight: Rc::new(Cell::new(0)),
            settled: RefCell::new(Some(settled_tx)),
        });

        let kept = match self.kept.take() {
            Some(kept) => kept,
            None => match Kept::new().await {
                Ok(kept) => kept,
                Err(e) => {
                    report(&state, &run, Verdict::Failed(format!("cannot create a JS runtime: {e}")));
                    channel.send(&FromWorker::Idle);
                    return;
                }
            },
        };
        kept.arm(run.memory_limit_bytes, deadline);
        let context = match AsyncContext::full(&kept.runtime).await {
            Ok(context) => context,
            Err(e) => {
                if kept.meter.exceeded() {
                    report(&state, &run, Verdict::Killed);
                    exit_now(0);
                }
                report(&state, &run, Verdict::Failed(format!("cannot create a JS context: {e}")));
                channel.send(&FromWorker::Idle);
                return;
            }
        };

        let env_json = serde_json::to_string(&run.env).unwrap_or_else(|_| "{}".to_owned());
        let run_state = state.clone();
        let job_json = run.job.clone();
        let source = Source {
            form: match run.kind {
                CodeKind::Function => "function",
                CodeKind::Module if syntax::is_es_module(&run.code) => "esm",
                CodeKind::Module => "cjs",
            },
            code: run.code.clone(),
            describe: run.describe,
        };
        let max_result_bytes = run.max_result_bytes;
        let bytecode = &self.bytecode;
        let waited = tokio::time::timeout_at(
            deadline.into(),
            context.async_with(async move |ctx| {
                let go = start(&ctx, bytecode, &run_state, source, job_json, env_json, max_result_bytes)
                    .catch(&ctx)
                    .map_err(|e| format!("the sandbox could not start the job: {e}"))?;
                wait_until(started);
                go.call::<_, ()>(()).catch(&ctx).map_err(|e| format!("the sandbox could not start the job: {e}"))?;
                settled_rx.await.map_err(|_| "the job's promise was abandoned".to_owned())
            }),
        )
        .await;

        let elapsed = Instant::now().saturating_duration_since(started);
        let verdict = if kept.meter.exceeded() {
            Verdict::Killed
        } else if waited.is_err() || elapsed >= timeout {
            Verdict::Timeout
        } else {
            match waited {
                Ok(Ok(Settled::Returned(Some(text)))) if text.len() > run.max_result_bytes => {
                    Verdict::Failed(result_too_large(run.max_result_bytes))
                }
                Ok(Ok(Settled::Returned(text))) => Verdict::Completed(text),
                Ok(Ok(Settled::Threw(error))) | Ok(Err(error)) => Verdict::Failed(truncate(error, MAX_ERROR_BYTES)),
                Err(_) => Verdict::Timeout,
            }
        };
        let hit_limit = matches!(verdict, Verdict::Timeout | Verdict::Killed);
        // From here on nothing of this run may act, whatever is still queued in the runtime.
        self.current.set(run_number + 1);
        report(&state, &run, verdict);
        if hit_limit {
            // The runtime may be mid-way through anything; never touch it again.
            exit_now(0);
        }
        drop(context);
        let mut kept = kept;
        kept.runs += 1;
        if kept.reusable().await {
            self.kept = Some(kept);
        }
        channel.send(&FromWorker::Idle);
    }
}

/// The error text of a result over the cap.
pub(crate) fn result_too_large(max: usize) -> String {
    format!("result exceeds {max} bytes")
}

/// Sends the dropped-lines note (if any) and the `done` message.
fn report(state: &RunState, run: &RunMessage, verdict: Verdict) {
    let dropped = state.dropped.get();
    if dropped > 0 {
        state.channel.send(&FromWorker::Log(LogLine {
            level: "warn".into(),
            message: format!("… {dropped} more log lines dropped (limit {} lines)", state.max_log_lines),
            at: unix_ms(),
        }));
    }
    let (status, result, error) = match verdict {
        Verdict::Completed(result) => (OutcomeStatus::Completed, result, None),
        Verdict::Failed(error) => (OutcomeStatus::Failed, None, Some(error)),
        Verdict::Timeout => {
            (OutcomeStatus::Timeout, None, Some(timed_out_message(Duration::from_millis(run.timeout_ms))))
        }
        Verdict::Killed => (OutcomeStatus::Killed, None, Some(memory_message(run.memory_limit_bytes))),
    };
    state.channel.send(&FromWorker::Done { status, result, error });
}

/// `execution timed out after 1s` (or `after 1500ms`).
pub(crate) fn timed_out_message(timeout: Duration) -> String {
    format!("execution timed out after {}", duration_text(timeout))
}

/// `1s`, or `1500ms` when it is not a whole number of seconds.
pub(crate) fn duration_text(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `memory limit of 64 MiB exceeded`.
pub(crate) fn memory_message(limit: usize) -> String {
    format!("memory limit of {} exceeded", memory_text(limit))
}

/// `64 MiB`, or a number of bytes when it is not a whole number of MiB.
pub(crate) fn memory_text(limit: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if limit % MIB == 0 {
        format!("{} MiB", limit / MIB)
    } else {
        format!("{limit} bytes")
    }
}

/// The job's code and what to do with it.
struct Source {
    /// `function`, `esm` (an ES module) or `cjs` (a CommonJS script).
    form: &'static str,
    code: String,
    /// Answer the module's job definition instead of running it.
    describe: bool,
}

/// Blocks the worker's thread until `at`: sleeps until shortly before it, then spins, so that the job starts on the
/// instant rather than up to a timer tick late. Nothing else has to run on this thread meanwhile.
fn wait_until(at: Instant) {
    const SPIN: Duration = Duration::from_micros(50);
    let left = at.saturating_duration_since(Instant::now());
    if left > SPIN {
        std::thread::sleep(left - SPIN);
    }
    while Instant::now() < at {
        std::hint::spin_loop();
    }
}

/// Loads one of [`Bytecode`]'s modules into the context, evaluates it and answers its default export.
fn load_default<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Function<'js>> {
    // SAFETY: the bytecode was written by `compile_prelude` in this very process, from our own source.
    let module = unsafe { Module::load(ctx.clone(), bytecode) }?;
    let (module, _evaluated) = module.eval()?;
    module.get("default")
}

/// Evaluates the prelude and hands it the natives, the code and the job; answers the function that starts the job.
fn start<'js>(
    ctx: &Ctx<'js>,
    bytecode: &Bytecode,
    state: &Rc<RunState>,
    source: Source,
    job_json: String,
    env_json: String,
    max_result_bytes: usize,
) -> rquickjs::Result<Function<'js>> {
    let prelude = load_default(ctx, &bytecode.prelude)?;
    let natives = natives(ctx, state, bytecode.parts.clone())?;
    let limits = Object::new(ctx.clone())?;
    limits.set("maxResultBytes", max_result_bytes as f64)?;
    limits.set("maxLogLineBytes", state.max_log_line_bytes as f64)?;
    limits.set("maxErrorBytes", MAX_ERROR_BYTES as f64)?;
    let options = Object::new(ctx.clone())?;
    options.set("form", source.form)?;
    options.set("describe", source.describe)?;
    options.set("importRefusedCode", IMPORT_REFUSED_CODE)?;
    prelude.call::<_, Function>((natives, source.code, job_json, env_json, limits, options))
}

/// The native functions the prelude builds on. They are passed to the prelude, never put on the global object.
fn natives<'js>(
    ctx: &Ctx<'js>,
    state: &Rc<RunState>,
    parts: Rc<Vec<(&'static str, Vec<u8>)>>,
) -> rquickjs::Result<Object<'js>> {
    let natives = Object::new(ctx.clone())?;

    natives.set(
        "loadPart",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, name: String| -> rquickjs::Result<Function<'js>> {
            let Some((_, bytecode)) = parts.iter().find(|(part, _)| *part == name) else {
                return Err(rquickjs::Exception::throw_type(&ctx, "no such part of the prelude"));
            };
            load_default(&ctx, bytecode)
        })?,
    )?;

    let log_state = state.clone();
    natives
        .set("log", Function::new(ctx.clone(), move |level: String, message: String| log_state.log(level, message))?)?;

    let host_state = state.clone();
    natives.set(
        "host",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, method: String, args: String| {
            host_state.host_call(&ctx, method, args)
        })?,
    )?;

    natives.set(
        "sleep",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, ms: f64| {
            let ms = if ms.is_finite() { ms.clamp(0.0, MAX_TIMER_MS) } else { 0.0 };
            Promise::wrap_future(&ctx, async move {
                tokio::time::sleep(Duration::from_millis(ms as u64)).await;
            })
        })?,
    )?;

    let started = state.started;
    natives.set(
        "now",
        // Whole milliseconds only: a coarse clock blunts timing attacks.
        Function::new(ctx.clone(), move || started.elapsed().as_millis() as f64)?,
    )?;

    natives.set(
        "random",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, count: f64| {
            let count = if count.is_finite() { count.clamp(0.0, MAX_RANDOM_BYTES as f64) as usize } else { 0 };
            let mut bytes = vec![0u8; count];
            fill_random(&mut bytes);
            ArrayBuffer::new(ctx, bytes)
        })?,
    )?;

    natives.set("evalModule", Function::new(ctx.clone(), modules::eval_module)?)?;
    natives.set("evalScript", Function::new(ctx.clone(), modules::eval_script)?)?;

    let settle_state = state.clone();
    natives.set(
        "settle",
        Function::new(ctx.clone(), move |ok: bool, text: Opt<String>| settle_state.settle(ok, text.0))?,
    )?;

    Ok(natives)
}

impl RunState {
    /// Whether this run is still the one the worker is running (a later run's natives are other objects).
    fn is_current(&self) -> bool {
        self.current.get() == self.run
    }

    fn log(&self, level: String, message: String) {
        if !self.is_current() {
            return;
        }
        let written = self.lines.get();
        if written >= self.max_log_lines {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        self.lines.set(written + 1);
        let level = match level.as_str() {
            "info" | "warn" | "error" => level,
            _ => "log".to_owned(),
        };
        self.channel.send(&FromWorker::Log(LogLine {
            level,
            message: truncate(message, self.max_log_line_bytes),
            at: unix_ms(),
        }));
    }

    /// Sends a host call and returns a promise of its reply: `"o<json>"` for a value, `"e<message>"` for an error.
    fn host_call<'js>(&self, ctx: &Ctx<'js>, method: String, args: String) -> rquickjs::Result<Promise<'js>> {
        if !self.is_current() {
            let message = format!("e{method}: the execution has ended");
            return Promise::wrap_future(ctx, async move { message });
        }
        if self.describing {
            let message = format!("e{method}: host calls are not available while describing a job");
            return Promise::wrap_future(ctx, async move { message });
        }
        if self.in_flight.get() >= self.max_host_calls_in_flight {
            let message = format!(
                "e{method}: too many host calls in flight (limit {}); await some before making more",
                self.max_host_calls_in_flight
            );
            return Promise::wrap_future(ctx, async move { message });
        }
        if args.len() > MAX_HOST_ARGS_BYTES {
            let message = format!("e{method}: arguments exceed {MAX_HOST_ARGS_BYTES} bytes");
            return Promise::wrap_future(ctx, async move { message });
        }
        let (reply_tx, reply_rx) = oneshot::channel::<HostReply>();
        let call = self.channel.register(reply_tx);
        let guard = CallGuard::new(self.channel.clone(), call, self.in_flight.clone());
        self.channel.send(&FromWorker::HostCall { call, method, args });
        Promise::wrap_future(ctx, async move {
            let _guard = guard;
            match reply_rx.await {
                Ok(HostReply { ok: true, payload }) => format!("o{payload}"),
                Ok(HostReply { ok: false, payload }) => format!("e{payload}"),
                Err(_) => "ethe host call was cancelled".to_owned(),
            }
        })
    }

    fn settle(&self, ok: bool, text: Option<String>) {
        let sender = self.settled.borrow_mut().take();
        if let Some(sender) = sender {
            let settled = if ok { Settled::Returned(text) } else { Settled::Threw(text.unwrap_or_default()) };
            let _ = sender.send(settled);
        }
    }
}

/// Counts a host call as in flight until its promise settles or is dropped.
struct CallGuard {
    channel: Rc<Channel>,
    call: u64,
    in_flight: Rc<Cell<usize>>,
}

impl CallGuard {
    fn new(channel: Rc<Channel>, call: u64, in_flight: Rc<Cell<usize>>) -> Self {
        in_flight.set(in_flight.get() + 1);
        CallGuard { channel, call, in_flight }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        self.channel.unregister(self.call);
    }
}

/// Cuts `message` to at most `max` bytes (on a character boundary) and says how much was cut.
pub(crate) fn truncate(mut message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let mut cut = max;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let removed = message.len() - cut;
    message.truncate(cut);
    message.push_str(&format!("… [{removed} more bytes]"));
    message
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Fills `bytes` from the kernel's random source (allowed by the seccomp filter).
fn fill_random(bytes: &mut [u8]) {
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No kernel randomness: never hand out zeros silently, so stop the worker.
            eprintln!("sundial sandbox worker: getrandom failed");
            exit_now(3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abc".into(), 8), "abc");
        assert_eq!(truncate("ééé".into(), 3), "é… [4 more bytes]");
    }

    #[test]
    fn messages_name_the_limits() {
        assert_eq!(timed_out_message(Duration::from_secs(1)), "execution timed out after 1s");
        assert_eq!(timed_out_message(Duration::from_millis(1500)), "execution timed out after 1500ms");
        assert_eq!(memory_message(64 * 1024 * 1024), "memory limit of 64 MiB exceeded");
    }
}
