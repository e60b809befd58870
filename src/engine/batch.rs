//! When a transaction closes: after `max_batch_records` input records,
//! `max_batch_bytes` of input, at its deadline, or — under exactly-once —
//! as soon as nothing more is ready to consume, whichever comes first.
//!
//! Closing when the consumer has nothing more in hand is what keeps latency
//! low at light load: a record no longer waits for a clock, only for the
//! commit in progress (commits are synchronous, so the previous one has
//! returned by then). `min_commit_interval_ms` bounds how often that early
//! close may happen, counted between commit starts, to cap the brokers'
//! load, and so does [`COMMIT_SPACING`] × the last commit's duration, so
//! that a coordinator that slows down sees fewer early closes; set the
//! minimum to `commit_interval_ms` for a fixed cadence.
//!
//! The deadline keeps a cadence: it is `commit_interval_ms` after the
//! previous commit *started* (or after the transaction opened, for the
//! first one). A record that arrives while a commit runs therefore waits at
//! most one interval for the next commit to start, not an interval plus the
//! commit's own duration. As in Kafka Streams, a transaction that opens more
//! than an interval after the last commit (after an idle spell) is due at
//! once.

use std::time::{Duration, Instant};

use crate::config::{Guarantee, ProcessingSettings};
use crate::telemetry::Tally;

/// The limits of one transaction.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Input records per transaction.
    pub max_records: usize,
    /// Input bytes (key + value) per transaction.
    pub max_bytes: usize,
    /// Time from one commit's start to the next one's.
    pub interval: Duration,
    /// The least time from one commit's start to the next one's when the
    /// transaction closes early because nothing more is ready; equal to
    /// `interval` for a fixed cadence.
    pub min_interval: Duration,
}

impl From<&ProcessingSettings> for BatchPolicy {
    fn from(p: &ProcessingSettings) -> Self {
        BatchPolicy {
            max_records: p.max_batch_records,
            max_bytes: p.max_batch_bytes,
            interval: Duration::from_millis(p.commit_interval_ms),
            // Under at-least-once, outputs are visible before the commit: an
            // early commit would cost throughput and gain no latency.
            min_interval: Duration::from_millis(match p.guarantee {
                Guarantee::ExactlyOnce => p.effective_min_commit_interval_ms(),
                Guarantee::AtLeastOnce => p.commit_interval_ms,
            }),
        }
    }
}

/// An early close (nothing more ready) comes no sooner than this many times
/// the last commit's duration after that commit started: at most a third
/// of a worker's time goes to commits it did not have to make, and a
/// coordinator that slows down sees fewer of them.
pub const COMMIT_SPACING: u32 = 3;

/// Why a transaction closed: the label of `exactly_transaction_closes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// It held `max_batch_records` input records.
    Records,
    /// It held `max_batch_bytes` of input.
    Bytes,
    /// `commit_interval_ms` passed since the previous commit started.
    Interval,
    /// Nothing more was ready to consume, `min_commit_interval_ms` after the
    /// previous commit started.
    Drained,
}

impl CloseReason {
    pub const ALL: [CloseReason; 4] = [
        CloseReason::Records,
        CloseReason::Bytes,
        CloseReason::Interval,
        CloseReason::Drained,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Records => "max_records",
            CloseReason::Bytes => "max_bytes",
            CloseReason::Interval => "interval",
            CloseReason::Drained => "drained",
        }
    }
}

/// The open transaction's bookkeeping: its age, size, outputs, and the input
/// partitions it consumed from (whose positions it will commit).
#[derive(Debug, Default)]
pub struct Batch {
    /// Failed and dropped records of the open transaction.
    pub tally: Tally,
    started: Option<Instant>,
    /// From when the transaction may close because nothing more is ready.
    early: Option<Instant>,
    due: Option<Instant>,
    /// When the last commit started; kept across `reset`.
    last_commit: Option<Instant>,
    /// How long the last successful commit took; kept across `reset`.
    last_commit_took: Duration,
    records: usize,
    bytes: usize,
    outputs: u64,
    partitions: Vec<(String, i32)>,
    per_topic: Vec<(String, u64)>,
}

impl Batch {
    /// Whether a transaction is open.
    pub fn is_open(&self) -> bool {
        self.started.is_some()
    }

    /// Opens a transaction at `now`.
    pub fn open(&mut self, now: Instant, policy: &BatchPolicy) {
        debug_assert!(!self.is_open());
        self.started = Some(now);
        let cadence = self.last_commit.unwrap_or(now);
        // A slow commit means a busy coordinator: early closes space out by
        // themselves, committing at most 1 / COMMIT_SPACING of the time.
        let least = policy
            .min_interval
            .max(self.last_commit_took * COMMIT_SPACING);
        self.early = Some(cadence + least.min(policy.interval));
        self.due = Some(cadence + policy.interval);
    }

    /// A commit of the open transaction starts at `now`: the next
    /// transaction's deadline counts from here.
    pub fn commit_started(&mut self, now: Instant) {
        self.last_commit = Some(now);
    }

    /// The commit that started last succeeded after `took`.
    pub fn commit_finished(&mut self, took: Duration) {
        self.last_commit_took = took;
    }

    /// When the open transaction began.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Counts one input record of `bytes` from `topic`/`partition` that
    /// produced `outputs` records.
    pub fn add(&mut self, topic: &str, partition: i32, bytes: usize, outputs: usize) {
        self.records += 1;
        self.bytes += bytes;
        self.outputs += outputs as u64;
        if !self.has_partition(topic, partition) {
            self.partitions.push((topic.to_owned(), partition));
        }
    }

    /// One output to `topic` is in the open transaction.
    pub fn count_output(&mut self, topic: &str) {
        match self.per_topic.iter_mut().find(|(t, _)| t == topic) {
            Some((_, n)) => *n += 1,
            None => self.per_topic.push((topic.to_owned(), 1)),
        }
    }

    /// Outputs of the open transaction per topic.
    pub fn per_topic(&self) -> &[(String, u64)] {
        &self.per_topic
    }

    /// Input records in the open transaction.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Input bytes (key + value) in the open transaction.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the open transaction has consumed from `topic`/`partition`.
    pub fn has_partition(&self, topic: &str, partition: i32) -> bool {
        self.partitions
            .iter()
            .any(|(t, p)| *p == partition && t == topic)
    }

    /// Output records in the open transaction.
    pub fn outputs(&self) -> u64 {
        self.outputs
    }

    /// Input partitions the open transaction consumed from.
    pub fn partitions(&self) -> &[(String, i32)] {
        &self.partitions
    }

    /// Whether the open transaction must commit now, whatever is ready.
    pub fn is_due(&self, policy: &BatchPolicy, now: Instant) -> bool {
        self.close_reason(policy, now, false).is_some()
    }

    /// Whether the open transaction may close now that nothing more is
    /// ready to consume.
    pub fn may_close_early(&self, now: Instant) -> bool {
        self.early.is_some_and(|early| now >= early)
    }

    /// Why the open transaction must close now, if it must; `drained` says
    /// that the last poll found nothing ready to consume.
    pub fn close_reason(
        &self,
        policy: &BatchPolicy,
        now: Instant,
        drained: bool,
    ) -> Option<CloseReason> {
        self.due?;
        if self.records >= policy.max_records {
            Some(CloseReason::Records)
        } else if self.bytes >= policy.max_bytes {
            Some(CloseReason::Bytes)
        } else if self.due.is_some_and(|due| now >= due) {
            Some(CloseReason::Interval)
        } else if drained && self.may_close_early(now) {
            Some(CloseReason::Drained)
        } else {
            None
        }
    }

    /// How long to wait for the next record: until the open transaction
    /// may close early (zero once it may: a poll that finds nothing ready
    /// closes it), or `idle` when none is open.
    pub fn time_left(&self, now: Instant, idle: Duration) -> Duration {
        match self.early {
            None => idle,
            Some(early) => early.saturating_duration_since(now).min(idle),
        }
    }

    /// Forgets the transaction (after a commit or an abort).
    pub fn reset(&mut self) {
        self.started = None;
        self.early = None;
        self.due = None;
        self.records = 0;
        self.bytes = 0;
        self.outputs = 0;
        self.partitions.clear();
        self.per_topic.clear();
        self.tally = Tally::default();
    }
}

#[cfg(test)]
mod tests;
