//! The output side of a worker: one producer, and the transaction calls of
//! the chosen guarantee, each retried, aborted or escalated as librdkafka's
//! error class says.
//!
//! - `exactly_once`: `begin_transaction`, produce, `send_offsets_to_transaction`
//!   with the consumer's group metadata, `commit_transaction`.
//! - `at_least_once`: produce, flush (wait for every acknowledgement), then
//!   commit the positions through the consumer.
//!
//! Parts: `delivery` (the producer context: failed deliveries), `failure`
//! (what a failed call means), `retry` (retrying a call within its budgets),
//! `watchdog` (a call stuck in librdkafka past its timeout ends the process).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::TopicPartitionList;

use crate::config::Guarantee;
use crate::transform::Record;

mod delivery;
mod failure;
mod retry;
mod watchdog;

pub use delivery::DeliveryContext;
pub use failure::TxnFailure;
pub use retry::TimeLeft;
use retry::{call_timeout, retry};

/// How long one wait on the producer's events lasts, while a flush waits for
/// the queue to drain or a send waits for room in it.
const POLL_TICK: Duration = Duration::from_millis(1);

/// One worker's producer and the transaction protocol around it.
pub struct Output {
    producer: ThreadedProducer<DeliveryContext>,
    guarantee: Guarantee,
    default_topic: String,
    /// Latched on the first fatal failure: a producer in that state is never
    /// called again (librdkafka's transactional calls can block for good
    /// after a fatal error — librdkafka issue 4420).
    fatal: AtomicBool,
    /// A transaction (or at_least_once batch) is open: set by a successful
    /// `begin`, cleared by a successful `commit` and by any `abort`. The
    /// one place that knows; a revoke asks it whether there is anything to
    /// end.
    open: AtomicBool,
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
            open: AtomicBool::new(false),
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
        self.guarded(|| self.begin_unguarded())?;
        self.open.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether a transaction is open.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Whether a transaction was open; from now on none is, whoever ends it.
    pub fn take_open(&self) -> bool {
        self.open.swap(false, Ordering::AcqRel)
    }

    /// Commits `offsets` together with everything produced since `begin`.
    pub fn commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
        left: TimeLeft<'_>,
    ) -> Result<(), TxnFailure> {
        self.guarded(|| self.commit_unguarded(consumer, offsets, left))?;
        self.open.store(false, Ordering::Release);
        Ok(())
    }

    /// Aborts the open transaction; see `abort_unguarded` for what that
    /// means in each guarantee.
    pub fn abort(&self, left: TimeLeft<'_>) -> Result<(), TxnFailure> {
        self.open.store(false, Ordering::Release);
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
