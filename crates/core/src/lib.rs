//! Sundial's domain model: what a job, a version, a schedule and an execution are, and the rules that move them.
//!
//! This crate does no IO: no SQL, no HTTP, no async, no clock of its own. Every function takes the current time as
//! an argument, so the scheduler and its tests decide what "now" is.

pub mod authority;
pub mod describe;
pub mod model;
pub mod policy;
pub mod retry;
pub mod schedule;
pub mod wire;

pub use authority::{Authority, Scope, Scopes};
pub use model::*;
pub use retry::RetryPolicy;
pub use schedule::{Bounds, CompiledSchedule, Schedule, ScheduleError, ScheduleLimits};
