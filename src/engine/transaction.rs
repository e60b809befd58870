//! The output side of a worker: one producer, and the transaction calls of
//! the chosen guarantee, each retried, aborted or escalated as librdkafka's
//! error class says.
//!
//! - `exactly_once`: `begin_transaction`, produce, `send_offsets_to_transaction`
//!   with the consumer's group metadata, `commit_transaction`.
//! - `at_least_once`: produce, flush (wait for every acknowledgement), then
//!   commit the positions through the consumer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, TopicPartitionList};

use super::errors::{action_for, Action};
use crate::config::Guarantee;
use crate::transform::Record;

/// How a transaction call ended when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TxnFailure {
    /// The transaction must be aborted; the worker rewinds and carries on.
    /// Counts toward the guard against replaying the same failure forever.
    #[error("{0}")]
    Abortable(String),
    /// Something that says nothing about the input interrupted the
    /// transaction: a rebalance raced the commit (`ILLEGAL_GENERATION`,
    /// `UNKNOWN_MEMBER_ID`, `REBALANCE_IN_PROGRESS`), a position vanished
    /// with the assignment, a metadata request got no answer. Abort and
    /// rewind like [`Self::Abortable`], without counting toward the guard.
    #[error("{0}")]
    Interrupted(String),
    /// The group coordinator gave this replica's `group.instance.id` to
    /// another member (`FENCED_INSTANCE_ID`): no later commit can succeed.
    /// Abort as a best effort, then stop.
    #[error("{0}")]
    MemberFenced(String),
    /// A retriable call kept failing for the whole retry budget (the
    /// cluster did not answer). The producer is not known to be broken,
    /// but its transaction has outlived any timeout: the worker replaces
    /// its clients or stops.
    #[error("{0}")]
    TimedOut(String),
    /// The producer is fenced or in an unknown state; the worker must stop
    /// (or replace its clients, when no other instance can be the cause).
    #[error("{0}")]
    Fatal(String),
}

impl TxnFailure {
    /// The failure of `call` that ended with `err`, once retrying is over.
    pub fn of(call: &str, err: &KafkaError) -> TxnFailure {
        let code = err.rdkafka_error_code();
        let text = match code.and_then(super::errors::missing_acl) {
            Some(acl) => format!("{call}: {err}; not authorized: grant {acl}"),
            None => format!("{call}: {err}"),
        };
        match (action_for(err), code) {
            (_, Some(RDKafkaErrorCode::FencedInstanceId)) => TxnFailure::MemberFenced(text),
            (Action::Fatal, _) => TxnFailure::Fatal(text),
            (
                _,
                Some(
                    RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::RebalanceInProgress,
                ),
            ) => TxnFailure::Interrupted(text),
            _ => TxnFailure::Abortable(text),
        }
    }

    /// Whether the worker can abort, rewind and go on.
    pub fn is_abortable(&self) -> bool {
        matches!(self, TxnFailure::Abortable(_) | TxnFailure::Interrupted(_))
    }

    /// Whether a graceful stop whose final commit ended this way, once
    /// aborted, is still clean (exit 0). Only a rebalance racing the commit
    /// is: the revoke would have aborted the same records a moment earlier,
    /// and their next owner processes them. Any other failure means the
    /// stop did not do what it was asked to.
    pub fn leaves_a_stop_clean(&self) -> bool {
        matches!(self, TxnFailure::Interrupted(_))
    }
}

/// How long the transactional calls may still take: unbounded (each call
/// still has [`CALL_TIMEOUT`] and retries for [`RETRY_BUDGET`]) until a stop
/// is requested, then what is left of the stop budget. Zero means give up.
pub type TimeLeft<'a> = &'a dyn Fn() -> Option<Duration>;

/// The timeout of the next call: [`CALL_TIMEOUT`], or less when the time
/// left is shorter. `None` when no time is left.
fn call_timeout(left: TimeLeft<'_>) -> Option<Duration> {
    match left() {
        None => Some(CALL_TIMEOUT),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d.min(CALL_TIMEOUT)),
    }
}

/// How long one librdkafka call may block before it is retried.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one wait on the producer's events lasts, while a flush waits for
/// the queue to drain or a send waits for room in it.
const POLL_TICK: Duration = Duration::from_millis(1);
/// How long a retriable call keeps being retried before the worker gives up.
const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// Counts failed deliveries, which at_least_once mode must see before it
/// commits offsets (in exactly_once mode `commit_transaction` fails on them).
#[derive(Default)]
pub struct DeliveryContext {
    failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
    /// Tags of outputs that failed for good, with the error.
    permanent: Mutex<Vec<(usize, String)>>,
}

/// Delivery errors that a retry cannot fix: the same record fails again.
fn is_permanent(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    /// The input record's tag (see `quarantine::Origins`).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        if let Err((err, msg)) = result {
            use rdkafka::Message;
            if is_permanent(err) {
                self.permanent
                    .lock()
                    .expect("permanent failure lock")
                    .push((tag, format!("{err} (to {})", msg.topic())));
            }
            if self.failures.fetch_add(1, Ordering::AcqRel) == 0 {
                let text = format!(
                    "delivery to {}[{}] failed: {err}",
                    msg.topic(),
                    msg.partition()
                );
                *self.first_failure.lock().expect("delivery failure lock") = Some(text);
            }
        }
    }
}

impl DeliveryContext {
    /// Tags and errors of outputs that failed for good since the last call.
    fn take_permanent(&self) -> Vec<(usize, String)> {
        std::mem::take(&mut *self.permanent.lock().expect("permanent failure lock"))
    }

    /// Failed deliveries since the last call, with the first one's message.
    fn take_failures(&self) -> Option<(u64, String)> {
        let n = self.failures.swap(0, Ordering::AcqRel);
        let first = self
            .first_failure
            .lock()
            .expect("delivery failure lock")
            .take();
        (n > 0).then(|| (n, first.unwrap_or_default()))
    }
}

/// One worker's producer and the transaction protocol around it.
pub struct Output {
    producer: ThreadedProducer<DeliveryContext>,
    guarantee: Guarantee,
    default_topic: String,
    /// Latched on the first fatal failure: a producer in that state is never
    /// called again (librdkafka's transactional calls can block for good
    /// after a fatal error — librdkafka issue 4420).
    fatal: AtomicBool,
}

impl Output {
    /// Wraps `producer`; records without a topic go to `default_topic`.
    pub fn new(
        producer: ThreadedProducer<DeliveryContext>,
        guarantee: Guarantee,
        default_topic: String,
    ) -> Self {
        Output {
            producer,
            guarantee,
            default_topic,
            fatal: AtomicBool::new(false),
        }
    }

    /// Whether the producer failed fatally: it must not be used again.
    pub fn is_fatal(&self) -> bool {
        self.fatal_cause().is_some()
    }

    /// The code of librdkafka's fatal error on the producer, if it has one.
    pub fn fatal_code(&self) -> Option<RDKafkaErrorCode> {
        self.producer.client().fatal_error().map(|(code, _)| code)
    }

    fn fatal_cause(&self) -> Option<String> {
        if let Some((code, message)) = self.producer.client().fatal_error() {
            return Some(format!(
                "the producer has a fatal error ({code:?}): {message}"
            ));
        }
        self.fatal
            .load(Ordering::Acquire)
            .then(|| "the producer failed fatally earlier".to_owned())
    }

    /// Runs a transactional call unless the producer is already fatal, and
    /// latches a fatal outcome.
    fn guarded(&self, call: impl FnOnce() -> Result<(), TxnFailure>) -> Result<(), TxnFailure> {
        if let Some(cause) = self.fatal_cause() {
            return Err(TxnFailure::Fatal(cause));
        }
        let result = call();
        if let Err(TxnFailure::Fatal(_)) = &result {
            self.fatal.store(true, Ordering::Release);
        }
        result
    }

    /// `init_transactions`: fences any earlier producer with the same
    /// transactional id and aborts its open transaction.
    pub fn init(&self, left: TimeLeft<'_>) -> Result<(), TxnFailure> {
        self.guarded(|| self.init_unguarded(left))
    }

    /// Starts a transaction (exactly_once) or a batch (at_least_once).
    pub fn begin(&self) -> Result<(), TxnFailure> {
        self.guarded(|| self.begin_unguarded())
    }

    /// Commits `offsets` together with everything produced since `begin`.
    pub fn commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
        left: TimeLeft<'_>,
    ) -> Result<(), TxnFailure> {
        self.guarded(|| self.commit_unguarded(consumer, offsets, left))
    }

    /// Aborts the open transaction; see `abort_unguarded` for what that
    /// means in each guarantee.
    pub fn abort(&self, left: TimeLeft<'_>) -> Result<(), TxnFailure> {
        self.guarded(|| self.abort_unguarded(left))
    }

    /// Tags and errors of outputs that failed for good (see `quarantine`).
    pub fn take_permanent_failures(&self) -> Vec<(usize, String)> {
        self.producer.context().take_permanent()
    }

    /// The topic of records that name none.
    pub fn default_topic(&self) -> &str {
        &self.default_topic
    }

    /// The guarantee this output keeps.
    pub fn guarantee(&self) -> Guarantee {
        self.guarantee
    }

    /// `init_transactions`: fences any earlier producer with the same
    /// transactional id and aborts its open transaction. Retried while
    /// librdkafka says it can be.
    fn init_unguarded(&self, left: TimeLeft<'_>) -> Result<(), TxnFailure> {
        if self.guarantee == Guarantee::AtLeastOnce {
            return Ok(());
        }
        retry("init_transactions", left, |t| {
            self.producer.init_transactions(t)
        })
        .map_err(|f| match f {
            // Nothing is open yet, so "abortable" cannot apply; a producer
            // that cannot initialise is not usable.
            f if f.is_abortable() => TxnFailure::Fatal(f.to_string()),
            f => f,
        })
    }

    /// Starts a transaction (exactly_once) or a batch (at_least_once).
    fn begin_unguarded(&self) -> Result<(), TxnFailure> {
        if self.guarantee == Guarantee::AtLeastOnce {
            // Forget failures of deliveries from before this batch.
            let _ = self.producer.context().take_failures();
            return Ok(());
        }
        self.producer
            .begin_transaction()
            .map_err(|e| TxnFailure::of("begin_transaction", &e))
    }

    /// Produces `record` asynchronously; the commit waits for its
    /// acknowledgement. Waits for room when librdkafka's queue is full.
    pub fn send(&self, record: &Record, tag: usize) -> Result<(), TxnFailure> {
        let topic = record.topic.as_deref().unwrap_or(&self.default_topic);
        let mut base: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, tag);
        if let Some(k) = &record.key {
            base = base.key(k.as_slice());
        }
        if let Some(v) = &record.value {
            base = base.payload(v.as_slice());
        }
        if let Some(ts) = record.timestamp {
            base = base.timestamp(ts);
        }
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for h in &record.headers {
                headers = headers.insert(KafkaHeader {
                    key: &h.key,
                    value: h.value.as_deref(),
                });
            }
            base = base.headers(headers);
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The producer thread drains the queue as acknowledgements
                    // arrive; wait for one to make room.
                    self.producer.poll(POLL_TICK);
                    base = back;
                }
                Err((e, _)) => return Err(TxnFailure::of(&format!("produce to {topic}"), &e)),
            }
        }
    }

    /// Commits `offsets` together with everything produced since `begin`.
    fn commit_unguarded<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
        left: TimeLeft<'_>,
    ) -> Result<(), TxnFailure> {
        match self.guarantee {
            Guarantee::ExactlyOnce => {
                let metadata = consumer.group_metadata().ok_or_else(|| {
                    TxnFailure::Abortable("the consumer has no group metadata yet".to_owned())
                })?;
                let started = Instant::now();
                if offsets.count() > 0 {
                    retry("send_offsets_to_transaction", left, |t| {
                        self.producer
                            .send_offsets_to_transaction(offsets, &metadata, t)
                    })?;
                }
                let offsets_sent = Instant::now();
                // commit_transaction flushes too, but through rust-rdkafka's
                // flush (see `flush`): flushing here first makes its own a
                // no-op.
                retry("flush", left, |t| self.flush(t)).map_err(|f| self.with_delivery_cause(f))?;
                let flushed = Instant::now();
                retry("commit_transaction", left, |t| {
                    self.producer.commit_transaction(t)
                })
                .map_err(|f| self.with_delivery_cause(f))?;
                tracing::trace!(
                    send_offsets = ?(offsets_sent - started),
                    flush = ?(flushed - offsets_sent),
                    end_transaction = ?flushed.elapsed(),
                    "commit phases"
                );
                Ok(())
            }
            Guarantee::AtLeastOnce => {
                retry("flush", left, |t| self.flush(t))?;
                if let Some((n, first)) = self.producer.context().take_failures() {
                    return Err(TxnFailure::Abortable(format!(
                        "{n} output record(s) were not delivered; first: {first}"
                    )));
                }
                if offsets.count() > 0 {
                    retry("commit offsets", left, |_| {
                        consumer.commit(offsets, CommitMode::Sync)
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Aborts the open transaction: its records stay invisible to
    /// read_committed readers. In at_least_once mode, records not yet sent
    /// are dropped from the queue (they will be produced again after the
    /// rewind); those already sent stay — that is at-least-once.
    fn abort_unguarded(&self, left: TimeLeft<'_>) -> Result<(), TxnFailure> {
        match self.guarantee {
            Guarantee::ExactlyOnce => {
                // Let in-flight produce requests finish first. Aborting while
                // the transaction's partitions are still being registered
                // with the coordinator lets EndTxn overtake AddPartitionsToTxn;
                // a Kafka 4 broker then answers INVALID_TXN_STATE, which
                // librdkafka treats as fatal (librdkafka issue 4849). The
                // flush's own result does not matter: in an abortable-error
                // state the records are discarded by the abort anyway.
                if let Some(t) = call_timeout(left) {
                    let _ = self.flush(t);
                }
                retry("abort_transaction", left, |t| {
                    self.producer.abort_transaction(t)
                })
            }
            .map_err(|f| match f {
                // An abort that itself needs aborting leaves the producer in
                // an unknown state.
                f if f.is_abortable() => TxnFailure::Fatal(f.to_string()),
                fatal => fatal,
            }),
            Guarantee::AtLeastOnce => {
                self.producer
                    .purge(rdkafka::producer::PurgeConfig::default().queue());
                let _ = self.producer.context().take_failures();
                Ok(())
            }
        }
    }

    /// Waits until every produced record is acknowledged (or failed).
    ///
    /// rust-rdkafka's own `flush` serves the event queue in slices of up to
    /// 100 ms, and each slice runs to its end even when the queue drains at
    /// once: every commit would wait 100 ms for nothing, which doubled the
    /// end-to-end latency at `commit_interval_ms = 100`. This one asks
    /// librdkafka to send now and looks again every `POLL_TICK`.
    fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        // Once: wakes the broker threads to send what lingers.
        match self.producer.flush(Duration::ZERO) {
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {}
            done => return done,
        }
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            self.producer.poll(POLL_TICK);
        }
        Ok(())
    }

    fn with_delivery_cause(&self, failure: TxnFailure) -> TxnFailure {
        match (failure, self.producer.context().take_failures()) {
            (TxnFailure::Abortable(m), Some((n, first))) => TxnFailure::Abortable(format!(
                "{m} ({n} output record(s) not delivered; first: {first})"
            )),
            (f, _) => f,
        }
    }
}

/// Calls `f` with a timeout until it succeeds, retrying while the error is
/// retriable and the retry budget and the time left last. Each call's
/// timeout is cut to the time left, so that a stop's budget bounds the
/// whole sequence, not only the gaps between calls.
fn retry(
    call: &str,
    left: TimeLeft<'_>,
    mut f: impl FnMut(Duration) -> Result<(), KafkaError>,
) -> Result<(), TxnFailure> {
    let started = Instant::now();
    loop {
        let Some(timeout) = call_timeout(left) else {
            return Err(TxnFailure::Fatal(format!(
                "{call} was not attempted: the stop budget is spent"
            )));
        };
        let err = match f(timeout) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match action_for(&err) {
            Action::Retry if started.elapsed() < RETRY_BUDGET && call_timeout(left).is_some() => {
                tracing::warn!(call, error = %err, "retrying");
            }
            Action::Retry => {
                return Err(TxnFailure::TimedOut(format!(
                    "{call} did not succeed within {} s: {err}",
                    started.elapsed().as_secs()
                )))
            }
            _ => return Err(TxnFailure::of(call, &err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_static_member_is_its_own_failure() {
        let e = KafkaError::ConsumerCommit(RDKafkaErrorCode::FencedInstanceId);
        assert!(matches!(
            TxnFailure::of("send_offsets_to_transaction", &e),
            TxnFailure::MemberFenced(_)
        ));
    }

    #[test]
    fn a_rebalance_racing_the_commit_interrupts_without_blaming_the_input() {
        for code in [
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::UnknownMemberId,
            RDKafkaErrorCode::RebalanceInProgress,
        ] {
            let f = TxnFailure::of(
                "send_offsets_to_transaction",
                &KafkaError::ConsumerCommit(code),
            );
            assert!(matches!(f, TxnFailure::Interrupted(_)), "{code:?}: {f:?}");
            assert!(f.is_abortable());
        }
        let other = KafkaError::ConsumerCommit(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(
            TxnFailure::of("commit_transaction", &other),
            TxnFailure::Abortable(_)
        ));
    }

    #[test]
    fn only_a_rebalance_racing_the_final_commit_leaves_a_stop_clean() {
        let rebalance = TxnFailure::of(
            "send_offsets_to_transaction",
            &KafkaError::ConsumerCommit(RDKafkaErrorCode::IllegalGeneration),
        );
        assert!(rebalance.leaves_a_stop_clean());
        for other in [
            TxnFailure::Abortable("delivery failed".into()),
            TxnFailure::TimedOut("no answer".into()),
            TxnFailure::Fatal("fenced".into()),
            TxnFailure::MemberFenced("rival".into()),
        ] {
            assert!(!other.leaves_a_stop_clean(), "{other:?}");
        }
    }

    #[test]
    fn call_timeouts_shrink_to_the_time_left() {
        assert_eq!(call_timeout(&|| None), Some(CALL_TIMEOUT));
        let short = Duration::from_millis(300);
        assert_eq!(call_timeout(&|| Some(short)), Some(short));
        assert_eq!(
            call_timeout(&|| Some(Duration::from_secs(60))),
            Some(CALL_TIMEOUT)
        );
        assert_eq!(call_timeout(&|| Some(Duration::ZERO)), None);
    }
}
