//! Rebalance handling. librdkafka runs the rebalance callback inside `poll`,
//! on the worker's own thread, before the new assignment is used — so an
//! open transaction is aborted right here, while the partitions are still
//! ours, and a new partition's starting position is fixed here before any
//! of its records is fetched.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};

use super::offsets::{committed, resolve_start, ResetPolicy, Starts};
use super::redelivery::NextOffsets;
use super::transaction::{Output, TxnFailure};
use crate::config::Guarantee;
use crate::shutdown::Shutdown;
use crate::telemetry::{Health, Metrics};

/// Time allowed for reading committed offsets, resolving a reset policy and
/// seeking.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a new assignment may wait for its committed offsets (a
/// coordinator moving or loading) before the worker gives up.
const START_BUDGET: Duration = Duration::from_secs(60);

/// The pause between two reads of a new assignment's committed offsets.
const START_BACKOFF: Duration = Duration::from_millis(500);

/// Calls `attempt` (with its number, from 1) until it succeeds, `stop()`
/// says to give up, or the next try would start after `budget`; sleeps
/// `backoff` between tries. The last error is returned.
fn retry_within<T, E>(
    budget: Duration,
    backoff: Duration,
    mut stop: impl FnMut() -> bool,
    mut attempt: impl FnMut(u32) -> Result<T, E>,
) -> Result<T, E> {
    let start = Instant::now();
    let mut n = 1;
    loop {
        let result = attempt(n);
        if result.is_ok() || stop() || start.elapsed() + backoff > budget {
            return result;
        }
        std::thread::sleep(backoff);
        n += 1;
    }
}

/// The consumer's context: owns the worker's [`Output`] so that a revoke can
/// end the open transaction before the partitions move.
pub struct WorkerContext {
    /// The worker's producer and transaction protocol.
    pub output: Output,
    index: usize,
    metrics: Metrics,
    health: Health,
    shutdown: Shutdown,
    shutdown_budget: Duration,
    reset: ResetPolicy,
    /// A transaction (or at_least_once batch) is open.
    txn_open: AtomicBool,
    /// A callback ended the open transaction: the worker must forget its
    /// batch and rewind before using the next record.
    rewind_needed: AtomicBool,
    /// A callback hit an error that ends the worker.
    fatal: Mutex<Option<TxnFailure>>,
    /// The committed offsets of a new assignment could not be read: the
    /// worker ends.
    unreadable: Mutex<Option<String>>,
    /// Starting positions fixed for partitions assigned without a committed
    /// offset, until they are committed.
    starts: Mutex<Starts>,
    /// When the assignment was last lost (a session timeout, an unknown
    /// member): a fence soon after may be of the member's own making.
    lost_at: Mutex<Option<Instant>>,
    /// The offsets this worker committed last, per partition: the lag of a
    /// partition without a valid position (after a rewind) counts from
    /// here. librdkafka's own `committed_offset` is the one it fetched at
    /// assignment; transactional commits never update it.
    committed: Mutex<HashMap<(String, i32), i64>>,
    /// Where each partition must go on; a record below it was handed over
    /// already (see `redelivery`).
    next: Mutex<NextOffsets>,
    /// The partitions this worker holds now, as the consumer's assignment
    /// says after each rebalance event. librdkafka's statistics go on
    /// listing a partition for a while after it moved; its lag is then the
    /// new owner's to report, not ours.
    held: Mutex<HashSet<(String, i32)>>,
    /// Replaced by new clients (an in-process recovery): the closing
    /// consumer's callbacks must not touch the transaction, the health or
    /// the metrics that the new clients now own.
    retired: AtomicBool,
}

impl WorkerContext {
    /// A context for worker `index`.
    pub fn new(
        output: Output,
        index: usize,
        metrics: Metrics,
        health: Health,
        shutdown: Shutdown,
        shutdown_budget: Duration,
        reset: ResetPolicy,
    ) -> Self {
        WorkerContext {
            output,
            index,
            metrics,
            health,
            shutdown,
            shutdown_budget,
            reset,
            txn_open: AtomicBool::new(false),
            rewind_needed: AtomicBool::new(false),
            fatal: Mutex::new(None),
            unreadable: Mutex::new(None),
            starts: Mutex::new(Starts::new()),
            lost_at: Mutex::new(None),
            committed: Mutex::new(HashMap::new()),
            next: Mutex::new(NextOffsets::default()),
            held: Mutex::new(HashSet::new()),
            retired: AtomicBool::new(false),
        }
    }

    /// The worker opened a transaction.
    pub fn set_txn_open(&self, open: bool) {
        self.txn_open.store(open, Ordering::Release);
    }

    /// Whether a callback ended the open transaction since the last call.
    pub fn take_rewind_needed(&self) -> bool {
        self.rewind_needed.swap(false, Ordering::AcqRel)
    }

    /// An error a callback hit that ends the worker, if any.
    pub fn take_fatal(&self) -> Option<TxnFailure> {
        self.fatal.lock().expect("fatal lock").take()
    }

    /// Why the committed offsets of a new assignment could not be read, if
    /// that happened.
    pub fn take_unreadable_offsets(&self) -> Option<String> {
        self.unreadable.lock().expect("unreadable lock").take()
    }

    /// How long transactional calls may still take: unbounded until a stop
    /// is requested, then what is left of the stop budget.
    pub fn time_left(&self) -> Option<Duration> {
        self.shutdown
            .is_requested()
            .then(|| self.shutdown.budget_left(self.shutdown_budget))
    }

    /// These clients are being replaced: from now on their callbacks only
    /// apply what librdkafka asks.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.txn_open.store(false, Ordering::Release);
    }

    /// A transaction committed these offsets.
    pub fn offsets_committed(&self, offsets: &TopicPartitionList) {
        let mut committed = self.committed.lock().expect("committed lock");
        for e in offsets.elements() {
            if let Offset::Offset(o) = e.offset() {
                committed.insert((e.topic().to_owned(), e.partition()), o);
                self.metrics.input_committed(e.topic(), e.partition(), o);
            }
        }
    }

    /// Whether the polled record at `offset` is new, not one handed over
    /// again after a pause (see `redelivery`); a new one moves the mark.
    pub fn admit(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.next
            .lock()
            .expect("next offsets lock")
            .admit(topic, partition, offset)
    }

    /// A rewind sought the assigned partitions to `targets`.
    pub fn rewound(&self, targets: &TopicPartitionList) {
        self.next
            .lock()
            .expect("next offsets lock")
            .rewound(targets);
    }

    /// When the assignment was last lost.
    pub fn lost_at(&self) -> Option<Instant> {
        *self.lost_at.lock().expect("lost_at lock")
    }

    /// The starting positions fixed but not yet committed.
    pub fn starts(&self) -> Starts {
        self.starts.lock().expect("starts lock").clone()
    }

    /// Whether some starting position still has to be committed.
    pub fn has_starts(&self) -> bool {
        !self.starts.lock().expect("starts lock").is_empty()
    }

    /// These starting positions were committed: the group has them now.
    pub fn starts_committed(&self, committed: &Starts) {
        let mut starts = self.starts.lock().expect("starts lock");
        for (tp, offset) in committed {
            if starts.get(tp) == Some(offset) {
                starts.remove(tp);
            }
        }
    }

    fn end_open_transaction(&self, consumer: &BaseConsumer<Self>, lost: bool) {
        if !self.txn_open.swap(false, Ordering::AcqRel) {
            return;
        }
        if self.output.is_fatal() {
            // The worker is on its way out; a fatal producer is not called
            // again, and its transaction dies with it (fenced or timed out).
            return;
        }
        let left = || self.time_left();
        let result = match self.output.guarantee() {
            Guarantee::ExactlyOnce => self.output.abort(&left),
            // at_least_once: what was produced is delivered first, then its
            // positions are committed, unless the partitions were lost.
            Guarantee::AtLeastOnce if !lost => consumer
                .position()
                .map_err(|e| TxnFailure::Abortable(e.to_string()))
                .and_then(|positions| {
                    let mut valid = TopicPartitionList::new();
                    for e in positions.elements() {
                        if let Offset::Offset(_) = e.offset() {
                            let _ =
                                valid.add_partition_offset(e.topic(), e.partition(), e.offset());
                        }
                    }
                    self.output.commit(consumer, &valid, &left)
                }),
            Guarantee::AtLeastOnce => self.output.abort(&left),
        };
        match result {
            Ok(()) => {
                if self.output.guarantee() == Guarantee::AtLeastOnce && !lost {
                    self.metrics.offsets_committed(self.index);
                }
                if self.output.guarantee() == Guarantee::ExactlyOnce || lost {
                    self.metrics.transaction_aborted();
                    tracing::info!(
                        worker = self.index,
                        "aborted the open transaction before the partitions moved"
                    );
                }
            }
            Err(f) if f.is_abortable() => {
                self.metrics.transaction_aborted();
                tracing::warn!(worker = self.index, error = %f, "could not commit the open batch before the partitions moved");
                let _ = self.output.abort(&left);
            }
            Err(f) => {
                *self.fatal.lock().expect("fatal lock") = Some(f);
            }
        }
        self.rewind_needed.store(true, Ordering::Release);
    }

    /// Gives every partition of `assignment` that has no committed offset an
    /// explicit starting position, resolved from the reset policy now, so
    /// that librdkafka does not resolve it again later (a `latest` resolved
    /// after a rewind or by the next owner would skip input). The worker
    /// commits these positions before it processes any record.
    fn fix_starts(
        &self,
        consumer: &BaseConsumer<Self>,
        assignment: &mut TopicPartitionList,
    ) -> KafkaResult<()> {
        if assignment.count() == 0 {
            return Ok(());
        }
        let committed = committed(consumer, assignment.clone(), QUERY_TIMEOUT)?;
        let mut fixed = Starts::new();
        for elem in committed.elements() {
            if let Offset::Offset(_) = elem.offset() {
                continue; // librdkafka resumes from the committed offset
            }
            let (topic, partition) = (elem.topic(), elem.partition());
            let start = resolve_start(consumer, topic, partition, self.reset, QUERY_TIMEOUT)?;
            assignment.set_partition_offset(topic, partition, Offset::Offset(start))?;
            fixed.insert((topic.to_owned(), partition), start);
        }
        if !fixed.is_empty() {
            tracing::info!(
                worker = self.index,
                partitions = fixed.len(),
                reset = ?self.reset,
                "fixed the starting position of partitions the group has never committed"
            );
            self.starts.lock().expect("starts lock").extend(fixed);
        }
        Ok(())
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        tracing::info!(
            worker = self.index,
            partitions = tpl.count(),
            "partitions assigned"
        );
        // A coordinator that moved or is loading answers NOT_COORDINATOR or
        // COORDINATOR_LOAD_IN_PROGRESS for a while (after a broker restart,
        // or a broker that fenced itself): wait for it within a budget
        // rather than end the worker at the first refusal.
        let fixed = retry_within(
            START_BUDGET,
            START_BACKOFF,
            || self.shutdown.is_requested(),
            |attempt| {
                let r = self.fix_starts(consumer, tpl);
                if let Err(e) = &r {
                    tracing::warn!(worker = self.index, attempt, error = %e, "cannot read the committed offsets of the new assignment yet; retrying");
                }
                r
            },
        );
        if let Err(e) = fixed {
            // Assigning without a fixed start would let librdkafka resolve
            // the reset policy on its own; the worker stops instead.
            *self.unreadable.lock().expect("unreadable lock") = Some(format!(
                "cannot read the committed offsets of the new assignment: {e}"
            ));
        }
        self.next.lock().expect("next offsets lock").forget(tpl);
        self.metrics.rebalance("assigned");
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let lost = consumer.assignment_lost();
        let event = if lost { "lost" } else { "revoked" };
        if lost {
            *self.lost_at.lock().expect("lost_at lock") = Some(Instant::now());
        }
        tracing::info!(
            worker = self.index,
            partitions = tpl.count(),
            event,
            "partitions leaving this worker"
        );
        self.end_open_transaction(consumer, lost);
        self.next.lock().expect("next offsets lock").forget(tpl);
        self.metrics.rebalance(event);
        let mut held = self.held.lock().expect("held lock");
        let mut starts = self.starts.lock().expect("starts lock");
        let mut committed = self.committed.lock().expect("committed lock");
        for e in tpl.elements() {
            // Out of the held set before the series go, so that a
            // statistics report in between cannot bring them back.
            let tp = (e.topic().to_owned(), e.partition());
            held.remove(&tp);
            // Should the partition come back, its next owner will have
            // committed past what this worker did.
            committed.remove(&tp);
            self.metrics.forget_partition(e.topic(), e.partition());
            starts.remove(&tp);
        }
    }
}

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
            worker = self.index,
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

impl ConsumerContext for WorkerContext {
    /// Replaces rust-rdkafka's default handling: the assignment gets fixed
    /// starting positions before it is applied, and a rebalance error ends
    /// the open transaction before the assignment is dropped (the default
    /// would drop it behind the transaction's back).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let retired = self.retired.load(Ordering::Acquire);
        if !retired {
            match err {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                    self.on_assign(consumer, tpl)
                }
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                    self.on_revoke(consumer, tpl)
                }
                other => {
                    let code: rdkafka::types::RDKafkaErrorCode = other.into();
                    tracing::warn!(worker = self.index, error = %code, "rebalance error; giving up the assignment");
                    self.metrics.rebalance("error");
                    // The transaction consumed from partitions about to be
                    // dropped: end it as if they were lost.
                    self.end_open_transaction(consumer, true);
                    self.starts.lock().expect("starts lock").clear();
                    self.next.lock().expect("next offsets lock").clear();
                    for (topic, partition) in self.held.lock().expect("held lock").drain() {
                        self.metrics.forget_partition(&topic, partition);
                    }
                }
            }
        }
        // What librdkafka asks for: take the assignment, or give it up (a
        // revoke, or an error).
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match (err, cooperative) {
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, true) => {
                consumer.incremental_assign(tpl)
            }
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, false) => consumer.assign(tpl),
            (_, true) => consumer.incremental_unassign(tpl),
            (_, false) => consumer.unassign(),
        };
        if retired {
            return;
        }
        if let Err(e) = applied {
            tracing::warn!(worker = self.index, error = %e, "applying the rebalance failed");
        }
        let assignment = consumer.assignment().ok();
        let assigned = assignment.as_ref().map(|a| a.count()).unwrap_or(0);
        if let Some(a) = &assignment {
            *self.held.lock().expect("held lock") = a
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
        }
        let health = self.health.worker(self.index);
        health.set_assigned(assigned);
        // The assignment itself, not a sum of this event's changes: nothing
        // to drift when an event is missed or applied twice.
        self.metrics.assignment(self.index, assigned);
        match err {
            // A member now, even with nothing assigned (more members than
            // partitions): librdkafka delivers empty assignments too.
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => health.set_joined(true),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if consumer.assignment_lost() {
                    health.set_joined(false);
                }
            }
            _ => health.set_joined(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{lag, retry_within, uncommitted};

    #[test]
    fn a_refusal_is_retried_until_an_answer_comes() {
        let mut calls = 0;
        let r: Result<u32, &str> = retry_within(
            Duration::from_secs(60),
            Duration::ZERO,
            || false,
            |n| {
                calls += 1;
                if n < 5 {
                    Err("NOT_COORDINATOR")
                } else {
                    Ok(n)
                }
            },
        );
        assert_eq!(r, Ok(5));
        assert_eq!(calls, 5);
    }

    #[test]
    fn retries_end_with_the_last_error_when_the_budget_is_spent_or_a_stop_comes() {
        let spent: Result<(), String> = retry_within(
            Duration::from_millis(30),
            Duration::from_millis(10),
            || false,
            |n| Err(format!("refusal {n}")),
        );
        let last = spent.unwrap_err();
        assert!(last.starts_with("refusal "), "{last}");
        assert_ne!(last, "refusal 1", "the budget allowed more than one try");

        let mut calls = 0;
        let stopped: Result<(), &str> = retry_within(
            Duration::from_secs(60),
            Duration::from_secs(60),
            || true,
            |_| {
                calls += 1;
                Err("NOT_COORDINATOR")
            },
        );
        assert_eq!(stopped, Err("NOT_COORDINATOR"));
        assert_eq!(calls, 1, "a stop request ends the retries at once");
    }

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
