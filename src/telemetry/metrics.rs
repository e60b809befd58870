//! Prometheus metrics, updated through methods named after what happened,
//! so the engine never handles metric names or labels.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All metrics of one process; cheap to clone (each field is a shared handle).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    records_consumed: IntCounter,
    records_produced: IntCounter,
    transactions: IntCounterVec,
    transaction_duration: Histogram,
    commit_duration: Histogram,
    rebalances: IntCounterVec,
    assigned_partitions: IntGauge,
    consumer_lag: IntGaugeVec,
    rewinds: IntCounter,
    redelivered: IntCounter,
    transform_errors: IntCounterVec,
    dead_letters: IntCounter,
    filtered: IntCounter,
    skipped: IntCounter,
    output_records: IntCounterVec,
    recoveries: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let records_consumed = IntCounter::new(
            "exactly_records_consumed_total",
            "Input records read from Kafka (replays after an abort count again)",
        )
        .expect("valid metric");
        let records_produced = IntCounter::new(
            "exactly_records_produced_total",
            "Output records whose transaction committed (exactly_once) or whose delivery was acknowledged (at_least_once)",
        )
        .expect("valid metric");
        let transactions = IntCounterVec::new(
            Opts::new(
                "exactly_transactions_total",
                "Transactions (batches in at_least_once mode) by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let transaction_duration = Histogram::with_opts(
            HistogramOpts::new(
                "exactly_transaction_duration_seconds",
                "Time from the first record of a transaction to its commit",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        let commit_duration = Histogram::with_opts(
            HistogramOpts::new(
                "exactly_commit_duration_seconds",
                "Time the commit itself takes: offsets into the transaction and commit_transaction (flush and offset commit in at_least_once)",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .expect("valid metric");
        let rebalances = IntCounterVec::new(
            Opts::new(
                "exactly_rebalances_total",
                "Consumer group rebalance events seen by the workers",
            ),
            &["event"],
        )
        .expect("valid metric");
        let assigned_partitions = IntGauge::new(
            "exactly_assigned_partitions",
            "Input partitions currently assigned to this process",
        )
        .expect("valid metric");
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "exactly_consumer_lag",
                "Records between this process's position and the last stable offset, per assigned input partition",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let rewinds = IntCounter::new(
            "exactly_rewinds_total",
            "Times the assigned partitions were rewound to their committed offsets after an abort",
        )
        .expect("valid metric");
        let redelivered = IntCounter::new(
            "exactly_redelivered_records_total",
            "Records the consumer handed over a second time without a rewind (a librdkafka pause racing a poll during a rebalance); dropped, not processed twice",
        )
        .expect("valid metric");
        let transform_errors = IntCounterVec::new(
            Opts::new(
                "exactly_transform_errors_total",
                "Input records the chain could not decode, transform or produce, by step and kind",
            ),
            &["step", "kind"],
        )
        .expect("valid metric");
        let dead_letters = IntCounter::new(
            "exactly_dead_letter_records_total",
            "Records written to the dead-letter topic",
        )
        .expect("valid metric");
        let filtered = IntCounter::new(
            "exactly_records_filtered_total",
            "Input records for which the chain produced no output",
        )
        .expect("valid metric");
        let skipped = IntCounter::new(
            "exactly_records_skipped_total",
            "Failed input records skipped by the `skip` policy",
        )
        .expect("valid metric");
        let output_records = IntCounterVec::new(
            Opts::new(
                "exactly_output_records_total",
                "Committed output records per topic (dead-letter topic included)",
            ),
            &["topic"],
        )
        .expect("valid metric");
        let recoveries = IntCounterVec::new(
            Opts::new(
                "exactly_worker_recoveries_total",
                "Workers that replaced their producer and consumer in-process after fencing themselves (a transaction outlived its timeout, a session expired during a broker outage), by cause",
            ),
            &["cause"],
        )
        .expect("valid metric");
        let collectors: [Box<dyn prometheus::core::Collector>; 16] = [
            Box::new(redelivered.clone()),
            Box::new(recoveries.clone()),
            Box::new(transform_errors.clone()),
            Box::new(dead_letters.clone()),
            Box::new(filtered.clone()),
            Box::new(skipped.clone()),
            Box::new(output_records.clone()),
            Box::new(records_consumed.clone()),
            Box::new(records_produced.clone()),
            Box::new(rewinds.clone()),
            Box::new(transactions.clone()),
            Box::new(transaction_duration.clone()),
            Box::new(commit_duration.clone()),
            Box::new(rebalances.clone()),
            Box::new(assigned_partitions.clone()),
            Box::new(consumer_lag.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("unique metric");
        }
        // Show both outcomes from the start, so a dashboard has a series to
        // plot before the first abort.
        transactions.with_label_values(&["committed"]);
        transactions.with_label_values(&["aborted"]);
        Metrics {
            registry,
            records_consumed,
            records_produced,
            transactions,
            transaction_duration,
            commit_duration,
            rebalances,
            assigned_partitions,
            consumer_lag,
            rewinds,
            redelivered,
            transform_errors,
            dead_letters,
            filtered,
            skipped,
            output_records,
            recoveries,
        }
    }

    /// A worker recovered in-process from a fence of its own making.
    pub fn worker_recovered(&self, cause: &str) {
        self.recoveries.with_label_values(&[cause]).inc();
    }

    /// A transaction committed with these failed and dropped records.
    pub fn tally(&self, t: &crate::engine::batch::Tally) {
        self.filtered.inc_by(t.filtered);
        self.skipped.inc_by(t.skipped);
        self.dead_letters.inc_by(t.dead_lettered);
        for (step, kind, n) in &t.errors {
            self.transform_errors
                .with_label_values(&[step.as_str(), kind])
                .inc_by(*n);
        }
    }

    /// A record failed in `step` with an error of class `kind`.
    pub fn transform_error(&self, step: &str, kind: &str) {
        self.transform_errors.with_label_values(&[step, kind]).inc();
    }

    /// A transaction committed `n` outputs to `topic`.
    pub fn output_records(&self, topic: &str, n: u64) {
        self.output_records.with_label_values(&[topic]).inc_by(n);
    }

    /// One input record was read.
    pub fn record_consumed(&self) {
        self.records_consumed.inc();
    }

    /// A transaction committed with `records` outputs after `took`.
    pub fn transaction_committed(&self, records: u64, took: Duration, commit: Duration) {
        self.records_produced.inc_by(records);
        self.transactions.with_label_values(&["committed"]).inc();
        self.transaction_duration.observe(took.as_secs_f64());
        self.commit_duration.observe(commit.as_secs_f64());
    }

    /// A transaction was aborted; its outputs are invisible to read_committed readers.
    pub fn transaction_aborted(&self) {
        self.transactions.with_label_values(&["aborted"]).inc();
    }

    /// Assigned partitions went back to their committed offsets.
    pub fn rewound(&self) {
        self.rewinds.inc();
    }

    /// A record handed over a second time was dropped.
    pub fn redelivered(&self) {
        self.redelivered.inc();
    }

    /// A rebalance event (`assigned`, `revoked`, `lost`, `error`) changed the
    /// assignment by `partitions_delta`.
    pub fn rebalance(&self, event: &str, partitions_delta: i64) {
        self.rebalances.with_label_values(&[event]).inc();
        self.assigned_partitions.add(partitions_delta);
    }

    /// librdkafka's statistics reported the lag of one partition.
    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// A partition left this process; its lag is no longer ours to report.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let _ = self
            .consumer_lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_names_every_required_metric() {
        let m = Metrics::new();
        m.record_consumed();
        m.transaction_committed(3, Duration::from_millis(20), Duration::from_millis(4));
        m.transaction_aborted();
        m.rebalance("assigned", 2);
        m.consumer_lag("orders", 1, 7);
        let text = m.render();
        for name in [
            "exactly_records_consumed_total 1",
            "exactly_records_produced_total 3",
            "exactly_transactions_total{outcome=\"committed\"} 1",
            "exactly_transactions_total{outcome=\"aborted\"} 1",
            "exactly_transaction_duration_seconds_count 1",
            "exactly_commit_duration_seconds_count 1",
            "exactly_rebalances_total{event=\"assigned\"} 1",
            "exactly_assigned_partitions 2",
            "exactly_consumer_lag{partition=\"1\",topic=\"orders\"} 7",
        ] {
            assert!(text.contains(name), "missing `{name}` in:\n{text}");
        }
    }

    #[test]
    fn a_forgotten_partition_has_no_lag_series() {
        let m = Metrics::new();
        m.consumer_lag("orders", 1, 7);
        m.forget_partition("orders", 1);
        assert!(!m.render().contains("exactly_consumer_lag{"));
    }
}
