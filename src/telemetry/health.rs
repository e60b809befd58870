//! Liveness and readiness as the workers report them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// What one worker reports about itself.
#[derive(Debug, Default)]
pub struct WorkerHealth {
    producer_ready: AtomicBool,
    joined: AtomicBool,
    assigned: AtomicUsize,
}

impl WorkerHealth {
    /// The producer finished `init_transactions` (or was created, in at_least_once mode).
    pub fn set_producer_ready(&self, ready: bool) {
        self.producer_ready.store(ready, Ordering::Release);
    }

    /// The consumer is a member of the group: it has received an assignment
    /// (possibly empty). False again when a new consumer replaces it or the
    /// assignment is lost.
    pub fn set_joined(&self, joined: bool) {
        self.joined.store(joined, Ordering::Release);
    }

    /// The number of partitions currently assigned to this worker (the
    /// `exactly_assigned_partitions` metric says the same; readiness does
    /// not depend on it).
    pub fn set_assigned(&self, partitions: usize) {
        self.assigned.store(partitions, Ordering::Release);
    }
}

/// Process-wide health: ready once every worker's producer is initialised
/// and its consumer has joined the group; never ready again after a fatal
/// error. Holding partitions is not a condition: a replica beyond the
/// partition count is idle but ready, so it does not hold up a rolling
/// update or a node drain.
#[derive(Debug, Clone)]
pub struct Health {
    workers: Arc<Vec<WorkerHealth>>,
    failed: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
}

impl Health {
    /// Health for `workers` workers, none ready yet.
    pub fn new(workers: usize) -> Self {
        Health {
            workers: Arc::new((0..workers).map(|_| WorkerHealth::default()).collect()),
            failed: Arc::new(AtomicBool::new(false)),
            stopping: Arc::new(AtomicBool::new(false)),
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

    /// A stop was requested: the process finishes its transactions and
    /// exits. `/metrics` is still served meanwhile; `/readyz` is not ready.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// `/readyz`: producers initialised, group joined, no fatal error, no
    /// stop requested.
    pub fn is_ready(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
            && !self.stopping.load(Ordering::Acquire)
            && self.workers.iter().all(|w| {
                w.producer_ready.load(Ordering::Acquire) && w.joined.load(Ordering::Acquire)
            })
    }

    /// Partitions assigned to this process, over all workers.
    pub fn assigned(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.assigned.load(Ordering::Acquire))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_every_producer_and_every_member_but_no_partitions() {
        let h = Health::new(2);
        assert!(!h.is_ready());
        h.worker(0).set_producer_ready(true);
        h.worker(0).set_joined(true);
        h.worker(0).set_assigned(3);
        assert!(!h.is_ready(), "worker 1's producer is not initialised");
        h.worker(1).set_producer_ready(true);
        assert!(!h.is_ready(), "worker 1 has not joined the group");
        h.worker(1).set_joined(true);
        assert!(h.is_ready());
        h.worker(0).set_assigned(0);
        assert!(h.is_ready(), "an idle member (no partitions) is ready");
        assert_eq!(h.assigned(), 0);
        h.worker(1).set_joined(false);
        assert!(!h.is_ready(), "a lost membership is not ready");
        h.worker(1).set_joined(true);
        h.set_failed();
        assert!(!h.is_ready(), "a fatal error ends readiness for good");
    }

    #[test]
    fn a_stopping_process_is_not_ready() {
        let h = Health::new(1);
        h.worker(0).set_producer_ready(true);
        h.worker(0).set_joined(true);
        assert!(h.is_ready());
        h.set_stopping();
        assert!(!h.is_ready());
    }
}
