//! When a transaction closes: after `max_batch_records` input records,
//! `max_batch_bytes` of input, or at its deadline — whichever comes first.
//!
//! Commits keep a cadence: a transaction's deadline is `commit_interval_ms`
//! after the previous commit *started* (or after the transaction opened, for
//! the first one). A record that arrives while a commit runs therefore waits
//! at most one interval for the next commit to start, not an interval plus
//! the commit's own duration. As in Kafka Streams, a transaction that opens
//! more than an interval after the last commit (after an idle spell) is due
//! at once.

use std::time::{Duration, Instant};

use crate::config::ProcessingSettings;

/// The three limits of one transaction.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Input records per transaction.
    pub max_records: usize,
    /// Input bytes (key + value) per transaction.
    pub max_bytes: usize,
    /// Time from one commit's start to the next one's.
    pub interval: Duration,
}

impl From<&ProcessingSettings> for BatchPolicy {
    fn from(p: &ProcessingSettings) -> Self {
        BatchPolicy {
            max_records: p.max_batch_records,
            max_bytes: p.max_batch_bytes,
            interval: Duration::from_millis(p.commit_interval_ms),
        }
    }
}

/// The open transaction's bookkeeping: its age, size, outputs, and the input
/// partitions it consumed from (whose positions it will commit).
/// What happened to failed or dropped records in the open transaction;
/// published to the metrics only when it commits, so replays after an
/// abort are not counted twice.
#[derive(Debug, Default)]
pub struct Tally {
    /// Records the chain dropped.
    pub filtered: u64,
    /// Failed records skipped by policy.
    pub skipped: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Failures by (step, kind).
    pub errors: Vec<(String, &'static str, u64)>,
}

impl Tally {
    /// Counts a failure in `step` of class `kind`.
    pub fn error(&mut self, step: &str, kind: &'static str) {
        match self
            .errors
            .iter_mut()
            .find(|(s, k, _)| s == step && *k == kind)
        {
            Some((_, _, n)) => *n += 1,
            None => self.errors.push((step.to_owned(), kind, 1)),
        }
    }
}

#[derive(Debug, Default)]
pub struct Batch {
    /// Failed and dropped records of the open transaction.
    pub tally: Tally,
    started: Option<Instant>,
    due: Option<Instant>,
    /// When the last commit started; kept across `reset`.
    last_commit: Option<Instant>,
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
        self.due = Some(self.last_commit.unwrap_or(now) + policy.interval);
    }

    /// A commit of the open transaction starts at `now`: the next
    /// transaction's deadline counts from here.
    pub fn commit_started(&mut self, now: Instant) {
        self.last_commit = Some(now);
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

    /// Whether the open transaction must commit now.
    pub fn is_due(&self, policy: &BatchPolicy, now: Instant) -> bool {
        match self.due {
            None => false,
            Some(due) => {
                self.records >= policy.max_records || self.bytes >= policy.max_bytes || now >= due
            }
        }
    }

    /// How long until the open transaction is due; `idle` when none is open.
    pub fn time_left(&self, now: Instant, idle: Duration) -> Duration {
        match self.due {
            None => idle,
            Some(due) => due.saturating_duration_since(now).min(idle),
        }
    }

    /// Forgets the transaction (after a commit or an abort).
    pub fn reset(&mut self) {
        self.started = None;
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
mod tests {
    use super::*;

    fn policy() -> BatchPolicy {
        BatchPolicy {
            max_records: 3,
            max_bytes: 100,
            interval: Duration::from_millis(100),
        }
    }

    #[test]
    fn a_closed_batch_is_never_due() {
        let b = Batch::default();
        assert!(!b.is_due(&policy(), Instant::now() + Duration::from_secs(10)));
    }

    #[test]
    fn closes_on_record_count() {
        let now = Instant::now();
        let mut b = Batch::default();
        b.open(now, &policy());
        b.add("t", 0, 1, 1);
        b.add("t", 0, 1, 1);
        assert!(!b.is_due(&policy(), now));
        b.add("t", 1, 1, 1);
        assert!(b.is_due(&policy(), now));
    }

    #[test]
    fn closes_on_bytes() {
        let now = Instant::now();
        let mut b = Batch::default();
        b.open(now, &policy());
        b.add("t", 0, 99, 1);
        assert!(!b.is_due(&policy(), now));
        b.add("t", 0, 1, 1);
        assert!(b.is_due(&policy(), now));
    }

    #[test]
    fn closes_on_age() {
        let now = Instant::now();
        let mut b = Batch::default();
        b.open(now, &policy());
        assert!(!b.is_due(&policy(), now + Duration::from_millis(99)));
        assert!(b.is_due(&policy(), now + Duration::from_millis(100)));
    }

    #[test]
    fn the_deadline_counts_from_the_last_commit_start() {
        let t0 = Instant::now();
        let mut b = Batch::default();
        b.open(t0, &policy());
        b.commit_started(t0 + Duration::from_millis(100));
        b.reset();
        // Opened 10 ms into the commit's cadence: due 90 ms later.
        let opened = t0 + Duration::from_millis(110);
        b.open(opened, &policy());
        assert!(!b.is_due(&policy(), t0 + Duration::from_millis(199)));
        assert!(b.is_due(&policy(), t0 + Duration::from_millis(200)));
    }

    #[test]
    fn after_an_idle_spell_a_transaction_is_due_at_once() {
        let t0 = Instant::now();
        let mut b = Batch::default();
        b.open(t0, &policy());
        b.commit_started(t0);
        b.reset();
        let later = t0 + Duration::from_secs(5);
        b.open(later, &policy());
        assert!(b.is_due(&policy(), later));
    }

    #[test]
    fn time_left_counts_down_from_the_interval() {
        let now = Instant::now();
        let idle = Duration::from_millis(500);
        let mut b = Batch::default();
        assert_eq!(b.time_left(now, idle), idle);
        b.open(now, &policy());
        assert_eq!(
            b.time_left(now + Duration::from_millis(30), idle),
            Duration::from_millis(70)
        );
        assert_eq!(
            b.time_left(now + Duration::from_secs(1), idle),
            Duration::ZERO
        );
    }

    #[test]
    fn partitions_are_listed_once_each() {
        let mut b = Batch::default();
        b.open(Instant::now(), &policy());
        b.add("a", 0, 1, 1);
        b.add("a", 0, 1, 2);
        b.add("a", 1, 1, 0);
        b.add("b", 0, 1, 1);
        assert_eq!(b.partitions().len(), 3);
        assert_eq!(b.outputs(), 4);
        b.reset();
        assert!(!b.is_open());
        assert!(b.partitions().is_empty());
    }
}
