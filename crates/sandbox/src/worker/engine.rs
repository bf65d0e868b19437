//! Runs executions in the worker's world: one QuickJS runtime and context with the prelude, `console` and the
//! library loaded, built once per worker and snapshotted (see `arena.rs`); every run starts from the snapshot.
//!
//! A run: the prelude's `start` compiles the job's function (or loads its file) and builds the job object; the
//! worker then waits for the run's instant and calls the function `start` answered; then it serves the event loop
//! (queued jobs, timers, host-call replies) until the job's promise settles, the deadline passes or the memory cap
//! is hit. The deadline is enforced twice: QuickJS's interrupt handler stops running JS (and stays armed while the
//! prelude serializes the result, the error text and log lines, since getters and `toJSON` run job code), and the
//! event loop stops waiting at the deadline for a job whose promise never settles. Elapsed time is checked once more
//! after the run.
//!
//! Whatever a run left behind (timers, host calls, queued jobs, garbage, an interrupted or out-of-memory runtime) is
//! gone with the restore, so a worker survives timeouts and the memory cap. The arena is restored just before the
//! next run (the copy leaves warm in the cache what that run uses), or at once after a run that used a lot of memory.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::{c_int, c_void};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rquickjs::qjs::{self, JSContext, JSRuntime, JSValue};

use super::arena::Arena;
use super::input::with_input;
use super::js;
use super::modules::{self, IMPORT_REFUSED_CODE, PRELUDE_NAME};
use super::{exit_now, syntax, Channel};
use crate::protocol::{FromWorker, RunMessage, Setup, ToWorker, MAX_ERROR_BYTES, MAX_HOST_ARGS_BYTES};
use crate::{CodeKind, LogLine, OutcomeStatus};

/// The JavaScript that builds the job's world: globals, the job object, serialization. See the file itself.
const PRELUDE: &str = include_str!("prelude.js");

/// The parts of the job's world the prelude loads (see the files themselves).
const PARTS: [(&str, &str); 2] = [("console", include_str!("console.js")), ("library", include_str!("library.js"))];

/// The longest a timer may wait, as in browsers (2^31 - 1 ms).
const MAX_TIMER_MS: f64 = 2_147_483_647.0;

/// The most random bytes one `crypto.getRandomValues` call may ask for, as in browsers.
const MAX_RANDOM_BYTES: usize = 65_536;

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

/// A promise's resolving functions (`resolve`, `reject`), owned until the promise is settled.
type Resolvers = [JSValue; 2];

/// What the natives know of the run in progress. Only JS of this run can call them: the arena is restored before
/// the next run, so nothing of an earlier run exists by then.
struct RunState {
    channel: Rc<Channel>,
    started: Instant,
    describing: bool,
    max_log_lines: usize,
    max_log_line_bytes: usize,
    max_host_calls_in_flight: usize,
    lines: usize,
    dropped: usize,
    /// Host calls awaiting their reply, by call id.
    calls: HashMap<u64, Resolvers>,
    /// Replies that arrived while a synchronous host call waited for its own.
    early_replies: Vec<ToWorker>,
    /// Timers by due instant (then id), and their promises.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    sleeping: HashMap<u64, Resolvers>,
    settled: Option<Settled>,
    /// `Math.random`'s state (xorshift128+), seeded per run.
    random: [u64; 2],
}

thread_local! {
    static RUN: RefCell<Option<RunState>> = const { RefCell::new(None) };
}

/// The next id of a host call or timer. Ids are unique for the life of the worker, not per run, so that nothing
/// addressed to an earlier run's call could ever be taken for a later run's.
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` on the current run's state, if a run is in progress.
fn with_run<T>(f: impl FnOnce(&mut RunState) -> T) -> Option<T> {
    RUN.with(|run| run.try_borrow_mut().ok().and_then(|mut run| run.as_mut().map(f)))
}

/// The instant the interrupt handler measures from, and the current run's deadline in nanoseconds after it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}
static DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);

fn set_deadline(deadline: Instant) {
    let nanos = deadline.saturating_duration_since(epoch()).as_nanos();
    DEADLINE.store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
}

unsafe extern "C" fn interrupt(_runtime: *mut JSRuntime, _opaque: *mut c_void) -> c_int {
    let late = epoch().elapsed().as_nanos() as u64 >= DEADLINE.load(Ordering::Relaxed);
    c_int::from(late || Arena::exceeded())
}

/// The worker's JavaScript engine: the arena, the runtime and context in it, and the prelude's `start`.
pub(crate) struct Engine {
    channel: Rc<Channel>,
    setup: Setup,
    arena: Arena,
    runtime: *mut JSRuntime,
    context: *mut JSContext,
    /// The prelude's `start`, a value of the snapshot (never freed: every restore brings it back).
    start: JSValue,
    /// Whether a run changed the arena since the last restore.
    dirty: bool,
    /// Where the function is in each code text this worker ran (see [`Engine::function_span`]).
    spans: HashMap<String, Option<FunctionSpan>>,
}

/// The function's own text within a job's code (byte range), and whether a "use strict" directive preceded it.
#[derive(Clone, Copy)]
struct FunctionSpan {
    start: usize,
    end: usize,
    strict: bool,
}

/// How many code texts [`Engine::function_span`] remembers before it starts over.
const SPANS_KEPT: usize = 256;

/// The address space an arena for a JS heap cap of `memory_limit` bytes spans: room for the cap twice over (blocks
/// are not coalesced) plus the world.
pub(crate) fn arena_size(memory_limit: usize) -> usize {
    memory_limit.saturating_mul(2).saturating_add(64 << 20)
}

impl Engine {
    /// Builds the world (runtime, context, prelude, console, library) in a fresh arena and takes its snapshot.
    pub(crate) fn build(channel: Rc<Channel>, setup: Setup) -> Result<Engine, String> {
        let mut arena = Arena::reserve(arena_size(setup.memory_limit_bytes))?;
        let functions = Arena::malloc_functions();
        // SAFETY: the runtime allocates from the arena only; everything below runs on this thread before any job.
        unsafe {
            let runtime = qjs::JS_NewRuntime2(&functions, std::ptr::null_mut());
            if runtime.is_null() {
                return Err("cannot create a JS runtime".into());
            }
            qjs::JS_SetInterruptHandler(runtime, Some(interrupt), std::ptr::null_mut());
            modules::install(runtime);
            let context = qjs::JS_NewContext(runtime);
            if context.is_null() {
                return Err("cannot create a JS context".into());
            }
            let start = world(context, &setup)?;
            let mut job_context = std::ptr::null_mut();
            while qjs::JS_ExecutePendingJob(runtime, &mut job_context) > 0 {}
            qjs::JS_RunGC(runtime);
            arena.take_snapshot();
            Ok(Engine { channel, setup, arena, runtime, context, start, dirty: false, spans: HashMap::new() })
        }
    }

    /// The bytes each run's restore copies.
    pub(crate) fn snapshot_len(&self) -> usize {
        self.arena.snapshot_len()
    }

    /// Runs one execution and reports it; reads host-call replies from the channel meanwhile.
    pub(crate) fn execute(&mut self, run: RunMessage) {
        // The job starts on the instant the pool asked for; its time limit counts from then.
        let delay = match run.start_at_monotonic_ns {
            0 => Duration::ZERO,
            at => Duration::from_nanos(at.saturating_sub(crate::protocol::monotonic_ns())),
        };
        let delay = delay.min(crate::MAX_START_DELAY);
        let started = Instant::now() + delay;
        let timeout = Duration::from_millis(run.timeout_ms).min(crate::MAX_TIMEOUT);
        let deadline = started + timeout;
        let mut seed = [0u8; 16];
        fill_random(&mut seed);
        let random = [
            u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()) | 1,
            u64::from_le_bytes(seed[8..].try_into().unwrap_or_default()),
        ];
        RUN.with(|state| {
            *state.borrow_mut() = Some(RunState {
                channel: self.channel.clone(),
                started,
                describing: run.describe,
                max_log_lines: self.setup.max_log_lines,
                max_log_line_bytes: self.setup.max_log_line_bytes,
                max_host_calls_in_flight: self.setup.max_host_calls_in_flight,
                lines: 0,
                dropped: 0,
                calls: HashMap::new(),
                early_replies: Vec::new(),
                timers: BinaryHeap::new(),
                sleeping: HashMap::new(),
                settled: None,
                random,
            })
        });
        if self.dirty {
            self.arena.restore();
            self.dirty = false;
        }
        self.arena.arm(self.setup.memory_limit_bytes);
        set_deadline(deadline);

        let form = match run.kind {
            CodeKind::Function => "function",
            CodeKind::Module if syntax::is_es_module(&run.code) => "esm",
            CodeKind::Module => "cjs",
        };
        // A function as people paste it: the function itself, without the comments, directives and semicolons around
        // it; code that is not one is passed as it is, for the prelude to report its syntax error.
        let function = match run.kind {
            CodeKind::Function => self.function_span(&run.code),
            CodeKind::Module => None,
        };
        let code = function.and_then(|span| run.code.get(span.start..span.end)).unwrap_or(run.code.as_str());
        let strict = function.is_some_and(|span| span.strict);
        let env = serde_json::to_string(&run.env).unwrap_or_else(|_| "{}".to_owned());
        // SAFETY: the world's context is live (restored); every value made here is freed or owned by the runtime.
        let outcome = unsafe {
            let ctx = self.context;
            qjs::JS_UpdateStackTop(self.runtime);
            let options = qjs::JS_NewObject(ctx);
            js::set(ctx, options, c"form", js::string(ctx, form));
            js::set(ctx, options, c"describe", if run.describe { qjs::JS_TRUE } else { qjs::JS_FALSE });
            js::set(ctx, options, c"strict", if strict { qjs::JS_TRUE } else { qjs::JS_FALSE });
            let mut args = [js::string(ctx, code), js::string(ctx, run.job.get()), js::string(ctx, &env), options];
            let go = js::call(ctx, self.start, &mut args);
            for arg in args {
                js::free(ctx, arg);
            }
            if js::is_exception(go) {
                let error = js::take_exception(ctx);
                Err(format!("the sandbox could not start the job: {error}"))
            } else {
                wait_until(started);
                let returned = js::call(ctx, go, &mut []);
                js::free(ctx, go);
                if js::is_exception(returned) {
                    let error = js::take_exception(ctx);
                    Err(format!("the sandbox could not start the job: {error}"))
                } else {
                    js::free(ctx, returned);
                    self.event_loop(deadline)
                }
            }
        };

        let elapsed = Instant::now().saturating_duration_since(started);
        let settled = with_run(|state| state.settled.take()).flatten();
        let verdict = if Arena::exceeded() {
            Verdict::Killed
        } else if elapsed >= timeout {
            Verdict::Timeout
        } else {
            match (outcome, settled) {
                (_, Some(Settled::Returned(Some(text)))) if text.len() > self.setup.max_result_bytes => {
                    Verdict::Failed(result_too_large(self.setup.max_result_bytes))
                }
                (_, Some(Settled::Returned(text))) => Verdict::Completed(text),
                (_, Some(Settled::Threw(error))) => Verdict::Failed(truncate(error, MAX_ERROR_BYTES)),
                (Err(error), None) => Verdict::Failed(truncate(error, MAX_ERROR_BYTES)),
                (Ok(()), None) => Verdict::Timeout,
            }
        };
        self.report(&run, verdict);
        // Nothing of this run may survive it: its state goes (without touching the JS values it holds, which the
        // restore makes meaningless), and no JS runs again before the arena is back to the snapshot.
        RUN.with(|state| state.borrow_mut().take());
        // The arena goes back to the snapshot just before the next run, so that the copy leaves warm in the cache
        // what that run is about to use; a run that used a lot of memory is undone at once, to give it back.
        self.dirty = true;
        if self.arena.grew_much() {
            self.arena.restore();
            self.dirty = false;
        }
    }

    /// Where the function is in `code`, read once per code text: most runs repeat a text the worker ran before.
    fn function_span(&mut self, code: &str) -> Option<FunctionSpan> {
        if let Some(span) = self.spans.get(code) {
            return *span;
        }
        let span = crate::source::function_source(code).ok().map(|function| FunctionSpan {
            start: function.offset,
            end: function.offset + function.body.len(),
            strict: function.strict,
        });
        if self.spans.len() >= SPANS_KEPT {
            self.spans.clear();
        }
        self.spans.insert(code.to_owned(), span);
        span
    }

    /// Serves queued jobs, timers and host-call replies until the job settles, the deadline passes or the memory
    /// cap is hit.
    unsafe fn event_loop(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            // SAFETY: the runtime is live; exceptions of queued jobs are the job's own (the prelude reports them).
            unsafe { self.run_jobs() };
            let settled = with_run(|state| state.settled.is_some()).unwrap_or(true);
            if settled || Arena::exceeded() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            if let Some(due) = with_run(|state| state.due_timer(now)).flatten() {
                // SAFETY: the resolvers are live values of this run.
                unsafe { self.settle_promise(due, js::UNDEFINED) };
                continue;
            }
            let early = with_run(|state| std::mem::take(&mut state.early_replies)).unwrap_or_default();
            let wake = with_run(|state| state.timers.peek().map(|Reverse((at, _))| *at)).flatten();
            let until = wake.map_or(deadline, |wake| wake.min(deadline));
            let frames = if early.is_empty() { with_input(|input| input.wait(until)) } else { Ok(early) };
            match frames {
                Ok(frames) => {
                    for frame in frames {
                        match frame {
                            ToWorker::HostReply { call, ok, payload } => {
                                let resolvers = with_run(|state| state.calls.remove(&call)).flatten();
                                if let Some(resolvers) = resolvers {
                                    let answer = format!("{}{payload}", if ok { 'o' } else { 'e' });
                                    // SAFETY: the resolvers are live values of this run; the string is freed.
                                    unsafe {
                                        let text = js::string(self.context, &answer);
                                        self.settle_promise(resolvers, text);
                                        js::free(self.context, text);
                                    }
                                }
                            }
                            // The pool sends nothing else while a run is in progress.
                            _ => exit_now(4),
                        }
                    }
                }
                // The pool is gone: there is nobody left to report to.
                Err(_) => exit_now(0),
            }
        }
    }

    /// Runs queued jobs (promise reactions) until there are none, or the job settled, or a limit was hit.
    unsafe fn run_jobs(&self) {
        let mut job_context = std::ptr::null_mut();
        loop {
            // SAFETY: the runtime is live.
            let ran = unsafe { qjs::JS_ExecutePendingJob(self.runtime, &mut job_context) };
            if ran == 0 {
                return;
            }
            if ran < 0 && !job_context.is_null() {
                // SAFETY: the failed job's exception is taken and dropped (an interrupt, or a reaction that threw).
                unsafe { js::free(job_context, qjs::JS_GetException(job_context)) };
            }
            if Arena::exceeded() || with_run(|state| state.settled.is_some()).unwrap_or(true) {
                return;
            }
        }
    }

    /// Resolves a promise with `value` (not consumed) and frees its resolving functions.
    unsafe fn settle_promise(&self, resolvers: Resolvers, value: JSValue) {
        let ctx = self.context;
        // SAFETY: the resolvers are owned by the caller and live.
        unsafe {
            let returned = js::call(ctx, resolvers[0], &mut [value]);
            if js::is_exception(returned) {
                js::free(ctx, qjs::JS_GetException(ctx));
            } else {
                js::free(ctx, returned);
            }
            js::free(ctx, resolvers[0]);
            js::free(ctx, resolvers[1]);
        }
    }

    /// Sends the dropped-lines note (if any) and the `done` message.
    fn report(&self, run: &RunMessage, verdict: Verdict) {
        let dropped = with_run(|state| state.dropped).unwrap_or(0);
        if dropped > 0 {
            self.channel.send(&FromWorker::Log(LogLine {
                level: "warn".into(),
                message: format!("… {dropped} more log lines dropped (limit {} lines)", self.setup.max_log_lines),
                at: unix_ms(),
            }));
        }
        let (status, result, error) = match verdict {
            Verdict::Completed(result) => (OutcomeStatus::Completed, result, None),
            Verdict::Failed(error) => (OutcomeStatus::Failed, None, Some(error)),
            Verdict::Timeout => {
                (OutcomeStatus::Timeout, None, Some(timed_out_message(Duration::from_millis(run.timeout_ms))))
            }
            Verdict::Killed => (OutcomeStatus::Killed, None, Some(memory_message(self.setup.memory_limit_bytes))),
        };
        self.channel.send(&FromWorker::Done { status, result, error });
    }
}

/// Evaluates the prelude and hands it the natives and the settings; answers `start`.
unsafe fn world(ctx: *mut JSContext, setup: &Setup) -> Result<JSValue, String> {
    // SAFETY: the context is live and no job code exists yet.
    unsafe {
        let prelude_name = PRELUDE_NAME.to_string_lossy();
        let prelude = modules::load_default(ctx, &prelude_name, &modules::compile(&prelude_name, PRELUDE)?)?;
        let natives = qjs::JS_NewObject(ctx);
        let list: [(&std::ffi::CStr, js::Native, c_int); 12] = [
            (c"loadPart", native_load_part, 1),
            (c"log", native_log, 2),
            (c"host", native_host, 2),
            (c"hostSync", native_host_sync, 2),
            (c"sleep", native_sleep, 1),
            (c"now", native_now, 0),
            (c"random", native_random, 1),
            (c"settle", native_settle, 2),
            (c"evalModule", modules::eval_module, 1),
            (c"evalScript", modules::eval_script, 1),
            (c"evalFunction", modules::eval_function, 1),
            (c"mathRandom", native_math_random, 0),
        ];
        for (name, native, length) in list {
            // `Math.random` keeps its own name; the prelude installs it.
            let function_name = if name == c"mathRandom" { c"random" } else { name };
            js::set(ctx, natives, name, js::function(ctx, native, function_name, length));
        }
        let settings = qjs::JS_NewObject(ctx);
        js::set(ctx, settings, c"maxResultBytes", qjs::JS_NewFloat64(setup.max_result_bytes as f64));
        js::set(ctx, settings, c"maxLogLineBytes", qjs::JS_NewFloat64(setup.max_log_line_bytes as f64));
        js::set(ctx, settings, c"maxErrorBytes", qjs::JS_NewFloat64(MAX_ERROR_BYTES as f64));
        js::set(ctx, settings, c"importRefusedCode", js::string(ctx, IMPORT_REFUSED_CODE));
        let start = js::call(ctx, prelude, &mut [natives, settings]);
        js::free(ctx, natives);
        js::free(ctx, settings);
        js::free(ctx, prelude);
        if js::is_exception(start) {
            return Err(format!("the prelude does not build the world: {}", js::take_exception(ctx)));
        }
        Ok(start)
    }
}

impl RunState {
    /// Takes the first timer that is due at `now`.
    fn due_timer(&mut self, now: Instant) -> Option<Resolvers> {
        loop {
            let Reverse((at, id)) = *self.timers.peek()?;
            if at > now {
                return None;
            }
            self.timers.pop();
            if let Some(resolvers) = self.sleeping.remove(&id) {
                return Some(resolvers);
            }
        }
    }

    fn log(&mut self, level: String, message: String) {
        if self.lines >= self.max_log_lines {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
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

    /// `Math.random`: the next number of xorshift128+, in [0, 1).
    fn next_random(&mut self) -> f64 {
        let [mut s1, s0] = self.random;
        self.random[0] = s0;
        s1 ^= s1 << 23;
        s1 ^= s1 >> 17;
        s1 ^= s0;
        s1 ^= s0 >> 26;
        self.random[1] = s1;
        (s0.wrapping_add(s1) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A promise and its resolvers.
unsafe fn new_promise(ctx: *mut JSContext) -> Option<(JSValue, Resolvers)> {
    let mut resolvers = [js::UNDEFINED; 2];
    // SAFETY: `resolvers` has room for the two functions QuickJS writes.
    let promise = unsafe { qjs::JS_NewPromiseCapability(ctx, resolvers.as_mut_ptr()) };
    (!js::is_exception(promise)).then_some((promise, resolvers))
}

/// A promise already resolved with the string `text` (a host call refused in the worker: `"e<message>"`).
unsafe fn resolved_with(ctx: *mut JSContext, text: &str) -> JSValue {
    // SAFETY: a fresh promise, resolved at once; its resolvers are freed here.
    unsafe {
        let Some((promise, resolvers)) = new_promise(ctx) else { return qjs::JS_EXCEPTION };
        let value = js::string(ctx, text);
        let returned = js::call(ctx, resolvers[0], &mut [value]);
        js::free(ctx, returned);
        js::free(ctx, value);
        js::free(ctx, resolvers[0]);
        js::free(ctx, resolvers[1]);
        promise
    }
}

// ---- The natives the prelude builds on. They are passed to the prelude, never put on the global object. ----

/// `loadPart(name)`: evaluates a part of the world and answers its default export (used while the world is built).
unsafe extern "C" fn native_load_part(ctx: *mut JSContext, _this: JSValue, argc: c_int, argv: *mut JSValue) -> JSValue {
    // SAFETY: natives are called by QuickJS with valid arguments.
    unsafe {
        let name = js::string_arg(ctx, argc, argv, 0).unwrap_or_default();
        let Some((part, source)) = PARTS.iter().find(|(part, _)| *part == name) else {
            return js::throw_type_error(ctx, "no such part of the prelude");
        };
        let name = format!("{}/{part}", PRELUDE_NAME.to_string_lossy());
        match modules::compile(&name, source).and_then(|bytecode| modules::load_default(ctx, &name, &bytecode)) {
            Ok(default) => default,
            Err(error) => js::throw_type_error(ctx, &error),
        }
    }
}

/// `log(level, message)`: one console line, streamed to the pool.
unsafe extern "C" fn native_log(ctx: *mut JSContext, _this: JSValue, argc: c_int, argv: *mut JSValue) -> JSValue {
    // SAFETY: as above. The arguments are read before the run state is borrowed (reading may run JS).
    let (level, message) = unsafe {
        (js::string_arg(ctx, argc, argv, 0).unwrap_or_default(), js::string_arg(ctx, argc, argv, 1).unwrap_or_default())
    };
    with_run(|state| state.log(level, message));
    js::UNDEFINED
}

/// `host(method, args)`: sends a host call and answers a promise of its reply, `"o<json>"` for a value or
/// `"e<message>"` for an error.
unsafe extern "C" fn native_host(ctx: *mut JSContext, _this: JSValue, argc: c_int, argv: *mut JSValue) -> JSValue {
    // SAFETY: as above.
    unsafe {
        let method = js::string_arg(ctx, argc, argv, 0).unwrap_or_default();
        let args = js::string_arg(ctx, argc, argv, 1).unwrap_or_default();
        let refused = with_run(|state| {
            if state.describing {
                Some(format!("e{method}: host calls are not available while describing a job"))
            } else if state.calls.len() >= state.max_host_calls_in_flight {
                Some(format!(
                    "e{method}: too many host calls in flight (limit {}); await some before making more",
                    state.max_host_calls_in_flight
                ))
            } else if args.len() > MAX_HOST_ARGS_BYTES {
                Some(format!("e{method}: arguments exceed {MAX_HOST_ARGS_BYTES} bytes"))
            } else {
                None
            }
        })
        .unwrap_or_else(|| Some(format!("e{method}: the execution has ended")));
        if let Some(refused) = refused {
            return resolved_with(ctx, &refused);
        }
        let Some((promise, resolvers)) = new_promise(ctx) else { return qjs::JS_EXCEPTION };
        let sent = with_run(|state| {
            let call = next_id();
            state.calls.insert(call, resolvers);
            state.channel.clone().send(&FromWorker::HostCall { call, method, args });
        });
        if sent.is_none() {
            js::free(ctx, resolvers[0]);
            js::free(ctx, resolvers[1]);
        }
        promise
    }
}

/// `hostSync(method, args)`: a host call whose reply the job waits for without yielding, `"o<json>"` or
/// `"e<message>"` (for what must read as a plain property, `job.data`). Replies to other calls that arrive
/// meanwhile are kept for the event loop.
unsafe extern "C" fn native_host_sync(ctx: *mut JSContext, _this: JSValue, argc: c_int, argv: *mut JSValue) -> JSValue {
    // SAFETY: as above.
    let (method, args) = unsafe {
        (js::string_arg(ctx, argc, argv, 0).unwrap_or_default(), js::string_arg(ctx, argc, argv, 1).unwrap_or_default())
    };
    let sent = with_run(|state| {
        if state.describing {
            return None;
        }
        let call = next_id();
        state.channel.clone().send(&FromWorker::HostCall { call, method: method.clone(), args });
        Some(call)
    })
    .flatten();
    let Some(call) = sent else {
        let refused = format!("e{method}: host calls are not available while describing a job");
        // SAFETY: a new string for the caller.
        return unsafe { js::string(ctx, &refused) };
    };
    let deadline = epoch()
        .checked_add(Duration::from_nanos(DEADLINE.load(Ordering::Relaxed)))
        .unwrap_or_else(|| Instant::now() + crate::MAX_TIMEOUT);
    loop {
        let frames = match with_input(|input| input.wait(deadline)) {
            Ok(frames) => frames,
            Err(_) => exit_now(0),
        };
        if frames.is_empty() {
            // SAFETY: as above; the run is past its deadline and ends `timeout`.
            return unsafe { js::throw_type_error(ctx, &format!("{method}: the execution timed out")) };
        }
        let mut answer = None;
        for frame in frames {
            match frame {
                ToWorker::HostReply { call: replied, ok, payload } if replied == call => {
                    answer = Some(format!("{}{payload}", if ok { 'o' } else { 'e' }));
                }
                ToWorker::HostReply { .. } => {
                    with_run(|state| state.early_replies.push(frame));
                }
                _ => exit_now(4),
            }
        }
        if let Some(answer) = answer {
            // SAFETY: as above.
            return unsafe { js::string(ctx, &answer) };
        }
    }
}

/// `sleep(ms)`: a promise that resolves after `ms` milliseconds.
unsafe extern "C" fn native_sleep(ctx: *mut JSContext, _this: JSValue, argc: c_int, argv: *mut JSValue) -> JSValue {
    // SAFETY: as above.
    unsafe {
        let ms = js::number_arg(ctx, argc, argv, 0);
        let ms = if ms.is_finite() { ms.clamp(0.0, MAX_TIMER_MS) } else { 0.0 };
        let Some((promise, resolvers)) = new_promise(ctx) else { return qjs::JS_EXCEPTION };
        let at = Instant::now() + Duration::from_millis(ms as u64);
        let kept = with_run(|state| {
            let id = next_id();
            state.timers.push(Reverse((at, id)));
            state.sleeping.insert(id, resolvers);
        });
        if kept.is_none() {
            js::free(ctx, resolvers[0]);
            js::free(ctx, resolvers[1]);
        }
        promise
    }
}

/// `now()`: milliseconds since the run started, whole milliseconds only (a coarse clock blunts timing attacks).
unsafe extern "C" fn native_now(_ctx: *mut JSContext, _this: JSValue, _argc: c_int, _argv: *mut JSValue) -> JSValue {
    let elapsed = with_run(|state| state.started.elapsed().as_millis() as f64).unwrap_or(0.0);
    qjs::JS_NewFloat64(elapsed)
}

/// `random(count)`: an ArrayBuffer of `count` random bytes from the kernel.
unsafe extern "C" fn native_random(ctx: *mut JSContext, _this: JSValue, argc: c_int, argv: *mut JSValue) -> JSValue {
    // SAFETY: as above.
    unsafe {
        let count = js::number_arg(ctx, argc, argv, 0);
        let count = if count.is_finite() { count.clamp(0.0, MAX_RANDOM_BYTES as f64) as usize } else { 0 };
        let mut bytes = vec![0u8; count];
        fill_random(&mut bytes);
        qjs::JS_NewArrayBufferCopy(ctx, bytes.as_ptr(), count as qjs::size_t)
    }
}

/// `Math.random()`, from the run's own generator.
unsafe extern "C" fn native_math_random(
    _ctx: *mut JSContext,
    _this: JSValue,
    _argc: c_int,
    _argv: *mut JSValue,
) -> JSValue {
    qjs::JS_NewFloat64(with_run(RunState::next_random).unwrap_or(0.5))
}

/// `settle(ok, text?)`: how the job ended; only the first call counts.
unsafe extern "C" fn native_settle(ctx: *mut JSContext, _this: JSValue, argc: c_int, argv: *mut JSValue) -> JSValue {
    // SAFETY: as above.
    let (ok, text) = unsafe {
        let ok = js::bool_arg(ctx, argc, argv, 0);
        let text = if qjs::JS_IsUndefined(js::arg(argc, argv, 1)) { None } else { js::string_arg(ctx, argc, argv, 1) };
        (ok, text)
    };
    with_run(|state| {
        if state.settled.is_none() {
            state.settled = Some(if ok { Settled::Returned(text) } else { Settled::Threw(text.unwrap_or_default()) });
        }
    });
    js::UNDEFINED
}

/// The error text of a result over the cap.
pub(crate) fn result_too_large(max: usize) -> String {
    format!("result exceeds {max} bytes")
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

/// Blocks the worker's thread until `at` (never earlier: a sleep does not end before its time, and the worker's
/// timer slack is 1 µs). Nothing else has to run on this thread meanwhile.
fn wait_until(at: Instant) {
    loop {
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left);
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
