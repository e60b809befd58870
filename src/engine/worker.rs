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

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::ThreadedProducer;
use rdkafka::Message;

use super::batch::{Batch, BatchPolicy};
use super::offsets::{positions_to_commit, rewind, ResetPolicy};
use super::rebalance::WorkerContext;
use super::transaction::{DeliveryContext, Output, TxnFailure};
use crate::config::Settings;
use crate::kafka;
use crate::lineage;
use crate::shutdown::Shutdown;
use crate::telemetry::{Health, Metrics};
use crate::transform::{Chain, Header, Record};

/// Poll timeout while no transaction is open: bounds how late a stop request
/// is noticed.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Transactions aborted in a row for errors (not rebalances) before the worker
/// stops instead of looping: a failure that repeats on replay is not transient.
const MAX_CONSECUTIVE_ABORTS: u32 = 5;
/// Time allowed for reading committed offsets and seeking during a rewind.
const REWIND_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a worker needs, built once at start-up.
pub struct WorkerSpec {
    /// Position of this worker in the process (0-based).
    pub index: usize,
    /// The whole configuration.
    pub settings: Settings,
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

/// What a worker leaves behind: its outcome, and its clients. The caller
/// drops the clients after reporting a failure, so that a librdkafka call
/// blocked in cleanup cannot hold the process up; after a graceful stop it
/// drops them first, so the consumer closes cleanly before the exit.
pub struct Finished {
    /// `Ok` after a requested stop, `Err` with the cause of a fatal error.
    pub result: anyhow::Result<()>,
    /// The consumer, which owns the producer through its context.
    pub clients: Option<BaseConsumer<WorkerContext>>,
}

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
    let result = drive(&consumer, spec);
    Finished {
        result,
        clients: Some(consumer),
    }
}

/// The worker's producer (inside the consumer's context) and consumer.
fn build_clients(spec: &WorkerSpec) -> anyhow::Result<BaseConsumer<WorkerContext>> {
    let WorkerSpec {
        index,
        settings,
        metrics,
        health,
        shutdown,
    } = spec;
    let index = *index;
    let txn_id = settings.worker_transactional_id(index);
    let client_id = format!("exactly-{txn_id}");
    let producer: ThreadedProducer<DeliveryContext> =
        kafka::producer_config(settings, &client_id, &txn_id)
            .create_with_context(DeliveryContext::default())
            .context("cannot create the producer from [kafka.producer]")?;
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
    );
    kafka::consumer_config(settings, &client_id, &txn_id)
        .create_with_context(context)
        .context("cannot create the consumer from [kafka.consumer]")
}

/// Initialises the producer, subscribes, and runs the loop.
fn drive(consumer: &BaseConsumer<WorkerContext>, spec: WorkerSpec) -> anyhow::Result<()> {
    let WorkerSpec {
        index,
        settings,
        metrics,
        health,
        shutdown,
    } = spec;
    let txn_id = settings.worker_transactional_id(index);
    let budget = Duration::from_millis(settings.processing.shutdown_timeout_ms);
    let give_up = || consumer.context().give_up() || shutdown.is_requested();
    tracing::info!(worker = index, transactional_id = %txn_id, guarantee = %settings.processing.guarantee, "initialising the producer");
    consumer.context().output.init(&give_up).map_err(|f| {
        anyhow!("worker {index} cannot initialise transactional id `{txn_id}`: {f}")
    })?;
    health.worker(index).set_producer_ready(true);

    let topics: Vec<&str> = settings.input.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("cannot subscribe to {topics:?}"))?;

    let mut loop_ = Loop {
        index,
        consumer,
        metrics,
        shutdown: shutdown.clone(),
        policy: BatchPolicy::from(&settings.processing),
        reset: ResetPolicy::from_property(
            settings
                .kafka
                .consumer
                .get("auto.offset.reset")
                .map(String::as_str),
        ),
        chain: Chain::default(),
        batch: Batch::default(),
        outputs: Vec::new(),
        budget,
        aborts_in_a_row: 0,
        last_abort_cause: String::new(),
        abort_every: injected_abort_every(),
        transactions: 0,
        lineage: settings.output.lineage,
    };
    let result = loop_.run();
    health.worker(index).set_producer_ready(false);
    if result.is_err() {
        health.set_failed();
    }
    result
}

struct Loop<'a> {
    index: usize,
    consumer: &'a BaseConsumer<WorkerContext>,
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
    lineage: bool,
}

impl Loop<'_> {
    fn ctx(&self) -> &WorkerContext {
        self.consumer.context()
    }

    fn run(&mut self) -> anyhow::Result<()> {
        while !self.shutdown.is_requested() {
            let timeout = self
                .batch
                .time_left(&self.policy, Instant::now(), IDLE_POLL);
            let polled = self.consumer.poll(timeout);
            if let Some(cause) = self.ctx().take_fatal() {
                return Err(anyhow!("worker {}: {cause}", self.index));
            }
            if self.ctx().take_rewind_needed() {
                // The transaction was ended by a rebalance; anything polled
                // alongside may come from a position past the aborted
                // records, so it is dropped and fetched again.
                drop(polled);
                self.batch.reset();
                self.rewind()?;
                continue;
            }
            match polled {
                None => {}
                Some(Ok(msg)) => self.process(&msg)?,
                Some(Err(e)) => {
                    // Consumer errors (broker down, topic gone) are reported
                    // here; librdkafka keeps retrying underneath.
                    tracing::warn!(worker = self.index, error = %e, "consumer error");
                }
            }
            if self.batch.is_due(&self.policy, Instant::now()) {
                self.commit()?;
            }
        }
        self.finish()
    }

    /// Processes one input record inside the open transaction.
    fn process(&mut self, msg: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        self.metrics.record_consumed();
        if !self.batch.is_open() {
            if let Err(f) = self.ctx().output.begin() {
                return self.on_failure(f);
            }
            self.ctx().set_txn_open(true);
            self.batch.open(Instant::now());
        }
        let record = to_record(msg);
        let bytes = record.payload_len();
        self.outputs.clear();
        if let Err(e) = self.chain.apply(record, &mut self.outputs) {
            // Deterministic: a replay fails the same way, so stop rather than
            // loop. The offset of this record is not committed.
            let cause = format!(
                "record {}[{}]@{}: {e}",
                msg.topic(),
                msg.partition(),
                msg.offset()
            );
            let _ = self.abort(&cause);
            return Err(anyhow!("worker {}: {cause}", self.index));
        }
        if self.lineage {
            for (i, out) in self.outputs.iter_mut().enumerate() {
                lineage::stamp(out, msg.topic(), msg.partition(), msg.offset(), i as u32);
            }
        }
        for out in &self.outputs {
            if let Err(f) = self.ctx().output.send(out) {
                return self.on_failure(f);
            }
        }
        self.batch
            .add(msg.topic(), msg.partition(), bytes, self.outputs.len());
        Ok(())
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
        let offsets = match positions_to_commit(self.consumer, self.batch.partitions()) {
            Ok(o) => o,
            Err(e) => {
                return self.on_failure(TxnFailure::Abortable(format!("reading positions: {e}")))
            }
        };
        let give_up = || self.ctx().give_up();
        match self.ctx().output.commit(self.consumer, &offsets, &give_up) {
            Ok(()) => {
                self.ctx().set_txn_open(false);
                let took = self
                    .batch
                    .started()
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                self.metrics
                    .transaction_committed(self.batch.outputs(), took);
                tracing::debug!(
                    worker = self.index,
                    records = self.batch.records(),
                    outputs = self.batch.outputs(),
                    ?took,
                    "transaction committed"
                );
                self.batch.reset();
                self.aborts_in_a_row = 0;
                Ok(())
            }
            Err(f) => self.on_failure(f),
        }
    }

    /// Abortable failures abort and rewind; fatal ones end the worker.
    fn on_failure(&mut self, failure: TxnFailure) -> anyhow::Result<()> {
        match failure {
            TxnFailure::Fatal(m) => Err(anyhow!("worker {}: fatal Kafka error: {m}", self.index)),
            TxnFailure::Abortable(cause) => {
                self.abort(&cause)?;
                self.aborts_in_a_row += 1;
                self.last_abort_cause = cause;
                if self.aborts_in_a_row >= MAX_CONSECUTIVE_ABORTS && self.abort_every.is_none() {
                    return Err(anyhow!(
                        "worker {}: {} transactions in a row aborted on replay of the same input; last cause: {}",
                        self.index,
                        self.aborts_in_a_row,
                        self.last_abort_cause
                    ));
                }
                self.rewind()
            }
        }
    }

    fn abort(&mut self, cause: &str) -> anyhow::Result<()> {
        tracing::warn!(worker = self.index, cause, "aborting the transaction");
        let give_up = || self.ctx().give_up();
        let result = self.ctx().output.abort(&give_up);
        self.ctx().set_txn_open(false);
        self.batch.reset();
        self.metrics.transaction_aborted();
        result.map_err(|f| anyhow!("worker {}: abort failed: {f}", self.index))
    }

    fn rewind(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            match rewind(self.consumer, self.reset, REWIND_TIMEOUT) {
                Ok(n) => {
                    self.metrics.rewound();
                    tracing::info!(
                        worker = self.index,
                        partitions = n,
                        "rewound to committed offsets"
                    );
                    return Ok(());
                }
                Err(e)
                    if started.elapsed() < Duration::from_secs(60)
                        && !self.shutdown.is_requested() =>
                {
                    tracing::warn!(worker = self.index, error = %e, "rewind failed; retrying");
                }
                Err(e) => {
                    return Err(anyhow!(
                        "worker {}: cannot rewind to committed offsets: {e}",
                        self.index
                    ))
                }
            }
        }
    }

    /// Graceful stop: commit what is open, within the stop budget.
    fn finish(&mut self) -> anyhow::Result<()> {
        if self.batch.is_open() {
            tracing::info!(
                worker = self.index,
                records = self.batch.records(),
                "stopping: committing the open transaction"
            );
            if let Err(e) = self.commit() {
                tracing::warn!(worker = self.index, error = %e, "could not commit on stop; the transaction was aborted");
            }
        }
        tracing::info!(
            worker = self.index,
            left = ?self.shutdown.budget_left(self.budget),
            "worker stopped"
        );
        Ok(())
    }
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
