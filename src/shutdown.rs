//! The stop request shared by the signal handler, the HTTP server and the
//! workers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A one-way latch: once requested, a stop stays requested. Worker threads
/// poll [`Shutdown::is_requested`] between records; async tasks await
/// [`Shutdown::requested`].
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    requested_at: Arc<OnceLock<Instant>>,
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A latch not yet requested.
    pub fn new() -> Self {
        Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            requested_at: Arc::new(OnceLock::new()),
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Asks everything to stop.
    pub fn request(&self) {
        let _ = self.requested_at.set(Instant::now());
        self.flag.store(true, Ordering::Release);
        self.tx.send_replace(true);
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Whether a stop was requested more than `budget` ago: the moment to
    /// stop waiting for Kafka and leave.
    pub fn budget_spent(&self, budget: Duration) -> bool {
        self.requested_at
            .get()
            .is_some_and(|t| t.elapsed() >= budget)
    }

    /// Time left of `budget` since the stop was requested (all of it when
    /// no stop was requested).
    pub fn budget_left(&self, budget: Duration) -> Duration {
        match self.requested_at.get() {
            Some(t) => budget.saturating_sub(t.elapsed()),
            None => budget,
        }
    }

    /// Resolves once a stop is requested.
    pub async fn requested(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}
