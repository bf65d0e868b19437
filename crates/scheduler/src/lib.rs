//! Sundial's engine: the operations on jobs that the API and running jobs share ([`Engine`]), the scheduler loop
//! that fires slots on time ([`runner`]), and the host side of the sandbox ([`host`]).
//!
//! The engine knows nothing of HTTP; it reads time only through its [`Clock`], so tests move time by hand.

pub mod access;
pub mod clock;
pub mod data;
pub mod deploy;
pub mod engine;
pub mod host;
pub mod metrics;
pub mod outbound;
pub mod runner;
pub mod secrets;

pub use access::{Denied, Reach};
pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{
    parse_dedup_key, Caller, Creation, Deletion, Engine, EngineConfig, EngineError, EngineResult, JobChange, JobDetail,
    NewJob, NewVersion,
};
pub use runner::{Drained, SchedulerHandle};
