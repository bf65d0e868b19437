//! The worker's side of the channel from the pool: frames read from stdin, blocking between runs and with a deadline
//! while a run waits for host-call replies or timers.

use std::cell::RefCell;
use std::io;
use std::time::Instant;

use crate::protocol::{ToWorker, MAX_FRAME_BYTES};

thread_local! {
    static INPUT: RefCell<Input> = RefCell::new(Input::new());
}

/// Runs `f` on the worker's input (one per process, read by the thread that runs JS).
pub(crate) fn with_input<T>(f: impl FnOnce(&mut Input) -> T) -> T {
    INPUT.with(|input| f(&mut input.borrow_mut()))
}

/// Bytes read from stdin, and the frames in them.
pub(crate) struct Input {
    buffer: Vec<u8>,
    /// Where the unread bytes of `buffer` start.
    start: usize,
}

impl Input {
    fn new() -> Input {
        Input { buffer: Vec::with_capacity(64 * 1024), start: 0 }
    }

    /// The next frame, waiting as long as it takes. `Ok(None)` when the pool closed the channel.
    pub(crate) fn next(&mut self) -> io::Result<Option<ToWorker>> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// The frames that arrive before `until` (at least one, unless the time runs out first). An error when the
    /// pool closed the channel or sent something unreadable.
    pub(crate) fn wait(&mut self, until: Instant) -> io::Result<Vec<ToWorker>> {
        let mut frames = Vec::new();
        loop {
            while let Some(frame) = self.parse()? {
                frames.push(frame);
            }
            if !frames.is_empty() {
                return Ok(frames);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(frames);
            }
            let mut poll = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
            // Round up, so that a wait never ends just before the instant it waits for.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, ms) };
            if ready < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            if ready == 0 {
                continue;
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the pool closed the channel"));
            }
        }
    }

    /// Reads what stdin has into the buffer; answers the bytes read (0 at the end of the stream).
    fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.reserve(64 * 1024);
        let room = self.buffer.spare_capacity_mut();
        loop {
            // SAFETY: `room` is writable, uninitialized memory of the buffer; `read` writes at most its length.
            let n = unsafe { libc::read(0, room.as_mut_ptr().cast(), room.len()) };
            if n >= 0 {
                let len = self.buffer.len() + n as usize;
                // SAFETY: `read` initialized the `n` bytes after the old length.
                unsafe { self.buffer.set_len(len) };
                return Ok(n as usize);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// The next complete frame in the buffer, if there is one.
    fn parse(&mut self) -> io::Result<Option<ToWorker>> {
        let unread = &self.buffer[self.start..];
        if unread.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([unread[0], unread[1], unread[2], unread[3]]) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(io::Error::other(format!("frame of {len} bytes is too large")));
        }
        if unread.len() < 4 + len {
            self.buffer.reserve(4 + len - unread.len());
            return Ok(None);
        }
        let frame = serde_json::from_slice(&unread[4..4 + len]).map_err(io::Error::other)?;
        self.start += 4 + len;
        Ok(Some(frame))
    }
}
