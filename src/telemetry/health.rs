//! Liveness and readiness as the workers report them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// What one worker reports about itself.
#[derive(Debug, Default)]
pub struct WorkerHealth {
    producer_ready: AtomicBool,
    assigned: AtomicUsize,
}

impl WorkerHealth {
    /// The producer finished `init_transactions` (or was created, in at_least_once mode).
    pub fn set_producer_ready(&self, ready: bool) {
        self.producer_ready.store(ready, Ordering::Release);
    }

    /// The number of partitions currently assigned to this worker.
    pub fn set_assigned(&self, partitions: usize) {
        self.assigned.store(partitions, Ordering::Release);
    }
}

/// Process-wide health: ready once every producer is initialised and the
/// group has assigned partitions; never ready again after a fatal error.
#[derive(Debug, Clone)]
pub struct Health {
    workers: Arc<Vec<WorkerHealth>>,
    failed: Arc<AtomicBool>,
}

impl Health {
    /// Health for `workers` workers, none ready yet.
    pub fn new(workers: usize) -> Self {
        Health {
            workers: Arc::new((0..workers).map(|_| WorkerHealth::default()).collect()),
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The report slot of worker `index`.
    pub fn worker(&self, index: usize) -> &WorkerHealth {
        &self.workers[index]
    }

    /// A worker hit a fatal error: the process will exit.
    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// `/readyz`: producers initialised, partitions assigned, no fatal error.
    pub fn is_ready(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
            && self
                .workers
                .iter()
                .all(|w| w.producer_ready.load(Ordering::Acquire))
            && self
                .workers
                .iter()
                .map(|w| w.assigned.load(Ordering::Acquire))
                .sum::<usize>()
                > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_every_producer_and_some_assignment() {
        let h = Health::new(2);
        assert!(!h.is_ready());
        h.worker(0).set_producer_ready(true);
        h.worker(0).set_assigned(3);
        assert!(!h.is_ready(), "worker 1's producer is not initialised");
        h.worker(1).set_producer_ready(true);
        assert!(h.is_ready());
        h.worker(0).set_assigned(0);
        assert!(!h.is_ready(), "nothing assigned during a rebalance");
        h.worker(1).set_assigned(1);
        assert!(h.is_ready());
        h.set_failed();
        assert!(!h.is_ready(), "a fatal error ends readiness for good");
    }
}
