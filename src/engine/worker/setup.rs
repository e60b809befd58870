//! A worker's clients: the transactional producer inside the consumer's
//! context, `init_transactions`, and the subscription.

use std::time::Duration;

use anyhow::{anyhow, Context};
use rdkafka::consumer::Consumer;
use rdkafka::producer::ThreadedProducer;

use super::{Clients, Loop, WorkerSpec};
use crate::config::Settings;
use crate::engine::fatal::{fatal_if, FatalCause};
use crate::engine::offsets::ResetPolicy;
use crate::engine::rebalance::WorkerContext;
use crate::engine::recovery::Recoverable;
use crate::engine::transaction::{DeliveryContext, Output, TxnFailure};
use crate::kafka;

/// The worker's producer (inside the consumer's context) and consumer.
pub(super) fn build_clients(spec: &WorkerSpec) -> anyhow::Result<Clients> {
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
    Ok(std::sync::Arc::new(consumer))
}

/// `auto.offset.reset` of the consumer table, as a policy.
pub fn reset_policy(settings: &Settings) -> ResetPolicy {
    ResetPolicy::from_property(
        settings
            .kafka
            .resolved
            .for_consumer()
            .get("auto.offset.reset")
            .map(String::as_str),
    )
}

impl Loop {
    /// Initialises the producer (fencing any earlier instance with the same
    /// transactional id and aborting its open transaction) and subscribes.
    pub(super) fn start(&mut self) -> anyhow::Result<()> {
        let index = self.index;
        let settings = &self.spec.settings;
        let txn_id = &self.txn_id;
        // A stop requested during start-up ends the initialisation at once.
        let shutdown = self.shutdown.clone();
        let left = || shutdown.is_requested().then_some(Duration::ZERO);
        tracing::info!(transactional_id = %txn_id, guarantee = %settings.processing.guarantee, "initialising the producer");
        if let Err(f) = self.consumer.context().output.init(&left) {
            if self.shutdown.is_requested() {
                // Stopped before it started: nothing was consumed, nothing
                // is left to commit.
                tracing::info!("stop requested during start-up");
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
}
