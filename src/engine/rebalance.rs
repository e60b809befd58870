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
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::{committed, resolve_start, ResetPolicy, Starts};
use super::redelivery::NextOffsets;
use super::transaction::{Output, TxnFailure};
use crate::shutdown::Shutdown;
use crate::telemetry::{Health, Metrics};

mod end;
mod retry;
mod stats;

use retry::retry_within;

/// Time allowed for reading committed offsets, resolving a reset policy and
/// seeking.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a new assignment may wait for its committed offsets (a
/// coordinator moving or loading) before the worker gives up.
const START_BUDGET: Duration = Duration::from_secs(60);

/// The pause between two reads of a new assignment's committed offsets.
const START_BACKOFF: Duration = Duration::from_millis(500);

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
        self.output.take_open();
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
                partitions = fixed.len(),
                reset = ?self.reset,
                "fixed the starting position of partitions the group has never committed"
            );
            self.starts.lock().expect("starts lock").extend(fixed);
        }
        Ok(())
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        tracing::info!(partitions = tpl.count(), "partitions assigned");
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
                    tracing::warn!(attempt, error = %e, "cannot read the committed offsets of the new assignment yet; retrying");
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
                    tracing::warn!(error = %code, "rebalance error; giving up the assignment");
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
            tracing::warn!(error = %e, "applying the rebalance failed");
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
