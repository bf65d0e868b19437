//! The sandbox worker process: hardens itself, greets the pool, then runs one execution per request,
//! each in a fresh context of a runtime it keeps while runs leave nothing behind.
//!
//! Threads: the main thread runs executions on a single-threaded tokio runtime (QuickJS runtimes cannot move
//! between threads); a reader thread reads frames from stdin, hands `run`/`test` requests to the main thread and
//! routes host-call replies straight to the waiting execution. Both exist before the seccomp filter is installed,
//! so the filter can refuse `clone`.

mod alloc;
mod engine;
mod modules;
mod seccomp;
mod syntax;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

pub(crate) use engine::{duration_text, memory_message, memory_text, result_too_large, timed_out_message, truncate};

use crate::protocol::{self, FromWorker, RunMessage, TestAction, ToWorker};
use crate::OutcomeStatus;

/// A host call's answer as the worker receives it.
pub(crate) struct HostReply {
    pub ok: bool,
    pub payload: String,
}

type PendingCalls = Arc<Mutex<HashMap<u64, oneshot::Sender<HostReply>>>>;

/// Requests that the reader thread hands to the main thread.
enum Request {
    Run(Box<RunMessage>),
    Test(TestAction),
}

/// The worker's side of the channel: writes frames to the pool and keeps track of outstanding host calls.
pub(crate) struct Channel {
    out: RefCell<File>,
    pending: PendingCalls,
    next_call: Cell<u64>,
}

impl Channel {
    /// Sends one message. A pool that stopped listening ends the worker: there is nobody left to answer to.
    pub(crate) fn send(&self, message: &FromWorker) {
        let result = match self.out.try_borrow_mut() {
            Ok(mut out) => protocol::write_frame(&mut *out, message),
            Err(_) => Err(std::io::Error::other("channel busy")),
        };
        if result.is_err() {
            exit_now(0);
        }
    }

    /// Registers a host call and returns its id; the reply arrives on `reply`.
    pub(crate) fn register(&self, reply: oneshot::Sender<HostReply>) -> u64 {
        let call = self.next_call.get();
        self.next_call.set(call + 1);
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(call, reply);
        }
        call
    }

    /// Forgets a host call whose execution no longer waits for it.
    pub(crate) fn unregister(&self, call: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&call);
        }
    }
}

/// Ends the process at once, without running destructors (which could touch a QuickJS runtime that hit a limit).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// The worker process's entry point.
///
/// The `sundial` binary calls this for its hidden `worker` subcommand before it does anything else (it closes every
/// descriptor but 0, 1 and 2); `sundial-sandbox-worker` just calls it. It speaks the protocol described in the
/// crate documentation on stdin and stdout and returns when the pool closes stdin.
pub fn worker_main() -> ExitCode {
    let out_fd = match setup_descriptors() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("sundial sandbox worker: cannot set up descriptors: {e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: `setup_descriptors` returned a fresh descriptor that nothing else owns.
    let out = unsafe { File::from_raw_fd(out_fd) };

    let bytecode = match engine::compile_prelude() {
        Ok(bytecode) => bytecode,
        Err(e) => {
            eprintln!("sundial sandbox worker: {e}");
            return ExitCode::from(2);
        }
    };

    let pending: PendingCalls = Arc::new(Mutex::new(HashMap::new()));
    let (requests_tx, requests) = mpsc::channel::<Request>();
    let reader_pending = pending.clone();
    let (ready_tx, ready) = mpsc::channel::<()>();
    let reader = std::thread::Builder::new().name("sandbox-reader".into()).stack_size(256 * 1024).spawn(move || {
        // The thread's own start-up (stack guard, signal stack) is done once this runs: let the filter go on.
        let _ = ready_tx.send(());
        read_requests(requests_tx, reader_pending)
    });
    if let Err(e) = reader {
        eprintln!("sundial sandbox worker: cannot start reader thread: {e}");
        return ExitCode::from(2);
    }
    let _ = ready.recv();

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sundial sandbox worker: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };

    // A run handed over ahead of its instant sleeps until just before it (see `engine::wait_until`): the kernel's
    // default timer slack (50 µs) would make that sleep end late by as much.
    // SAFETY: sets a property of this thread only; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0u64, 0u64, 0u64) };
    let seccomp = seccomp::install(out_fd);
    let channel = Rc::new(Channel { out: RefCell::new(out), pending, next_call: Cell::new(1) });
    channel.send(&FromWorker::Hello {
        pid: std::process::id(),
        seccomp: seccomp.is_ok(),
        seccomp_error: seccomp.err(),
    });

    let mut engine = engine::Engine::new(channel.clone(), bytecode);
    while let Ok(request) = requests.recv() {
        match request {
            Request::Run(run) => runtime.block_on(engine.execute(*run)),
            Request::Test(TestAction::Abort) => std::process::abort(),
            Request::Test(TestAction::OpenFile { path }) => {
                let result = match File::open(&path) {
                    Ok(_) => serde_json::json!({ "opened": true }),
                    Err(e) => serde_json::json!({ "opened": false, "error": e.to_string() }),
                };
                channel.send(&FromWorker::Done {
                    status: OutcomeStatus::Completed,
                    result: Some(result.to_string()),
                    error: None,
                });
                channel.send(&FromWorker::Idle);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Reads frames from stdin until it closes; the worker exits with it.
fn read_requests(requests: mpsc::Sender<Request>, pending: PendingCalls) {
    let mut input = BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
    loop {
        match protocol::read_frame::<ToWorker>(&mut input) {
            Ok(Some(ToWorker::Run(run))) => {
                if requests.send(Request::Run(Box::new(run))).is_err() {
                    break;
                }
            }
            Ok(Some(ToWorker::Test { action })) => {
                if requests.send(Request::Test(action)).is_err() {
                    break;
                }
            }
            Ok(Some(ToWorker::HostReply { call, ok, payload })) => {
                let waiting = pending.lock().ok().and_then(|mut pending| pending.remove(&call));
                if let Some(waiting) = waiting {
                    let _ = waiting.send(HostReply { ok, payload });
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    // The pool is gone or spoke nonsense: stop at once, whatever the main thread is doing.
    let _ = std::io::stderr().flush();
    exit_now(0);
}

/// Closes every inherited descriptor but 0, 1 and 2, moves the protocol's output off fd 1 (so a stray print from a
/// library cannot corrupt the channel) and returns the new output descriptor.
fn setup_descriptors() -> std::io::Result<RawFd> {
    close_inherited_descriptors();
    // SAFETY: plain descriptor syscalls on descriptors this process owns.
    unsafe {
        let out = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if out < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(out)
    }
}

fn close_inherited_descriptors() {
    // SAFETY: closing descriptors that no Rust object of this process owns yet (this runs first thing).
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } == 0;
    if !closed {
        for fd in 3..1024 {
            // SAFETY: as above; errors for descriptors that are not open are expected.
            unsafe { libc::close(fd) };
        }
    }
}
