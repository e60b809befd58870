//! Prometheus metrics, updated through methods named after what happened,
//! so the engine never handles metric names or labels.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use super::input_age::InputAges;

/// Buckets of `exactly_transaction_input_records`: powers of ten up to a
/// million (`max_batch_records` is 100,000 by default).
pub const INPUT_RECORD_BUCKETS: [f64; 7] =
    [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];

/// Buckets of `exactly_transaction_input_bytes`: 1 KiB × 4^n up to 64 MiB
/// (`max_batch_bytes` is 16 MiB by default).
pub fn input_byte_buckets() -> Vec<f64> {
    (0..9).map(|n| 1024.0 * 4f64.powi(n)).collect()
}

/// What one committed transaction was made of.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The committing worker's index.
    pub worker: usize,
    /// Input records it consumed.
    pub input_records: usize,
    /// Input bytes (key + value) it consumed.
    pub input_bytes: usize,
    /// Outputs it committed.
    pub outputs: u64,
    /// From its first record to the end of its commit.
    pub took: Duration,
    /// The commit itself.
    pub commit_took: Duration,
}

/// Unix time now, in seconds.
fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix time now, in milliseconds.
fn unix_millis() -> i64 {
    (unix_seconds() * 1000.0) as i64
}

/// All metrics of one process; cheap to clone (each field is a shared handle).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    records_consumed: IntCounter,
    records_produced: IntCounter,
    transactions: IntCounterVec,
    closes: IntCounterVec,
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
    fatal_errors: IntCounterVec,
    last_commit: GaugeVec,
    input_records: Histogram,
    input_bytes: Histogram,
    consumer_lag_seconds: GaugeVec,
    /// Partitions assigned to each worker; the gauge is their sum, set under
    /// this lock so that two workers' rebalances cannot interleave.
    assigned: Arc<Mutex<BTreeMap<usize, usize>>>,
    input_ages: Arc<Mutex<InputAges>>,
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
        let fatal_errors = IntCounterVec::new(
            Opts::new(
                "exactly_fatal_errors_total",
                "Worker failures that ended the process (exit 1), by cause",
            ),
            &["cause"],
        )
        .expect("valid metric");
        let last_commit = GaugeVec::new(
            Opts::new(
                "exactly_last_commit_timestamp_seconds",
                "Unix time of the worker's last committed transaction (at_least_once: offset commit); its start time until the first",
            ),
            &["worker"],
        )
        .expect("valid metric");
        let input_records = Histogram::with_opts(
            HistogramOpts::new(
                "exactly_transaction_input_records",
                "Input records per committed transaction",
            )
            .buckets(INPUT_RECORD_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let input_bytes = Histogram::with_opts(
            HistogramOpts::new(
                "exactly_transaction_input_bytes",
                "Input bytes (key + value) per committed transaction",
            )
            .buckets(input_byte_buckets()),
        )
        .expect("valid metric");
        let consumer_lag_seconds = GaugeVec::new(
            Opts::new(
                "exactly_consumer_lag_seconds",
                "Age of the oldest input not yet committed, per assigned input partition (0 when all is committed)",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let closes = IntCounterVec::new(
            Opts::new(
                "exactly_transaction_closes_total",
                "Transactions the loop closed, by the limit that closed them: drained (nothing more ready to consume), interval, max_records, max_bytes",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let collectors: [Box<dyn prometheus::core::Collector>; 22] = [
            Box::new(closes.clone()),
            Box::new(redelivered.clone()),
            Box::new(fatal_errors.clone()),
            Box::new(last_commit.clone()),
            Box::new(input_records.clone()),
            Box::new(input_bytes.clone()),
            Box::new(consumer_lag_seconds.clone()),
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
        super::identity::register(&registry);
        // Show both outcomes from the start, so a dashboard has a series to
        // plot before the first abort.
        transactions.with_label_values(&["committed"]);
        transactions.with_label_values(&["aborted"]);
        Metrics {
            registry,
            records_consumed,
            records_produced,
            transactions,
            closes,
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
            fatal_errors,
            last_commit,
            input_records,
            input_bytes,
            consumer_lag_seconds,
            assigned: Arc::default(),
            input_ages: Arc::default(),
        }
    }

    /// Worker `worker` started: until its first commit, its last commit
    /// counts from now, so that the time since the last commit never
    /// exceeds the uptime. It holds no partitions yet.
    pub fn worker_started(&self, worker: usize) {
        self.last_commit
            .with_label_values(&[&worker.to_string()])
            .set(unix_seconds());
        self.assignment(worker, 0);
    }

    /// A worker failure ends the process, for `cause`.
    pub fn fatal_error(&self, cause: &str) {
        self.fatal_errors.with_label_values(&[cause]).inc();
    }

    /// Worker `worker` committed offsets outside a transaction (at_least_once,
    /// before its partitions moved).
    pub fn offsets_committed(&self, worker: usize) {
        self.last_commit
            .with_label_values(&[&worker.to_string()])
            .set(unix_seconds());
    }

    /// Worker `worker` holds `partitions` input partitions after a rebalance.
    pub fn assignment(&self, worker: usize, partitions: usize) {
        let mut assigned = self.assigned.lock().expect("assigned lock");
        assigned.insert(worker, partitions);
        self.assigned_partitions
            .set(assigned.values().sum::<usize>() as i64);
    }

    /// The first record of `topic`/`partition` in a transaction was read: the
    /// oldest input of the partition not yet committed.
    pub fn input_read(&self, topic: &str, partition: i32, offset: i64, timestamp_ms: Option<i64>) {
        self.input_ages.lock().expect("input ages lock").read(
            topic,
            partition,
            offset,
            timestamp_ms,
            unix_millis(),
        );
    }

    /// A transaction committed `offset` (the next to read) of a partition.
    pub fn input_committed(&self, topic: &str, partition: i32, offset: i64) {
        self.input_ages
            .lock()
            .expect("input ages lock")
            .committed(topic, partition, offset);
    }

    /// librdkafka's statistics: `records` between the committed offset and
    /// the last stable offset of a partition.
    pub fn uncommitted_records(&self, topic: &str, partition: i32, records: i64) {
        self.input_ages
            .lock()
            .expect("input ages lock")
            .uncommitted(topic, partition, records, unix_millis());
    }

    /// A worker recovered in-process from a fence of its own making.
    pub fn worker_recovered(&self, cause: &str) {
        self.recoveries.with_label_values(&[cause]).inc();
    }

    /// Creates the labelled series whose labels the engine knows, at 0:
    /// `increase()` needs the 0 before the 1, and a dashboard a series to
    /// plot before the first event (see `engine::start_metrics_at_zero`).
    pub fn start_at_zero(
        &self,
        close_reasons: &[&str],
        fatal_causes: &[&str],
        recovery_causes: &[&str],
    ) {
        for reason in close_reasons {
            self.closes.with_label_values(&[reason]);
        }
        for cause in fatal_causes {
            self.fatal_errors.with_label_values(&[cause]);
        }
        for cause in recovery_causes {
            self.recoveries.with_label_values(&[cause]);
        }
    }

    /// A transaction committed with these failed and dropped records.
    pub fn tally(&self, t: &super::Tally) {
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

    /// A transaction committed.
    pub fn transaction_committed(&self, c: &Committed) {
        self.records_produced.inc_by(c.outputs);
        self.transactions.with_label_values(&["committed"]).inc();
        self.transaction_duration.observe(c.took.as_secs_f64());
        self.commit_duration.observe(c.commit_took.as_secs_f64());
        self.input_records.observe(c.input_records as f64);
        self.input_bytes.observe(c.input_bytes as f64);
        self.last_commit
            .with_label_values(&[&c.worker.to_string()])
            .set(unix_seconds());
    }

    /// The loop closes the open transaction (its commit follows).
    pub fn transaction_closing(&self, reason: &str) {
        self.closes.with_label_values(&[reason]).inc();
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

    /// A rebalance event: `assigned`, `revoked`, `lost`, `error`.
    pub fn rebalance(&self, event: &str) {
        self.rebalances.with_label_values(&[event]).inc();
    }

    /// librdkafka's statistics reported the lag of one partition.
    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// A partition left this process; its lag is no longer ours to report.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let partition_label = partition.to_string();
        let _ = self
            .consumer_lag
            .remove_label_values(&[topic, &partition_label]);
        // Under the ages' lock: a scrape cannot bring the series back.
        let mut ages = self.input_ages.lock().expect("input ages lock");
        ages.forget(topic, partition);
        let _ = self
            .consumer_lag_seconds
            .remove_label_values(&[topic, &partition_label]);
    }

    /// The Prometheus text exposition of every metric. Input ages are
    /// computed here, at the scrape.
    pub fn render(&self) -> String {
        {
            let ages = self.input_ages.lock().expect("input ages lock");
            for (topic, partition, seconds) in ages.ages(unix_millis()) {
                self.consumer_lag_seconds
                    .with_label_values(&[topic, &partition.to_string()])
                    .set(seconds);
            }
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests;
