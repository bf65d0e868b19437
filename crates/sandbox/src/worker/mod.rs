//! The sandbox worker process: hardens itself, builds its world, greets the pool, then runs one execution per
//! request, each from the snapshot of that world (see `arena.rs` and `engine.rs`).
//!
//! One thread: it reads frames from stdin, runs executions, and while a run waits (for a host call's reply, a timer)
//! it polls stdin with the run's deadline. QuickJS runtimes cannot move between threads anyway, and with no other
//! thread the seccomp filter can refuse `clone`.

mod arena;
mod engine;
mod input;
mod js;
mod modules;
mod seccomp;
mod syntax;

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::{FromRawFd, RawFd};
use std::process::ExitCode;
use std::rc::Rc;

pub(crate) use engine::{
    arena_size, duration_text, memory_message, memory_text, result_too_large, timed_out_message, truncate,
};

use crate::protocol::{self, FromWorker, TestAction, ToWorker};
use crate::OutcomeStatus;

/// The worker's side of the channel to the pool.
pub(crate) struct Channel {
    out: RefCell<File>,
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
}

/// Ends the process at once, without running destructors.
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
    let channel = Rc::new(Channel { out: RefCell::new(out) });
    let setup = match input::with_input(input::Input::next) {
        Ok(Some(ToWorker::Setup(setup))) => setup,
        Ok(None) => return ExitCode::SUCCESS,
        Ok(Some(other)) => {
            eprintln!("sundial sandbox worker: expected setup, got {other:?}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("sundial sandbox worker: cannot read setup: {e}");
            return ExitCode::from(2);
        }
    };
    let mut engine = match engine::Engine::build(channel.clone(), setup) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("sundial sandbox worker: {e}");
            return ExitCode::from(2);
        }
    };

    // A run handed over ahead of its instant sleeps until just before it (see `engine::wait_until`): the kernel's
    // default timer slack (50 µs) would make that sleep end late by as much.
    // SAFETY: sets a property of this thread only; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0u64, 0u64, 0u64) };
    let seccomp = seccomp::install(out_fd);
    channel.send(&FromWorker::Hello {
        pid: std::process::id(),
        seccomp: seccomp.is_ok(),
        seccomp_error: seccomp.err(),
        snapshot_bytes: engine.snapshot_len() as u64,
    });

    loop {
        match input::with_input(input::Input::next) {
            Ok(Some(ToWorker::Run(run))) => engine.execute(run),
            // A reply to a host call of a run that has ended: nobody waits for it.
            Ok(Some(ToWorker::HostReply { .. })) => {}
            Ok(Some(ToWorker::Setup(_))) => {}
            Ok(Some(ToWorker::Test { action })) => test_action(&channel, action),
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                // The pool spoke nonsense: stop at once.
                eprintln!("sundial sandbox worker: unreadable frame: {e}");
                exit_now(0);
            }
        }
    }
}

/// Test hooks, reachable only through `Pool::run_test_action`.
fn test_action(channel: &Channel, action: TestAction) {
    match action {
        TestAction::Abort => std::process::abort(),
        TestAction::OpenFile { path } => {
            let result = match File::open(&path) {
                Ok(_) => serde_json::json!({ "opened": true }),
                Err(e) => serde_json::json!({ "opened": false, "error": e.to_string() }),
            };
            channel.send(&FromWorker::Done {
                status: OutcomeStatus::Completed,
                result: Some(result.to_string()),
                error: None,
            });
        }
    }
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
