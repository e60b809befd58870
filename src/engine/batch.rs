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
mod tests {
    use super::*;

    /// A fixed cadence: no early close.
    fn policy() -> BatchPolicy {
        BatchPolicy {
            max_records: 3,
            max_bytes: 100,
            interval: Duration::from_millis(100),
            min_interval: Duration::from_millis(100),
        }
    }

    fn eager(min_ms: u64) -> BatchPolicy {
        BatchPolicy {
            min_interval: Duration::from_millis(min_ms),
            ..policy()
        }
    }

    #[test]
    fn the_close_reason_names_the_first_limit_reached() {
        let now = Instant::now();
        let mut b = Batch::default();
        assert_eq!(b.close_reason(&eager(0), now, true), None);
        b.open(now, &eager(0));
        assert_eq!(b.close_reason(&eager(0), now, false), None);
        assert_eq!(
            b.close_reason(&eager(0), now, true),
            Some(CloseReason::Drained)
        );
        let later = now + Duration::from_millis(100);
        assert_eq!(
            b.close_reason(&eager(0), later, true),
            Some(CloseReason::Interval)
        );
        b.add("t", 0, 100, 1);
        assert_eq!(
            b.close_reason(&eager(0), later, true),
            Some(CloseReason::Bytes)
        );
        b.add("t", 0, 1, 1);
        b.add("t", 0, 1, 1);
        assert_eq!(
            b.close_reason(&eager(0), now, false),
            Some(CloseReason::Records)
        );
    }

    #[test]
    fn with_no_minimum_an_open_transaction_may_close_at_once() {
        let now = Instant::now();
        let mut b = Batch::default();
        assert!(!b.may_close_early(now));
        b.open(now, &eager(0));
        assert!(b.may_close_early(now));
        assert_eq!(b.time_left(now, Duration::from_secs(1)), Duration::ZERO);
        // Not due, though: a poll that finds a record goes on.
        assert!(!b.is_due(&eager(0), now));
    }

    #[test]
    fn the_minimum_counts_from_the_last_commit_start() {
        let t0 = Instant::now();
        let mut b = Batch::default();
        b.open(t0, &eager(10));
        b.commit_started(t0 + Duration::from_millis(50));
        b.reset();
        let opened = t0 + Duration::from_millis(52);
        b.open(opened, &eager(10));
        assert!(!b.may_close_early(t0 + Duration::from_millis(59)));
        assert_eq!(
            b.time_left(opened, Duration::from_secs(1)),
            Duration::from_millis(8)
        );
        assert!(b.may_close_early(t0 + Duration::from_millis(60)));
    }

    #[test]
    fn a_slow_commit_spaces_the_next_early_close() {
        let t0 = Instant::now();
        let mut b = Batch::default();
        b.open(t0, &eager(10));
        b.commit_started(t0);
        b.commit_finished(Duration::from_millis(20));
        b.reset();
        let opened = t0 + Duration::from_millis(21);
        b.open(opened, &eager(10));
        // 3 x 20 ms after the commit started, not 10 ms.
        assert!(!b.may_close_early(t0 + Duration::from_millis(59)));
        assert!(b.may_close_early(t0 + Duration::from_millis(60)));
        // Never past the interval.
        b.commit_finished(Duration::from_millis(500));
        b.reset();
        b.open(opened, &eager(10));
        assert!(b.may_close_early(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn a_fixed_cadence_closes_early_only_at_the_deadline() {
        let now = Instant::now();
        let mut b = Batch::default();
        b.open(now, &policy());
        assert!(!b.may_close_early(now + Duration::from_millis(99)));
        assert!(b.may_close_early(now + Duration::from_millis(100)));
    }

    #[test]
    fn a_minimum_above_the_interval_is_the_interval() {
        let now = Instant::now();
        let mut b = Batch::default();
        b.open(now, &eager(500));
        assert!(b.may_close_early(now + Duration::from_millis(100)));
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
