//! One worker: a read_committed consumer and a transactional producer, driven
//! on their own OS thread.
//!
//! ```text
//!   poll ──► (rebalance callback may abort + ask for a rewind)
//!     │
//!     ├─ rewind needed? ──► drop the record, seek assigned partitions to committed offsets
//!     ├─ record ──► begin if closed ──► transform ──► produce outputs
//!     └─ batch due? ──► positions ──► send_offsets_to_transaction ──► commit_transaction
//!                            any abortable failure ──► abort ──► rewind
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::ThreadedProducer;
use rdkafka::{Message, TopicPartitionList};

use super::batch::{Batch, BatchPolicy};
use super::dead_letter;
use super::fatal::{fatal, fatal_if, FatalCause};
use super::offsets::{positions_to_commit, rewind, PositionError, ResetPolicy};
use super::quarantine::{Culprit, Origins, Quarantine, DEAD_LETTER_FLAG};
use super::rebalance::{WorkerContext, QUERY_TIMEOUT};
use super::recovery::{lost_recently, outlived_timeout, Recoverable, Recoveries};
use super::topics::{OutputTopics, TopicState};
use super::transaction::{DeliveryContext, Output, TxnFailure};
use crate::config::{FailurePolicy, Settings};
use crate::kafka;
use crate::lineage;
use crate::shutdown::Shutdown;
use crate::telemetry::{Committed, Health, Metrics};
use crate::transform::{Chain, Header, Record, Registry};

/// Poll timeout while no transaction is open: bounds how late a stop request
/// is noticed.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Transactions aborted in a row for errors (not rebalances) before the worker
/// stops instead of looping: a failure that repeats on replay is not transient.
const MAX_CONSECUTIVE_ABORTS: u32 = 5;
/// How long a failing rewind is retried before the worker gives up.
const REWIND_RETRY_BUDGET: Duration = Duration::from_secs(60);
/// The pause between two attempts at a rewind.
const REWIND_BACKOFF: Duration = Duration::from_millis(500);

/// Everything a worker needs, built once at start-up.
pub struct WorkerSpec {
    /// Position of this worker in the process (0-based).
    pub index: usize,
    /// The whole configuration.
    pub settings: Settings,
    /// Step types for the transform chain.
    pub registry: Registry,
    /// Process metrics.
    pub metrics: Metrics,
    /// Process health.
    pub health: Health,
    /// The stop latch.
    pub shutdown: Shutdown,
}

/// Failure injection for tests: abort every Nth transaction after producing
/// its records, exactly where a crash before commit would leave it.
fn injected_abort_every() -> Option<u64> {
    std::env::var("EXACTLY_TEST_ABORT_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
}

/// Failure injection for tests: after every Nth committed transaction, seek
/// each partition it committed back by one record, so that the consumer
/// hands the last committed record over again without a rewind — what a
/// librdkafka pause racing a poll does (see `redelivery`).
fn injected_redeliver_every() -> Option<u64> {
    std::env::var("EXACTLY_TEST_REDELIVER_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
}

/// What a worker leaves behind: its outcome, and its clients. The caller
/// drops the clients after reporting a failure, so that a librdkafka call
/// blocked in cleanup cannot hold the process up; after a graceful stop it
/// drops them first, so the consumer closes cleanly before the exit.
pub struct Finished {
    /// `Ok` after a requested stop, `Err` with the cause of a fatal error.
    pub result: anyhow::Result<()>,
    /// The consumer, which owns the producer through its context.
    pub clients: Option<Clients>,
}

/// A worker's consumer, which owns its producer through its context. Shared
/// so that the loop can poll a handle of its own while it may replace the
/// clients (an in-process recovery).
pub type Clients = Arc<BaseConsumer<WorkerContext>>;

/// Runs worker `spec.index` until a stop is requested or a fatal error.
pub fn run_worker(spec: WorkerSpec) -> Finished {
    let consumer = match build_clients(&spec) {
        Ok(c) => c,
        Err(e) => {
            spec.health.set_failed();
            return Finished {
                result: Err(e),
                clients: None,
            };
        }
    };
    let (health, index) = (spec.health.clone(), spec.index);
    let mut worker = match Loop::new(consumer.clone(), spec) {
        Ok(w) => w,
        Err(e) => {
            health.set_failed();
            return Finished {
                result: Err(e),
                clients: Some(consumer),
            };
        }
    };
    drop(consumer);
    worker.metrics.worker_started(index);
    let result = worker.start().and_then(|()| worker.run());
    health.worker(index).set_producer_ready(false);
    health.worker(index).set_joined(false);
    if result.is_err() {
        health.set_failed();
    }
    Finished {
        result,
        clients: Some(worker.consumer),
    }
}

/// The worker's producer (inside the consumer's context) and consumer.
fn build_clients(spec: &WorkerSpec) -> anyhow::Result<Clients> {
    let WorkerSpec {
        index,
        settings,
        metrics,
        health,
        shutdown,
        ..
    } = spec;
    let index = *index;
    let txn_id = settings.worker_transactional_id(index);
    let client_id = format!("exactly-{txn_id}");
    let producer: ThreadedProducer<DeliveryContext> =
        kafka::producer_config(settings, &client_id, &txn_id)
            .create_with_context(DeliveryContext::default())
            .context("cannot create the producer from [kafka.client] and [kafka.producer]")?;
    let output = Output::new(
        producer,
        settings.processing.guarantee,
        settings.output.topic.clone(),
    );
    let budget = Duration::from_millis(settings.processing.shutdown_timeout_ms);
    let context = WorkerContext::new(
        output,
        index,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
        budget,
        reset_policy(settings),
    );
    let consumer = kafka::consumer_config(settings, &client_id, &txn_id)
        .create_with_context(context)
        .context("cannot create the consumer from [kafka.client] and [kafka.consumer]")?;
    Ok(Arc::new(consumer))
}

struct Loop {
    index: usize,
    consumer: Clients,
    /// What the clients are built from, again on a recovery.
    spec: WorkerSpec,
    metrics: Metrics,
    shutdown: Shutdown,
    policy: BatchPolicy,
    reset: ResetPolicy,
    chain: Chain,
    batch: Batch,
    outputs: Vec<Record>,
    budget: Duration,
    aborts_in_a_row: u32,
    last_abort_cause: String,
    abort_every: Option<u64>,
    transactions: u64,
    /// Test injection: hand the last committed records over again every
    /// Nth commit (`EXACTLY_TEST_REDELIVER_EVERY`).
    redeliver_every: Option<u64>,
    lineage: bool,
    on_failure_policy: FailurePolicy,
    dead_letter_topic: Option<String>,
    origins: Origins,
    quarantine: Quarantine,
    /// Which routed output topics exist.
    topics: OutputTopics,
    max_message_bytes: usize,
    /// The suspect input committed in a transaction of its own right now.
    isolating: Option<(String, i32, i64)>,
    /// Rewinds so far: tells a caller whether a commit it made failed.
    rewinds: u64,
    /// A polled record not yet processed while a commit runs: its
    /// partition commits its offset, not the consumer's position.
    in_hand: Option<(String, i32, i64)>,
    /// When the open transaction began (kept until it commits or its abort
    /// succeeds): a producer fenced after the transaction timeout may have
    /// been fenced by the coordinator's own clock rather than by a rival.
    txn_began: Option<Instant>,
    /// The producer's `transaction.timeout.ms`.
    txn_timeout: Duration,
    /// The consumer's `session.timeout.ms`.
    session_timeout: Duration,
    /// Recent in-process recoveries, to bound them.
    recoveries: Recoveries,
    /// This worker's transactional id.
    txn_id: String,
}

/// Why a record's outputs cannot be sent.
enum Refusal {
    /// The record itself: its failure policy decides.
    Record(RecordFailure),
    /// Nothing to do with the record: the transaction ends this way.
    Txn(TxnFailure),
    /// The principal may not write where the record goes: the worker ends.
    NotAuthorized(String),
}

/// A record the chain or the producer could not handle.
pub struct RecordFailure {
    /// The failing step: its configured name or `N (type)`, or `produce`.
    pub step: String,
    /// A short class: decode, eval, type, too_large, unknown_topic, ...
    pub kind: &'static str,
    /// What went wrong.
    pub message: String,
    /// The record already failed on its way to the dead-letter topic.
    pub dead_letter_failed: bool,
}

impl Loop {
    /// The loop around `consumer`, before its producer is initialised.
    fn new(consumer: Clients, spec: WorkerSpec) -> anyhow::Result<Loop> {
        let settings = &spec.settings;
        let chain = spec
            .registry
            .build(
                &settings.transform,
                settings.input.format,
                settings.output.format,
            )
            .map_err(|e| anyhow!("invalid transform chain: {e}"))?;
        let millis = |table: &std::collections::BTreeMap<String, String>, key, default| {
            Duration::from_millis(
                table
                    .get(key)
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(default),
            )
        };
        Ok(Loop {
            index: spec.index,
            consumer,
            metrics: spec.metrics.clone(),
            shutdown: spec.shutdown.clone(),
            policy: BatchPolicy::from(&settings.processing),
            reset: reset_policy(settings),
            chain,
            batch: Batch::default(),
            outputs: Vec::new(),
            budget: Duration::from_millis(settings.processing.shutdown_timeout_ms),
            aborts_in_a_row: 0,
            last_abort_cause: String::new(),
            abort_every: injected_abort_every(),
            redeliver_every: injected_redeliver_every(),
            transactions: 0,
            lineage: settings.output.lineage,
            on_failure_policy: settings.dead_letter.effective_policy(),
            dead_letter_topic: settings.dead_letter.topic.clone(),
            origins: Origins::new(&settings.input.topics),
            quarantine: Quarantine::default(),
            topics: OutputTopics::default(),
            max_message_bytes: settings
                .kafka
                .resolved
                .for_producer()
                .get("message.max.bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000),
            isolating: None,
            rewinds: 0,
            in_hand: None,
            txn_began: None,
            txn_timeout: Duration::from_millis(
                settings
                    .transaction_timeout_ms()
                    .unwrap_or(crate::config::DEFAULT_TRANSACTION_TIMEOUT_MS),
            ),
            session_timeout: millis(
                &settings.kafka.resolved.for_consumer(),
                "session.timeout.ms",
                45_000,
            ),
            recoveries: Recoveries::default(),
            txn_id: settings.worker_transactional_id(spec.index),
            spec,
        })
    }

    /// Initialises the producer (fencing any earlier instance with the same
    /// transactional id and aborting its open transaction) and subscribes.
    fn start(&mut self) -> anyhow::Result<()> {
        let index = self.index;
        let settings = &self.spec.settings;
        let txn_id = &self.txn_id;
        // A stop requested during start-up ends the initialisation at once.
        let shutdown = self.shutdown.clone();
        let left = || shutdown.is_requested().then_some(Duration::ZERO);
        tracing::info!(worker = index, transactional_id = %txn_id, guarantee = %settings.processing.guarantee, "initialising the producer");
        if let Err(f) = self.consumer.context().output.init(&left) {
            if self.shutdown.is_requested() {
                // Stopped before it started: nothing was consumed, nothing
                // is left to commit.
                tracing::info!(worker = index, "stop requested during start-up");
                return Ok(());
            }
            // The ACL hint of a refused init names the resource here, where
            // the id is known.
            let cause =
                format!("worker {index} cannot initialise transactional id `{txn_id}`: {f}")
                    .replace(
                        "grant WRITE on the TransactionalId",
                        &format!("grant WRITE on TransactionalId:{txn_id}"),
                    );
            return Err(match f {
                TxnFailure::TimedOut(_) => Recoverable::new("init_timed_out", cause).into(),
                _ => fatal_if(
                    FatalCause::of_producer(self.ctx().output.fatal_code()),
                    anyhow!(cause),
                ),
            });
        }
        self.spec.health.worker(index).set_producer_ready(true);
        let topics: Vec<&str> = settings.input.topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .with_context(|| format!("cannot subscribe to {topics:?}"))
    }

    /// Runs the loop; a fence of the worker's own making (no rival) is
    /// recovered from in-process, a bounded number of times.
    fn run(&mut self) -> anyhow::Result<()> {
        loop {
            let error = match self.run_clients() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let Some(cause) = error.downcast_ref::<Recoverable>().cloned() else {
                return Err(error);
            };
            if self.shutdown.is_requested() {
                // Stopping: no recovery, and what was consumed since the
                // last commit is not committed.
                return Err(fatal(FatalCause::FinalCommit, error));
            }
            if let Err(exhausted) = self.recoveries.allow(Instant::now()) {
                return Err(fatal(
                    FatalCause::RecoveriesExhausted,
                    error.context(exhausted),
                ));
            }
            self.recover(&cause)?;
        }
    }

    /// Replaces the producer and the consumer with new ones under the same
    /// transactional id and `group.instance.id`: what a restart of the
    /// process would do, without the restart. The new producer's
    /// `init_transactions` fences the old one and aborts its transaction;
    /// the new consumer rejoins and resumes from the committed offsets.
    fn recover(&mut self, cause: &Recoverable) -> anyhow::Result<()> {
        tracing::warn!(
            worker = self.index,
            cause = %cause.message,
            "recovering in-process: a new producer and consumer under the same ids (no other instance holds them)"
        );
        self.metrics.worker_recovered(cause.kind);
        let health = self.spec.health.worker(self.index);
        health.set_producer_ready(false);
        health.set_joined(false);
        let mut fresh = Err(anyhow!("not built"));
        for _ in 0..3 {
            fresh = build_clients(&self.spec);
            if fresh.is_ok() {
                break;
            }
        }
        let old = std::mem::replace(&mut self.consumer, fresh?);
        // The old clients must not act again: no abort, health or metric
        // from their callbacks when they close. Their cleanup may block on
        // a broken producer, so it runs on a thread of its own.
        old.context().retire();
        let _ = std::thread::Builder::new()
            .name(format!("worker-{}-retired", self.index))
            .spawn(move || drop(old));
        self.batch.reset();
        self.isolating = None;
        self.in_hand = None;
        self.txn_began = None;
        self.aborts_in_a_row = 0;
        loop {
            match self.start() {
                Ok(()) => return Ok(()),
                Err(e) if e.downcast_ref::<Recoverable>().is_some() => {
                    // The cluster is still unreachable: keep waiting, within
                    // the recovery bound.
                    if self.shutdown.is_requested() {
                        return Err(fatal(FatalCause::FinalCommit, e));
                    }
                    if let Err(exhausted) = self.recoveries.allow(Instant::now()) {
                        return Err(fatal(FatalCause::RecoveriesExhausted, e.context(exhausted)));
                    }
                    tracing::warn!(worker = self.index, error = %format!("{e:#}"), "still cannot initialise; retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn ctx(&self) -> &WorkerContext {
        self.consumer.context()
    }

    fn run_clients(&mut self) -> anyhow::Result<()> {
        // One clock read per record: the time after processing one record
        // is the time before polling the next (clock reads showed up in
        // profiles at several percent of the worker's time).
        let mut now = Instant::now();
        while !self.shutdown.is_requested() {
            let timeout = self.batch.time_left(now, IDLE_POLL);
            // A handle of its own: a record borrows it while the loop may
            // replace `self.consumer`.
            let consumer = self.consumer.clone();
            let polled = consumer.poll(timeout);
            if let Some(cause) = self.ctx().take_unreadable_offsets() {
                return Err(fatal(
                    FatalCause::OffsetsUnreadable,
                    anyhow!("worker {}: fatal Kafka error: {cause}", self.index),
                ));
            }
            if let Some(failure) = self.ctx().take_fatal() {
                // A callback could not end the transaction (the partitions
                // were moving): the same classes as the loop's own calls.
                let timed_out = matches!(failure, TxnFailure::TimedOut(_));
                return Err(self.producer_failed(&failure.to_string(), timed_out));
            }
            if self.ctx().take_rewind_needed() {
                // The transaction was ended by a rebalance; anything polled
                // alongside may come from a position past the aborted
                // records, so it is dropped and fetched again.
                drop(polled);
                self.batch.reset();
                self.txn_began = None;
                // A suspect being isolated was aborted with the rest; it
                // stays a suspect and is isolated again on replay.
                self.isolating = None;
                self.rewind()?;
                now = Instant::now();
                continue;
            }
            if self.ctx().has_starts() {
                // New partitions without a committed offset: their starting
                // positions are committed before any of their records is
                // processed, so no later owner resolves the reset policy
                // again. A record polled alongside waits in hand.
                let rewinds = self.rewinds;
                self.in_hand = match &polled {
                    Some(Ok(m)) => Some((m.topic().to_owned(), m.partition(), m.offset())),
                    _ => None,
                };
                let committed = self.commit_starts();
                self.in_hand = None;
                committed?;
                if self.rewinds != rewinds {
                    // The commit failed and the partitions were rewound:
                    // the record in hand is fetched again.
                    now = Instant::now();
                    continue;
                }
            }
            // Nothing ready to consume: the open transaction may close now,
            // once the least interval between commits has passed.
            let nothing_ready = polled.is_none();
            match polled {
                None => {}
                Some(Ok(msg)) => self.process(&msg)?,
                Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                    // The consumer will never consume again (librdkafka
                    // stops it); staying up would hold the replica's place
                    // doing nothing. The open transaction is aborted first
                    // (its outputs must not hold the last stable offset
                    // back); a restarted process rejoins cleanly.
                    return Err(self.consumer_failed(code, "the consumer reported it"));
                }
                Some(Err(e)) if is_authorization(&e) => {
                    // No retry grants a missing ACL; the open transaction is
                    // aborted and the worker ends, naming what to grant.
                    if self.batch.is_open() {
                        let _ = self.abort("the consumer is not authorized");
                    }
                    return Err(self.not_authorized(&e));
                }
                Some(Err(e)) => {
                    // Consumer errors (broker down, topic gone) are reported
                    // here; librdkafka keeps retrying underneath.
                    tracing::warn!(worker = self.index, error = %e, "consumer error");
                }
            }
            now = Instant::now();
            let isolated = self.isolating.is_some() && self.batch.is_open();
            let reason = self.batch.close_reason(&self.policy, now, nothing_ready);
            if let Some(reason) = reason {
                self.metrics.transaction_closing(reason);
            }
            if isolated || reason.is_some() {
                self.commit()?;
                now = Instant::now();
            }
        }
        self.finish()
    }

    /// Processes one input record inside the open transaction.
    fn process(&mut self, msg: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        if !self.ctx().admit(topic, partition, offset) {
            // Handed over before, after a pause raced the poll that took it
            // (see `redelivery`): processing it again would duplicate it.
            self.metrics.redelivered();
            tracing::debug!(
                worker = self.index,
                topic,
                partition,
                offset,
                "dropped a record the consumer handed over a second time"
            );
            return Ok(());
        }
        self.metrics.record_consumed();
        let suspect = self.quarantine.get(topic, partition, offset);
        if let Some(culprit) = &suspect {
            tracing::info!(
                worker = self.index,
                topic,
                partition,
                offset,
                confirmed = culprit.confirmed,
                "quarantined input read again"
            );
            if !culprit.confirmed && self.batch.records() > 0 {
                // A suspect gets a transaction of its own: commit what is
                // open first. If that commit fails, the rewind brings this
                // record back, still a suspect.
                let rewinds = self.rewinds;
                // This record is polled already: the consumer's position is
                // past it, but it is not part of what commits now.
                self.in_hand = Some((topic.to_owned(), partition, offset));
                let committed = self.commit();
                self.in_hand = None;
                committed?;
                if self.rewinds != rewinds {
                    return Ok(());
                }
            }
        }
        if !self.batch.is_open() {
            self.begin()?;
        }
        if !self.batch.has_partition(topic, partition) {
            // The first record of its partition in this transaction: the
            // oldest input of the partition not yet committed.
            let at = msg.timestamp().to_millis();
            self.metrics.input_read(topic, partition, offset, at);
        }
        let record = to_record(msg);
        let bytes = record.payload_len();
        if let Some(culprit) = suspect {
            if culprit.confirmed {
                let failure = RecordFailure {
                    step: "produce".into(),
                    kind: "delivery",
                    message: culprit.cause,
                    dead_letter_failed: culprit.dead_letter_failed,
                };
                return self.record_failed(msg, record, bytes, failure);
            }
            self.isolating = Some((topic.to_owned(), partition, offset));
        }
        self.outputs.clear();
        if let Err(e) = self.chain.apply(record, &mut self.outputs) {
            let failure = RecordFailure {
                step: e.step,
                kind: e.error.kind,
                message: e.error.message,
                dead_letter_failed: false,
            };
            return self.record_failed(msg, to_record(msg), bytes, failure);
        }
        if self.outputs.is_empty() {
            self.batch.tally.filtered += 1;
        }
        if self.lineage {
            let count = self.outputs.len() as u32;
            for (i, out) in self.outputs.iter_mut().enumerate() {
                lineage::stamp(out, topic, partition, offset, i as u32, count);
            }
        }
        // After lineage: its headers count against message.max.bytes too.
        match self.check_outputs() {
            Ok(()) => {}
            Err(Refusal::Record(failure)) => {
                return self.record_failed(msg, to_record(msg), bytes, failure)
            }
            Err(Refusal::Txn(f)) => return self.on_failure(f),
            Err(Refusal::NotAuthorized(m)) => {
                // A missing ACL, not a failed producer: nothing to recover.
                return Err(fatal(
                    FatalCause::NotAuthorized,
                    anyhow!("worker {}: fatal Kafka error: {m}", self.index),
                ));
            }
        }
        let tag = self.origins.tag(topic, partition, offset);
        let output = &self.consumer.context().output;
        for i in 0..self.outputs.len() {
            if let Err(f) = output.send(&self.outputs[i], tag) {
                return self.on_failure(f);
            }
            let t = self.outputs[i]
                .topic
                .as_deref()
                .unwrap_or(output.default_topic());
            self.batch.count_output(t);
        }
        self.batch.add(topic, partition, bytes, self.outputs.len());
        Ok(())
    }

    /// Checks what a broker or librdkafka would refuse for good, before any
    /// output of the record is sent: all of a record's outputs go, or none.
    fn check_outputs(&mut self) -> Result<(), Refusal> {
        for i in 0..self.outputs.len() {
            let size = self.outputs[i].wire_len();
            if size > self.max_message_bytes {
                return Err(Refusal::Record(RecordFailure {
                    step: "produce".into(),
                    kind: "too_large",
                    message: format!(
                        "output {} is {size} bytes, over message.max.bytes = {}",
                        i, self.max_message_bytes
                    ),
                    dead_letter_failed: false,
                }));
            }
            let Some(t) = self.outputs[i].topic.as_deref() else {
                continue;
            };
            if t == self.ctx().output.default_topic() {
                continue;
            }
            let settings = &self.spec.settings;
            if !settings.output.allow_routes_to_input
                && settings.input.topics.iter().any(|i| i == t)
            {
                return Err(Refusal::Record(RecordFailure {
                    step: "produce".into(),
                    kind: "routes_to_input",
                    message: format!(
                        "routed to `{t}`, an input topic (set output.allow_routes_to_input = true if that is meant)"
                    ),
                    dead_letter_failed: false,
                }));
            }
            match self.topics.state(self.consumer.client(), t) {
                Ok(TopicState::Exists) => {}
                Ok(TopicState::Missing) => {
                    return Err(Refusal::Record(RecordFailure {
                        step: "produce".into(),
                        kind: "unknown_topic",
                        message: format!("output topic `{t}` does not exist"),
                        dead_letter_failed: false,
                    }))
                }
                Ok(TopicState::NotAuthorized) => {
                    return Err(Refusal::NotAuthorized(format!(
                        "not authorized to write to output topic `{t}` (a route step chose it); \
                         grant this principal WRITE and DESCRIBE on it"
                    )))
                }
                // No authoritative answer: say nothing about the record.
                Err(e) => return Err(Refusal::Txn(TxnFailure::Interrupted(e))),
            }
        }
        Ok(())
    }

    /// Applies the failure policy to a record the chain or the producer
    /// cannot handle. `original` is the input as it was read.
    fn record_failed(
        &mut self,
        msg: &BorrowedMessage<'_>,
        original: Record,
        bytes: usize,
        failure: RecordFailure,
    ) -> anyhow::Result<()> {
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        self.batch.tally.error(&failure.step, failure.kind);
        let cause = format!(
            "record {topic}[{partition}]@{offset}: step {}: {}: {}",
            failure.step, failure.kind, failure.message
        );
        let policy = if failure.dead_letter_failed {
            FailurePolicy::Fail
        } else {
            self.on_failure_policy
        };
        match policy {
            FailurePolicy::Fail => {
                self.metrics.transform_error(&failure.step, failure.kind);
                let _ = self.abort(&cause);
                let hint = if failure.dead_letter_failed {
                    " (and its dead-letter record could not be written either)"
                } else {
                    ""
                };
                Err(fatal(
                    FatalCause::RecordFailed,
                    anyhow!("worker {}: {cause}{hint}", self.index),
                ))
            }
            FailurePolicy::Skip => {
                tracing::warn!(worker = self.index, cause, "skipping the record");
                self.batch.tally.skipped += 1;
                self.batch.add(topic, partition, bytes, 0);
                Ok(())
            }
            FailurePolicy::DeadLetter => {
                let dlq = self
                    .dead_letter_topic
                    .clone()
                    .expect("validated: policy needs a topic");
                tracing::warn!(worker = self.index, cause, topic = %dlq, "sending the record to the dead-letter topic");
                let record =
                    dead_letter::record(original, &dlq, (topic, partition, offset), &failure);
                if record.wire_len() > self.max_message_bytes {
                    let _ = self.abort(&cause);
                    return Err(fatal(
                        FatalCause::RecordFailed,
                        anyhow!(
                            "worker {}: {cause}; its dead-letter record ({} bytes) exceeds message.max.bytes = {} as well",
                            self.index,
                            record.wire_len(),
                            self.max_message_bytes
                        ),
                    ));
                }
                let tag = self.origins.tag(topic, partition, offset) | DEAD_LETTER_FLAG;
                if let Err(f) = self.ctx().output.send(&record, tag) {
                    return self.on_failure(f);
                }
                self.batch.tally.dead_lettered += 1;
                self.batch.count_output(&dlq);
                self.batch.add(topic, partition, bytes, 1);
                Ok(())
            }
        }
    }

    /// Commits the open transaction with the positions it consumed up to.
    fn commit(&mut self) -> anyhow::Result<()> {
        self.transactions += 1;
        if self
            .abort_every
            .is_some_and(|n| self.transactions.is_multiple_of(n))
        {
            return self.on_failure(TxnFailure::Abortable(
                "injected failure between produce and commit (EXACTLY_TEST_ABORT_EVERY)".into(),
            ));
        }
        // A fenced or otherwise fatal consumer has lost its group
        // membership: no commit of it can be right.
        if let Some((code, _)) = self.consumer.client().fatal_error() {
            return Err(self.consumer_failed(code, "found before a commit"));
        }
        let mut offsets = match positions_to_commit(&self.consumer, self.batch.partitions()) {
            Ok(o) => o,
            Err(e @ PositionError::Missing { .. }) => {
                if let Some((code, _)) = self.consumer.client().fatal_error() {
                    return Err(self.consumer_failed(code, &e.to_string()));
                }
                return self.on_failure(TxnFailure::Interrupted(e.to_string()));
            }
            Err(e) => return self.on_failure(TxnFailure::Abortable(e.to_string())),
        };
        if let Some((t, p, next)) = &self.in_hand {
            if let Some(mut e) = offsets.find_partition(t, *p) {
                let _ = e.set_offset(rdkafka::Offset::Offset(*next));
            }
        }
        // Starting positions fixed for never-committed partitions go with
        // this commit; none of their records is in it.
        let starts = self.ctx().starts();
        for ((t, p), start) in &starts {
            if offsets.find_partition(t, *p).is_none() {
                let _ = offsets.add_partition_offset(t, *p, rdkafka::Offset::Offset(*start));
            }
        }
        // The committing worker's id goes with every offset: a later start
        // of this replica with fewer workers finds the ids it must fence
        // there (see `retired`).
        for mut e in offsets.elements() {
            e.set_metadata(&self.txn_id);
        }
        let commit_started = Instant::now();
        self.batch.commit_started(commit_started);
        let left = || self.ctx().time_left();
        match self.ctx().output.commit(&self.consumer, &offsets, &left) {
            Ok(()) => {
                self.ctx().set_txn_open(false);
                self.txn_began = None;
                self.ctx().starts_committed(&starts);
                self.ctx().offsets_committed(&offsets);
                let took = self
                    .batch
                    .started()
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                let commit_took = commit_started.elapsed();
                self.batch.commit_finished(commit_took);
                self.metrics.transaction_committed(&Committed {
                    worker: self.index,
                    input_records: self.batch.records(),
                    input_bytes: self.batch.bytes(),
                    outputs: self.batch.outputs(),
                    took,
                    commit_took,
                });
                for (topic, n) in self.batch.per_topic() {
                    self.metrics.output_records(topic, *n);
                }
                self.metrics.tally(&self.batch.tally);
                tracing::debug!(
                    worker = self.index,
                    records = self.batch.records(),
                    outputs = self.batch.outputs(),
                    ?took,
                    ?commit_took,
                    "transaction committed"
                );
                self.batch.reset();
                if let Some(innocent) = self.isolating.take() {
                    self.quarantine.release(&innocent);
                }
                self.aborts_in_a_row = 0;
                if self
                    .redeliver_every
                    .is_some_and(|n| self.transactions.is_multiple_of(n))
                {
                    self.redeliver(&offsets);
                }
                Ok(())
            }
            Err(f) => self.on_failure(f),
        }
    }

    /// Test injection: seeks each partition of `committed` one record back,
    /// without a rewind, as a librdkafka pause racing a poll leaves it.
    fn redeliver(&self, committed: &TopicPartitionList) {
        let mut back = TopicPartitionList::new();
        for e in committed.elements() {
            if let rdkafka::Offset::Offset(o) = e.offset() {
                if o > 0 {
                    let _ = back.add_partition_offset(
                        e.topic(),
                        e.partition(),
                        rdkafka::Offset::Offset(o - 1),
                    );
                }
            }
        }
        if let Err(e) = self.consumer.seek_partitions(back, QUERY_TIMEOUT) {
            tracing::warn!(worker = self.index, error = %e, "injected redelivery: seek failed");
        }
    }

    /// Opens a transaction (a batch, in at_least_once mode).
    fn begin(&mut self) -> anyhow::Result<()> {
        if let Err(f) = self.ctx().output.begin() {
            return self.on_failure(f);
        }
        let now = Instant::now();
        self.ctx().set_txn_open(true);
        self.batch.open(now, &self.policy);
        self.origins.clear();
        self.txn_began = Some(now);
        Ok(())
    }

    /// Commits the starting positions of never-committed partitions: with
    /// the open transaction, or in a transaction of their own.
    fn commit_starts(&mut self) -> anyhow::Result<()> {
        if !self.batch.is_open() {
            self.begin()?;
        }
        self.commit()
    }

    /// Abortable failures abort and rewind; fatal ones end the worker.
    fn on_failure(&mut self, failure: TxnFailure) -> anyhow::Result<()> {
        let counts = matches!(failure, TxnFailure::Abortable(_));
        let stop_stays_clean = failure.leaves_a_stop_clean();
        match failure {
            TxnFailure::Fatal(m) => Err(self.producer_failed(&m, false)),
            TxnFailure::TimedOut(m) => {
                // Whatever the transaction holds is not to be trusted: end
                // it as a best effort before the clients are replaced.
                let _ = self.abort(&m);
                Err(self.producer_failed(&m, true))
            }
            TxnFailure::MemberFenced(m) => {
                Err(self.consumer_failed(RDKafkaErrorCode::FencedInstanceId, &m))
            }
            TxnFailure::Abortable(cause) | TxnFailure::Interrupted(cause) => {
                self.abort(&cause)?;
                if self.shutdown.is_requested() {
                    // Stopping: nothing is consumed again, so there is
                    // nothing to rewind.
                    if stop_stays_clean {
                        // A rebalance took the partitions while the final
                        // commit ran: had it come a moment earlier, the
                        // revoke would have aborted the same records. Their
                        // next owner processes them; the stop is clean.
                        tracing::info!(
                            worker = self.index,
                            cause,
                            "stopping: a rebalance interrupted the final commit; its records go to the partitions' next owner"
                        );
                        return Ok(());
                    }
                    // Anything else: the stop did not commit.
                    return Err(fatal(
                        FatalCause::FinalCommit,
                        anyhow!(
                            "worker {}: the open transaction was aborted while stopping: {cause}",
                            self.index
                        ),
                    ));
                }
                let isolating = self.isolating.take();
                for (tag, error) in self.ctx().output.take_permanent_failures() {
                    let Some((input, dead_letter_failed)) = self.origins.input(tag) else {
                        continue;
                    };
                    let confirmed = isolating.as_ref() == Some(&input);
                    tracing::warn!(
                        worker = self.index,
                        ?input,
                        error,
                        "quarantining the input: its output failed for good"
                    );
                    self.quarantine.insert(
                        input,
                        Culprit {
                            cause: error,
                            dead_letter_failed,
                            confirmed,
                        },
                    );
                }
                if counts {
                    self.aborts_in_a_row += 1;
                    self.last_abort_cause = cause;
                }
                if self.aborts_in_a_row >= MAX_CONSECUTIVE_ABORTS && self.abort_every.is_none() {
                    return Err(fatal(
                        FatalCause::AbortsInARow,
                        anyhow!(
                            "worker {}: {} transactions in a row aborted on replay of the same input; last cause: {}",
                            self.index,
                            self.aborts_in_a_row,
                            self.last_abort_cause
                        ),
                    ));
                }
                self.rewind()
            }
        }
    }

    fn abort(&mut self, cause: &str) -> anyhow::Result<()> {
        tracing::warn!(worker = self.index, cause, "aborting the transaction");
        let left = || self.ctx().time_left();
        let result = self.ctx().output.abort(&left);
        self.ctx().set_txn_open(false);
        self.batch.reset();
        self.metrics.transaction_aborted();
        match result {
            Ok(()) => {
                self.txn_began = None;
                Ok(())
            }
            Err(f) => {
                let timed_out = matches!(f, TxnFailure::TimedOut(_));
                Err(self.producer_failed(&format!("abort failed: {f}"), timed_out))
            }
        }
    }

    /// The error a producer failure ends the worker with: recoverable when
    /// no rival can have caused it (see `recovery`), fatal otherwise.
    fn producer_failed(&self, cause: &str, timed_out: bool) -> anyhow::Error {
        let message = format!("worker {}: fatal Kafka error: {cause}", self.index);
        if timed_out {
            return Recoverable::new("unanswered", message).into();
        }
        let fenced = matches!(
            self.ctx().output.fatal_code(),
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::InvalidTransactionalState
            )
        );
        if fenced && outlived_timeout(self.txn_began, Instant::now(), self.txn_timeout) {
            return Recoverable::new(
                "transaction_timed_out",
                format!(
                    "{message} (the transaction had been open longer than transaction.timeout.ms = {} ms, \
                     so the coordinator aborted it: no other instance is involved)",
                    self.txn_timeout.as_millis()
                ),
            )
            .into();
        }
        fatal_if(
            FatalCause::of_producer(self.ctx().output.fatal_code()),
            anyhow!(message),
        )
    }

    fn rewind(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let starts = self.ctx().starts();
            match rewind(&self.consumer, &starts, self.reset, QUERY_TIMEOUT) {
                Ok(targets) => {
                    self.ctx().rewound(&targets);
                    self.rewinds += 1;
                    self.metrics.rewound();
                    tracing::info!(
                        worker = self.index,
                        partitions = targets.count(),
                        "rewound to committed offsets"
                    );
                    return Ok(());
                }
                Err(e)
                    if started.elapsed() < REWIND_RETRY_BUDGET && !self.shutdown.is_requested() =>
                {
                    tracing::warn!(worker = self.index, error = %e, "rewind failed; retrying");
                    // Backoff between attempts, not synchronisation.
                    std::thread::sleep(REWIND_BACKOFF);
                }
                Err(e) => {
                    return Err(fatal(
                        FatalCause::RewindFailed,
                        anyhow!(
                            "worker {}: cannot rewind to committed offsets: {e}",
                            self.index
                        ),
                    ))
                }
            }
        }
    }

    /// Graceful stop: commit what is open, within the stop budget. A stop
    /// whose final commit failed is an error: the process must not exit 0
    /// as if everything consumed were committed.
    fn finish(&mut self) -> anyhow::Result<()> {
        if self.batch.is_open() {
            tracing::info!(
                worker = self.index,
                records = self.batch.records(),
                "stopping: committing the open transaction"
            );
            // A failed commit is an error here: `on_failure` aborts without
            // rewinding once a stop is requested.
            self.commit()
                .context("the final commit on stop did not succeed")
                .map_err(|e| fatal(FatalCause::FinalCommit, e))?;
        }
        tracing::info!(
            worker = self.index,
            left = ?self.shutdown.budget_left(self.budget),
            "worker stopped"
        );
        Ok(())
    }
}

impl Loop {
    /// The consumer failed fatally (`seen` says how that was noticed): the
    /// open transaction is aborted as a best effort, so that its outputs do
    /// not hold back the last stable offset, and the worker stops.
    fn consumer_failed(&mut self, code: RDKafkaErrorCode, seen: &str) -> anyhow::Error {
        if self.batch.is_open() && !self.ctx().output.is_fatal() {
            let _ = self.abort("the consumer failed fatally");
        }
        let error = consumer_fatal(self.index, code, seen);
        if code == RDKafkaErrorCode::FencedInstanceId
            && lost_recently(self.ctx().lost_at(), Instant::now(), self.session_timeout)
        {
            // The assignment was lost to a session timeout just before: the
            // rejoin under the same group.instance.id fenced the member's
            // own earlier membership.
            return Recoverable::new(
                "session_expired",
                format!("{error:#} (after this member's own session expired)"),
            )
            .into();
        }
        error
    }
}

/// `auto.offset.reset` of the consumer table, as a policy.
fn reset_policy(settings: &Settings) -> ResetPolicy {
    ResetPolicy::from_property(
        settings
            .kafka
            .resolved
            .for_consumer()
            .get("auto.offset.reset")
            .map(String::as_str),
    )
}

/// A consumer error that only an ACL can fix.
fn is_authorization(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::GroupAuthorizationFailed | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

impl Loop {
    /// The error a worker stops with when its consumer was refused: it names
    /// the principal, the resource and the ACL to grant.
    fn not_authorized(&self, e: &KafkaError) -> anyhow::Error {
        let settings = &self.spec.settings;
        let who = crate::kafka::principal(settings);
        let grant = match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::GroupAuthorizationFailed) => {
                format!("READ on Group:{}", settings.kafka.group_id)
            }
            _ => format!(
                "READ on Topic:{} (each input topic)",
                settings.input.topics.join(", Topic:")
            ),
        };
        fatal(
            FatalCause::NotAuthorized,
            anyhow!(
                "worker {}: {who} is not authorized: grant {grant} (consumer error: {e}; docs/security.md)",
                self.index
            ),
        )
    }
}

/// The error a worker stops with when its consumer failed fatally, naming
/// the likely cause for the one fatal consumer error librdkafka has.
fn consumer_fatal(index: usize, code: RDKafkaErrorCode, seen: &str) -> anyhow::Error {
    let hint = if code == RDKafkaErrorCode::FencedInstanceId {
        "; another member joined the group with this replica's group.instance.id (its \
         transactional_id) while this one was a healthy member: two replicas share a \
         transactional_id, or another client uses it. (A fence that follows this member's own \
         session expiry is recovered from in-process, not reported here)"
    } else {
        ""
    };
    let cause = if code == RDKafkaErrorCode::FencedInstanceId {
        FatalCause::FencedInstance
    } else {
        FatalCause::ConsumerFatal
    };
    fatal(
        cause,
        anyhow!("worker {index}: the consumer failed fatally ({code:?}: {code}; {seen}){hint}"),
    )
}

/// Copies an input record into the chain's owned form.
fn to_record(msg: &BorrowedMessage<'_>) -> Record {
    let headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: None,
        key: msg.key().map(<[u8]>::to_vec),
        value: msg.payload().map(<[u8]>::to_vec),
        headers,
        timestamp: msg.timestamp().to_millis(),
    }
}
