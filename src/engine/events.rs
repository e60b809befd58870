//! What the transaction loop reports: each event is one method that writes
//! its log line and counts its metric together, so the loop says what
//! happened once and the two never drift apart. The worker's index is on
//! the `worker` tracing span its thread runs in (see `supervisor`), not on
//! each line.

use std::fmt::Display;
use std::time::Duration;

use rdkafka::error::KafkaError;

use super::batch::{Batch, CloseReason};
use super::recovery::Recoverable;
use crate::telemetry::{Committed, Metrics};

/// The loop's reporting, for one worker.
pub struct Events {
    metrics: Metrics,
    index: usize,
}

impl Events {
    /// Events of worker `index`, counted in `metrics`.
    pub fn new(metrics: Metrics, index: usize) -> Events {
        Events { metrics, index }
    }

    /// The worker thread started.
    pub fn started(&self) {
        self.metrics.worker_started(self.index);
    }

    /// The consumer reported an error librdkafka retries by itself.
    pub fn consumer_error(&self, e: &KafkaError) {
        tracing::warn!(error = %e, "consumer error");
    }

    /// One input record was read.
    pub fn consumed(&self) {
        self.metrics.record_consumed();
    }

    /// The first record of a partition in the open transaction: the oldest
    /// input of the partition not yet committed.
    pub fn input_read(&self, topic: &str, partition: i32, offset: i64, at: Option<i64>) {
        self.metrics.input_read(topic, partition, offset, at);
    }

    /// A record the consumer handed over a second time was dropped.
    pub fn redelivered(&self, topic: &str, partition: i32, offset: i64) {
        self.metrics.redelivered();
        tracing::debug!(
            topic,
            partition,
            offset,
            "dropped a record the consumer handed over a second time"
        );
    }

    /// A quarantined input was read again.
    pub fn suspect_read(&self, topic: &str, partition: i32, offset: i64, confirmed: bool) {
        tracing::info!(
            topic,
            partition,
            offset,
            confirmed,
            "quarantined input read again"
        );
    }

    /// An output of `input` failed for good: the input is quarantined.
    pub fn quarantining(&self, input: &(String, i32, i64), error: &str) {
        tracing::warn!(
            ?input,
            error,
            "quarantining the input: its output failed for good"
        );
    }

    /// A record failed and the policy stops the worker.
    pub fn transform_error(&self, step: &str, kind: &str) {
        self.metrics.transform_error(step, kind);
    }

    /// A failed record is skipped.
    pub fn skipping(&self, cause: &str) {
        tracing::warn!(cause, "skipping the record");
    }

    /// A failed record goes to the dead-letter topic.
    pub fn dead_lettering(&self, cause: &str, topic: &str) {
        tracing::warn!(cause, topic, "sending the record to the dead-letter topic");
    }

    /// The loop closes the open transaction for `reason`.
    pub fn closing(&self, reason: CloseReason) {
        self.metrics.transaction_closing(reason.label());
    }

    /// `batch` committed; the commit call took `commit_took`.
    pub fn committed(&self, batch: &Batch, commit_took: Duration) {
        let took = batch.started().map(|t| t.elapsed()).unwrap_or_default();
        self.metrics.transaction_committed(&Committed {
            worker: self.index,
            input_records: batch.records(),
            input_bytes: batch.bytes(),
            outputs: batch.outputs(),
            took,
            commit_took,
        });
        for (topic, n) in batch.per_topic() {
            self.metrics.output_records(topic, *n);
        }
        self.metrics.tally(&batch.tally);
        tracing::debug!(
            records = batch.records(),
            outputs = batch.outputs(),
            ?took,
            ?commit_took,
            "transaction committed"
        );
    }

    /// The open transaction is being aborted.
    pub fn aborting(&self, cause: &str) {
        tracing::warn!(cause, "aborting the transaction");
        self.metrics.transaction_aborted();
    }

    /// The assigned partitions went back to their committed offsets.
    pub fn rewound(&self, partitions: usize) {
        self.metrics.rewound();
        tracing::info!(partitions, "rewound to committed offsets");
    }

    /// A rewind failed and is tried again.
    pub fn rewind_failed(&self, error: &dyn Display) {
        tracing::warn!(error = %error, "rewind failed; retrying");
    }

    /// A rebalance interrupted the final commit: clean, the records go to
    /// the partitions' next owner.
    pub fn final_commit_interrupted(&self, cause: &str) {
        tracing::info!(
            cause,
            "stopping: a rebalance interrupted the final commit; its records go to the partitions' next owner"
        );
    }

    /// Stopping with `records` in the open transaction: it commits first.
    pub fn stopping_with_open(&self, records: usize) {
        tracing::info!(records, "stopping: committing the open transaction");
    }

    /// The worker stopped with `left` of the stop budget.
    pub fn stopped(&self, left: Duration) {
        tracing::info!(?left, "worker stopped");
    }

    /// The worker replaces its clients after `cause`.
    pub fn recovering(&self, cause: &Recoverable) {
        tracing::warn!(
            cause = %cause.message,
            "recovering in-process: a new producer and consumer under the same ids (no other instance holds them)"
        );
        self.metrics.worker_recovered(cause.kind);
    }

    /// New clients still cannot initialise; the recovery goes on.
    pub fn still_cannot_init(&self, error: &str) {
        tracing::warn!(error, "still cannot initialise; retrying");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{batch::CloseReason, fatal::FatalCause, recovery, start_metrics_at_zero};
    use crate::telemetry::Metrics;

    #[test]
    fn every_close_reason_fatal_and_recovery_cause_starts_at_zero() {
        let metrics = Metrics::new();
        start_metrics_at_zero(&metrics);
        let text = metrics.render();
        let mut series: Vec<String> = CloseReason::ALL
            .iter()
            .map(|r| {
                format!(
                    "exactly_transaction_closes_total{{reason=\"{}\"}} 0",
                    r.label()
                )
            })
            .collect();
        for cause in FatalCause::ALL {
            series.push(format!(
                "exactly_fatal_errors_total{{cause=\"{}\"}} 0",
                cause.label()
            ));
        }
        for cause in recovery::CAUSES {
            series.push(format!(
                "exactly_worker_recoveries_total{{cause=\"{cause}\"}} 0"
            ));
        }
        for s in series {
            assert!(text.contains(&s), "missing `{s}`");
        }
    }
}
