//! Time as the scheduler sees it: the system clock in production, a clock the tests move by hand.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::watch;

/// A source of the current time that can also wait until an instant.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The host's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Sleep in monotonic time, then re-check the wall clock (it may have been stepped meanwhile).
            loop {
                let remaining = deadline - Utc::now();
                if remaining <= Duration::zero() {
                    return;
                }
                let wait = remaining.to_std().unwrap_or_default();
                tokio::time::sleep(wait.min(std::time::Duration::from_secs(60))).await;
            }
        })
    }
}

/// A clock that stands still until a test moves it.
#[derive(Clone)]
pub struct ManualClock {
    sender: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock that reads `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        let (sender, _) = watch::channel(start);
        ManualClock { sender: Arc::new(sender) }
    }

    /// Moves time forward (or backward) by `by`; sleepers whose deadline passed wake up.
    pub fn advance(&self, by: Duration) {
        self.sender.send_modify(|now| *now += by);
    }

    /// Sets the time.
    pub fn set(&self, to: DateTime<Utc>) {
        self.sender.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.sender.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut receiver = self.sender.subscribe();
        Box::pin(async move {
            while *receiver.borrow_and_update() < deadline {
                if receiver.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}
