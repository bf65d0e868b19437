//! The worker's seccomp allow-list, installed once start-up (descriptors, the world and its snapshot) is done.
//!
//! What is left after start-up is memory management, futexes, clocks, randomness, reading and polling the channel
//! (fd 0), writing the channel and stderr, and ending the process. Everything else — opening files, sockets, `clone`,
//! `execve`, `kill`, `ptrace`, `ioctl` … — fails with `EPERM`. Executable mappings are refused too (QuickJS has no
//! JIT). A worker that cannot install the filter (an old kernel, a container that forbids it) still runs and says
//! so in its hello message; the pool reports it in [`crate::PoolStats::seccomp`].

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

/// Syscalls allowed with any arguments.
const ALWAYS: &[libc::c_long] = &[
    libc::SYS_futex,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_munmap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_close,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
];

/// Installs the filter on every thread of the worker. `protocol_fd` is the channel's output descriptor.
pub(crate) fn install(protocol_fd: i32) -> Result<(), String> {
    let program = build(protocol_fd).map_err(|e| format!("cannot build seccomp filter: {e}"))?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| format!("cannot install seccomp filter: {e}"))
}

fn build(protocol_fd: i32) -> Result<BpfProgram, seccompiler::Error> {
    let arch = std::env::consts::ARCH.try_into()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &syscall in ALWAYS {
        rules.insert(syscall, Vec::new());
    }

    let arg_is = |index: u8, value: u64| SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value);
    // Reads only from the channel.
    rules.insert(libc::SYS_read, vec![SeccompRule::new(vec![arg_is(0, 0)?])?]);
    // Writes only to the channel, stdout (which points at stderr) and stderr.
    let writable = [1u64, 2, protocol_fd as u64]
        .into_iter()
        .map(|fd| Ok(SeccompRule::new(vec![arg_is(0, fd)?])?))
        .collect::<Result<Vec<_>, seccompiler::Error>>()?;
    rules.insert(libc::SYS_write, writable.clone());
    rules.insert(libc::SYS_writev, writable);
    // Memory, but never executable memory.
    let not_exec = || -> Result<Vec<SeccompRule>, seccompiler::Error> {
        Ok(vec![SeccompRule::new(vec![SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            0,
        )?])?])
    };
    rules.insert(libc::SYS_mmap, not_exec()?);
    rules.insert(libc::SYS_mprotect, not_exec()?);
    // Signals only to itself (abort() raises SIGABRT this way).
    rules.insert(libc::SYS_tgkill, vec![SeccompRule::new(vec![arg_is(0, u64::from(std::process::id()))?])?]);

    let filter = SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, arch)?;
    filter.try_into().map_err(seccompiler::Error::Backend)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_for_this_machine() {
        let program = super::build(3).expect("filter");
        assert!(!program.is_empty());
    }
}
