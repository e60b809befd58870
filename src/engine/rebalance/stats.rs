//! Lag from librdkafka's statistics, for the partitions this worker holds.

use std::sync::atomic::Ordering;

use rdkafka::{ClientContext, Statistics};

use super::WorkerContext;

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        // librdkafka's own `consumer_lag` counts from the offset the
        // *consumer* committed; ours commit through the producer's
        // transaction, so it would never shrink.
        let held = self.held.lock().expect("held lock");
        let committed = self.committed.lock().expect("committed lock");
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if !held.contains(&(topic.clone(), *partition)) {
                    // librdkafka's internal UA partition (-1), or one that
                    // moved to another member.
                    continue;
                }
                let ours = committed.get(&(topic.clone(), *partition)).copied();
                if let Some(l) = lag(p.ls_offset, p.app_offset, ours, p.committed_offset) {
                    self.metrics.consumer_lag(topic, *partition, l);
                }
                if let Some(n) = uncommitted(p.ls_offset, ours, p.committed_offset) {
                    self.metrics.uncommitted_records(topic, *partition, n);
                }
            }
        }
        tracing::debug!(
            partitions = held.len(),
            "statistics: lag reported for the held partitions"
        );
    }
}

/// The lag of one partition: the last stable offset minus this worker's
/// position (as Java's `records-lag`); without a valid position (nothing
/// consumed yet, or just rewound), minus the offset this worker committed
/// last, or else the committed offset librdkafka fetched at assignment.
/// `None` while the last stable offset is unknown.
fn lag(ls_offset: i64, position: i64, committed_here: Option<i64>, fetched: i64) -> Option<i64> {
    let from = if position >= 0 {
        position
    } else {
        committed_here.unwrap_or(fetched)
    };
    (ls_offset >= 0 && from >= 0).then(|| (ls_offset - from).max(0))
}

/// Records between the offset committed last (this worker's, or the one
/// librdkafka fetched at assignment) and the last stable offset; `None`
/// while either is unknown.
fn uncommitted(ls_offset: i64, committed_here: Option<i64>, fetched: i64) -> Option<i64> {
    let from = committed_here.unwrap_or(fetched);
    (ls_offset >= 0 && from >= 0).then(|| (ls_offset - from).max(0))
}

#[cfg(test)]
mod tests {
    use super::{lag, uncommitted};

    #[test]
    fn uncommitted_counts_from_the_last_commit_not_the_position() {
        assert_eq!(uncommitted(100, Some(60), 10), Some(40));
        assert_eq!(uncommitted(100, None, 10), Some(90));
        assert_eq!(uncommitted(100, Some(100), 10), Some(0));
        // Nothing committed yet, or no last stable offset: unknown.
        assert_eq!(uncommitted(100, None, -1001), None);
        assert_eq!(uncommitted(-1, Some(5), 10), None);
    }

    #[test]
    fn lag_counts_from_the_position_then_from_what_this_worker_committed() {
        assert_eq!(lag(100, 60, Some(50), 10), Some(40));
        // Rewound (no valid position): from this worker's last commit, not
        // from the stale offset fetched at assignment.
        assert_eq!(lag(100, -1001, Some(90), 10), Some(10));
        assert_eq!(lag(100, -1001, None, 10), Some(90));
        assert_eq!(lag(-1, 60, None, 10), None);
        assert_eq!(lag(100, 120, None, 10), Some(0));
    }
}
