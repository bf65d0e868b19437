//! The messages between the pool and a worker process, and their length-prefixed JSON framing.

use std::collections::BTreeMap;
#[cfg(test)]
use std::io::Read;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::{CodeKind, LogLine, OutcomeStatus};

/// The largest frame either side accepts. Results, log lines and host-call arguments are capped well below it.
pub(crate) const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Host-call arguments larger than this are refused in the worker before they are sent.
pub(crate) const MAX_HOST_ARGS_BYTES: usize = 8 * 1024 * 1024;

/// Host answers larger than this are turned into an error before they are sent to the worker.
pub(crate) const MAX_HOST_REPLY_BYTES: usize = 32 * 1024 * 1024;

/// Error texts are cut to this many bytes.
pub(crate) const MAX_ERROR_BYTES: usize = 64 * 1024;

/// A message from the pool to a worker: `{"type": …, "body": {…}}`, the tag first, so that the job object of a run
/// can pass through as raw JSON (it is neither escaped into a string nor parsed on the way).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub(crate) enum ToWorker {
    /// The worker's limits, sent once, first: the worker builds its world with them, then says hello.
    Setup(Setup),
    /// Run one execution.
    Run(RunMessage),
    /// The answer to a [`FromWorker::HostCall`].
    HostReply {
        /// The call's id.
        call: u64,
        /// Whether the host answered a value (`payload` is its JSON text) or an error (`payload` is the message).
        ok: bool,
        /// JSON text or error message.
        payload: String,
    },
    /// A test hook; never reachable from job code.
    Test {
        /// What to do.
        action: TestAction,
    },
}

/// Test hooks, reachable only through [`crate::Pool::run_test_action`], never from job code.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TestAction {
    /// The worker calls `std::process::abort()`, as an engine assertion would.
    Abort,
    /// The worker tries to open a file for reading and reports what happened (seccomp refuses it).
    OpenFile {
        /// The file to try.
        path: String,
    },
}

/// The limits every run of a worker has (the pool's configuration).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Setup {
    pub memory_limit_bytes: usize,
    pub max_log_lines: usize,
    pub max_log_line_bytes: usize,
    pub max_result_bytes: usize,
    pub max_host_calls_in_flight: usize,
}

/// Everything a worker needs for one execution, or for describing a module job.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunMessage {
    pub code: String,
    /// What `code` is.
    pub kind: CodeKind,
    /// Evaluate the module and answer its job definition (without `execute`) instead of running the job.
    pub describe: bool,
    /// The job object, as JSON carried as is.
    pub job: Box<serde_json::value::RawValue>,
    pub env: BTreeMap<String, String>,
    pub timeout_ms: u64,
    /// When the job's code starts, on the machine's monotonic clock ([`monotonic_ns`], which the pool and its
    /// workers share); 0 for at once. The worker sets the run up meanwhile. An instant rather than a delay, so that the
    /// time the message spends on its way does not make the job late.
    #[serde(default)]
    pub start_at_monotonic_ns: u64,
}

/// Nanoseconds of `CLOCK_MONOTONIC`: one clock for every process of the machine (unlike [`std::time::Instant`],
/// whose value cannot be sent to another process).
pub(crate) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}

/// A message from a worker to the pool.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum FromWorker {
    /// Sent once, when the worker has built its world and is ready for runs.
    Hello {
        pid: u32,
        /// Whether the seccomp filter is installed.
        seccomp: bool,
        /// Why it is not, when it is not.
        #[serde(rename = "seccompError")]
        seccomp_error: Option<String>,
        /// The size of the world's snapshot, which every run's restore copies.
        #[serde(rename = "snapshotBytes", default)]
        snapshot_bytes: u64,
    },
    /// One console line, streamed as it is written.
    Log(LogLine),
    /// Job code called a host API.
    HostCall {
        call: u64,
        method: String,
        /// The arguments as JSON text.
        args: String,
    },
    /// The run ended. The worker takes the next message once it has put its world back (nothing of the run
    /// survives), so the pool may send the next run at once.
    Done {
        status: OutcomeStatus,
        /// The result as JSON text (absent for `undefined`).
        result: Option<String>,
        error: Option<String>,
    },
}

/// Encodes one frame: a `u32` big-endian length, then the JSON.
pub(crate) fn encode<T: Serialize>(message: &T) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(1024);
    bytes.extend_from_slice(&[0u8; 4]);
    serde_json::to_writer(&mut bytes, message).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len() - 4)
        .ok()
        .filter(|len| (*len as usize) <= MAX_FRAME_BYTES)
        .ok_or_else(|| std::io::Error::other("frame too large"))?;
    bytes[..4].copy_from_slice(&len.to_be_bytes());
    Ok(bytes)
}

/// Writes one frame to a blocking writer (the worker's side).
pub(crate) fn write_frame<T: Serialize>(out: &mut impl Write, message: &T) -> std::io::Result<()> {
    let bytes = encode(message)?;
    out.write_all(&bytes)?;
    out.flush()
}

/// Reads one frame from a blocking reader. `Ok(None)` at a clean end of stream.
#[cfg(test)]
pub(crate) fn read_frame<T: for<'de> Deserialize<'de>>(input: &mut impl Read) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!("frame of {len} bytes is too large")));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    serde_json::from_slice(&body).map(Some).map_err(std::io::Error::other)
}

/// Reads one frame of at most `max` bytes from an async reader (the pool's side). `Ok(None)` at a clean end of stream.
pub(crate) async fn read_frame_async<T, R>(input: &mut R, max: usize) -> std::io::Result<Option<T>>
where
    T: for<'de> Deserialize<'de>,
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    match input.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::other(format!("frame of {len} bytes is too large")));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map(Some).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let message = FromWorker::HostCall { call: 7, method: "job.user".into(), args: "{\"jobId\":\"j\"}".into() };
        let bytes = encode(&message).unwrap();
        assert_eq!(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize, bytes.len() - 4);
        let back: FromWorker = read_frame(&mut bytes.as_slice()).unwrap().unwrap();
        match back {
            FromWorker::HostCall { call, method, args } => {
                assert_eq!((call, method.as_str(), args.as_str()), (7, "job.user", "{\"jobId\":\"j\"}"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let empty: Option<FromWorker> = read_frame(&mut [].as_slice()).unwrap();
        assert!(empty.is_none());
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut bytes = (u32::MAX).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert!(read_frame::<FromWorker>(&mut bytes.as_slice()).is_err());
    }
}
