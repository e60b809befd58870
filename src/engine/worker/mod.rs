//! One worker: a read_committed consumer and a transactional producer, driven
//! on their own OS thread (the supervisor enters a `worker` tracing span
//! around it, so no log line here names the worker by hand).
//!
//! ```text
//!   poll ──► (rebalance callback may abort + ask for a rewind)
//!     │
//!     ├─ rewind needed? ──► drop the record, seek assigned partitions to committed offsets
//!     ├─ record ──► begin if closed ──► transform ──► produce outputs
//!     └─ batch due? ──► positions ──► send_offsets_to_transaction ──► commit_transaction
//!                            any abortable failure ──► abort ──► rewind
//! ```
//!
//! - this file: what a worker is built from ([`WorkerSpec`]), what it leaves
//!   ([`Finished`]) and the loop's state ([`Loop`]);
//! - [`setup`]: the clients, `init_transactions` and the subscription;
//! - [`cycle`]: the sequence itself — poll, begin, commit, abort, rewind,
//!   final commit — one method per step;
//! - [`record`]: one input record through the chain into the transaction,
//!   and the bad-record policy's verdict carried out;
//! - [`recover`]: which failures end the worker and which are recovered
//!   from in-process with new clients;
//! - [`faults`]: test-only fault injection (cargo feature `test-faults`).

mod cycle;
mod faults;
mod record;
mod recover;
mod setup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::batch::{Batch, BatchPolicy};
use super::events::Events;
use super::offsets::ResetPolicy;
use super::quarantine::{Origins, Quarantine};
use super::rebalance::WorkerContext;
use super::recovery::Recoveries;
use super::topics::OutputTopics;
use crate::config::{FailurePolicy, Settings};
use crate::shutdown::Shutdown;
use crate::telemetry::{Health, Metrics};
use crate::transform::{Chain, Record, Registry};
use faults::Faults;
pub use setup::reset_policy;

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
    let consumer = match setup::build_clients(&spec) {
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
    worker.events.started();
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

/// An input record by its place: topic, partition, offset.
type Place = (String, i32, i64);

/// The loop's state. The transaction's own state is in two places only:
/// the [`Output`](super::transaction::Output) knows whether one is open,
/// the [`Batch`] what it holds and when it is due.
struct Loop {
    index: usize,
    consumer: Clients,
    /// What the clients are built from, again on a recovery.
    spec: WorkerSpec,
    events: Events,
    shutdown: Shutdown,
    chain: Chain,
    /// Scratch space for one record's outputs.
    outputs: Vec<Record>,
    batch: Batch,
    policy: BatchPolicy,
    reset: ResetPolicy,
    limits: Limits,
    /// The bad-record policy and its dead-letter topic.
    on_failure: FailurePolicy,
    dead_letter_topic: Option<String>,
    lineage: bool,
    /// Which routed output topics exist.
    topics: OutputTopics,
    /// Which input each output of the open transaction came from.
    origins: Origins,
    quarantine: Quarantine,
    /// The suspect input committed in a transaction of its own right now.
    isolating: Option<Place>,
    /// A polled record not yet processed while a commit runs: its
    /// partition commits its offset, not the consumer's position.
    in_hand: Option<Place>,
    /// Rewinds so far: tells a caller whether a commit it made failed.
    rewinds: u64,
    aborts_in_a_row: u32,
    last_abort_cause: String,
    /// When the open transaction began (kept until it commits or its abort
    /// succeeds): a producer fenced after the transaction timeout may have
    /// been fenced by the coordinator's own clock rather than by a rival.
    txn_began: Option<Instant>,
    /// Recent in-process recoveries, to bound them.
    recoveries: Recoveries,
    /// This worker's transactional id.
    txn_id: String,
    faults: Faults,
}

/// Limits read once from the configuration.
struct Limits {
    /// The stop budget (`processing.shutdown_timeout_ms`).
    budget: Duration,
    /// The producer's `message.max.bytes`.
    max_message_bytes: usize,
    /// The producer's `transaction.timeout.ms`.
    txn_timeout: Duration,
    /// The consumer's `session.timeout.ms`.
    session_timeout: Duration,
}

impl Limits {
    fn of(settings: &Settings) -> Limits {
        let millis = |table: &std::collections::BTreeMap<String, String>, key, default| {
            Duration::from_millis(
                table
                    .get(key)
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(default),
            )
        };
        Limits {
            budget: Duration::from_millis(settings.processing.shutdown_timeout_ms),
            max_message_bytes: settings
                .kafka
                .resolved
                .for_producer()
                .get("message.max.bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000),
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
        }
    }
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
        Ok(Loop {
            index: spec.index,
            consumer,
            events: Events::new(spec.metrics.clone(), spec.index),
            shutdown: spec.shutdown.clone(),
            chain,
            outputs: Vec::new(),
            batch: Batch::default(),
            policy: BatchPolicy::from(&settings.processing),
            reset: reset_policy(settings),
            limits: Limits::of(settings),
            on_failure: settings.dead_letter.effective_policy(),
            dead_letter_topic: settings.dead_letter.topic.clone(),
            lineage: settings.output.lineage,
            topics: OutputTopics::default(),
            origins: Origins::new(&settings.input.topics),
            quarantine: Quarantine::default(),
            isolating: None,
            in_hand: None,
            rewinds: 0,
            aborts_in_a_row: 0,
            last_abort_cause: String::new(),
            txn_began: None,
            recoveries: Recoveries::default(),
            txn_id: settings.worker_transactional_id(spec.index),
            faults: Faults::from_env()?,
            spec,
        })
    }

    fn ctx(&self) -> &WorkerContext {
        self.consumer.context()
    }

    /// An error of this worker: its text starts with `worker N:`.
    fn error(&self, message: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("worker {}: {message}", self.index)
    }
}
