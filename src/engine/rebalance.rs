//! Rebalance handling. librdkafka runs these callbacks inside `poll`, on the
//! worker's own thread, before the new assignment is used — so an open
//! transaction is aborted right here, while the partitions are still ours.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics};

use super::transaction::{Output, TxnFailure};
use crate::config::Guarantee;
use crate::shutdown::Shutdown;
use crate::telemetry::{Health, Metrics};

/// The consumer's context: owns the worker's [`Output`] so that a revoke can
/// end the open transaction before the partitions move.
pub struct WorkerContext {
    /// The worker's producer and transaction protocol.
    pub output: Output,
    index: usize,
    metrics: Metrics,
    health: Health,
    shutdown: Shutdown,
    shutdown_budget: std::time::Duration,
    /// A transaction (or at_least_once batch) is open.
    txn_open: AtomicBool,
    /// A callback ended the open transaction: the worker must forget its
    /// batch and rewind before using the next record.
    rewind_needed: AtomicBool,
    /// A callback hit an error that ends the worker.
    fatal: Mutex<Option<String>>,
}

impl WorkerContext {
    /// A context for worker `index`.
    pub fn new(
        output: Output,
        index: usize,
        metrics: Metrics,
        health: Health,
        shutdown: Shutdown,
        shutdown_budget: std::time::Duration,
    ) -> Self {
        WorkerContext {
            output,
            index,
            metrics,
            health,
            shutdown,
            shutdown_budget,
            txn_open: AtomicBool::new(false),
            rewind_needed: AtomicBool::new(false),
            fatal: Mutex::new(None),
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
    pub fn take_fatal(&self) -> Option<String> {
        self.fatal.lock().expect("fatal lock").take()
    }

    /// Whether librdkafka calls should stop retrying: a stop was requested
    /// and its time budget is spent.
    pub fn give_up(&self) -> bool {
        self.shutdown.budget_spent(self.shutdown_budget)
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
        let give_up = || self.give_up();
        let result = match self.output.guarantee() {
            Guarantee::ExactlyOnce => self.output.abort(&give_up),
            // at_least_once: what was produced is delivered first, then its
            // positions are committed, unless the partitions were lost.
            Guarantee::AtLeastOnce if !lost => consumer
                .position()
                .map_err(|e| TxnFailure::Abortable(e.to_string()))
                .and_then(|positions| {
                    let mut valid = rdkafka::TopicPartitionList::new();
                    for e in positions.elements() {
                        if let rdkafka::Offset::Offset(_) = e.offset() {
                            let _ =
                                valid.add_partition_offset(e.topic(), e.partition(), e.offset());
                        }
                    }
                    self.output.commit(consumer, &valid, &give_up)
                }),
            Guarantee::AtLeastOnce => self.output.abort(&give_up),
        };
        match result {
            Ok(()) => {
                if self.output.guarantee() == Guarantee::ExactlyOnce || lost {
                    self.metrics.transaction_aborted();
                    tracing::info!(
                        worker = self.index,
                        "aborted the open transaction before the partitions moved"
                    );
                }
            }
            Err(TxnFailure::Abortable(m)) => {
                self.metrics.transaction_aborted();
                tracing::warn!(worker = self.index, error = %m, "could not commit the open batch before the partitions moved");
                let _ = self.output.abort(&give_up);
            }
            Err(TxnFailure::Fatal(m)) => {
                *self.fatal.lock().expect("fatal lock") = Some(m);
            }
        }
        self.rewind_needed.store(true, Ordering::Release);
    }
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        // librdkafka's own `consumer_lag` counts from the offset the
        // *consumer* committed; ours commit through the producer's
        // transaction, so it would never shrink. Lag here is the last stable
        // offset minus this worker's position (as Java's `records-lag`), or
        // minus the committed offset before anything was consumed.
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                let from = if p.app_offset >= 0 {
                    p.app_offset
                } else {
                    p.committed_offset
                };
                if *partition >= 0 && p.ls_offset >= 0 && from >= 0 {
                    self.metrics
                        .consumer_lag(topic, *partition, (p.ls_offset - from).max(0));
                }
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                let event = if lost { "lost" } else { "revoked" };
                tracing::info!(
                    worker = self.index,
                    partitions = tpl.count(),
                    event,
                    "partitions leaving this worker"
                );
                self.end_open_transaction(consumer, lost);
                self.metrics.rebalance(event, -(tpl.count() as i64));
                for e in tpl.elements() {
                    self.metrics.forget_partition(e.topic(), e.partition());
                }
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(
                    worker = self.index,
                    partitions = tpl.count(),
                    "partitions assigned"
                );
                self.metrics.rebalance("assigned", tpl.count() as i64);
            }
            Rebalance::Error(e) => {
                tracing::warn!(worker = self.index, error = %e, "rebalance error");
                self.metrics.rebalance("error", 0);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.health.worker(self.index).set_assigned(assigned);
    }
}
