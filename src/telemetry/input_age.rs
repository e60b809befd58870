//! The age of the oldest input not yet committed, per input partition
//! (`exactly_consumer_lag_seconds`).
//!
//! The oldest uncommitted input of a partition is the record at its
//! committed offset: with read_committed, the first record a worker reads on
//! the partition after its last commit (control records and aborted records
//! in between are never read). Its timestamp is kept until a commit moves
//! past it. Before any such record was read, but while the last stable
//! offset is ahead of the committed offset, the age counts from when this
//! process first saw that (a lower bound). The age is computed when asked,
//! so it keeps growing while a worker is stuck.

use std::collections::HashMap;

/// What is known of one partition's uncommitted input.
#[derive(Debug, Default)]
struct Partition {
    /// Offset and timestamp (ms) of the first record read after the commit
    /// point.
    first: Option<(i64, i64)>,
    /// When records were first seen between the committed offset and the
    /// last stable offset with none of them read yet (ms).
    behind_since: Option<i64>,
    /// librdkafka's statistics have reported the partition: its series
    /// exists (the same lifetime as `exactly_consumer_lag`).
    reported: bool,
}

/// The uncommitted input of every partition this process holds.
#[derive(Debug, Default)]
pub struct InputAges {
    partitions: HashMap<(String, i32), Partition>,
}

impl InputAges {
    fn entry(&mut self, topic: &str, partition: i32) -> &mut Partition {
        let key = (topic.to_owned(), partition);
        self.partitions.entry(key).or_default()
    }

    /// A worker read the record at `offset`, stamped `timestamp_ms` (the
    /// read time `now_ms` when the record has none), as the first record of
    /// its partition in a transaction. After an abort the same record is
    /// read again: the first one stays.
    pub fn read(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        now_ms: i64,
    ) {
        let p = self.entry(topic, partition);
        if p.first.is_none() {
            let at = timestamp_ms.filter(|t| *t >= 0).unwrap_or(now_ms);
            p.first = Some((offset, at));
        }
    }

    /// A transaction committed `offset` (the next offset to read): every
    /// record before it is committed. When that passes the first record
    /// read, what is left uncommitted came later: the sight of lag from
    /// before the commit no longer bounds its age, the next statistics do.
    pub fn committed(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_owned(), partition)) {
            if p.first.is_some_and(|(o, _)| o < offset) {
                p.first = None;
                p.behind_since = None;
            }
        }
    }

    /// librdkafka's statistics: `records` between the committed offset and
    /// the last stable offset, at `now_ms`.
    pub fn uncommitted(&mut self, topic: &str, partition: i32, records: i64, now_ms: i64) {
        let p = self.entry(topic, partition);
        p.reported = true;
        if records > 0 {
            p.behind_since.get_or_insert(now_ms);
        } else {
            p.behind_since = None;
        }
    }

    /// The partition left this process.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }

    /// The age in seconds of the oldest uncommitted input of each reported
    /// partition, at `now_ms`.
    pub fn ages(&self, now_ms: i64) -> impl Iterator<Item = (&str, i32, f64)> {
        self.partitions
            .iter()
            .filter(|(_, p)| p.reported)
            .map(move |((topic, partition), p)| {
                let since = p.first.map(|(_, at)| at).or(p.behind_since);
                let age = since.map_or(0, |t| (now_ms - t).max(0));
                (topic.as_str(), *partition, age as f64 / 1000.0)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(a: &InputAges, now: i64) -> Vec<f64> {
        a.ages(now).map(|(_, _, s)| s).collect()
    }

    #[test]
    fn a_partition_appears_once_its_statistics_do() {
        let mut a = InputAges::default();
        a.read("t", 0, 5, Some(1_000), 2_000);
        assert!(age(&a, 3_000).is_empty());
        a.uncommitted("t", 0, 3, 2_500);
        assert_eq!(age(&a, 3_000), vec![2.0]);
    }

    #[test]
    fn the_age_is_that_of_the_first_record_after_the_commit_point() {
        let mut a = InputAges::default();
        a.uncommitted("t", 0, 10, 0);
        a.read("t", 0, 5, Some(1_000), 1_500);
        // Read again after an abort: the same record, the same age.
        a.read("t", 0, 5, Some(1_000), 9_000);
        assert_eq!(age(&a, 11_000), vec![10.0]);
        // A commit up to offset 9 commits record 5; the next transaction's
        // first record is the oldest now.
        a.committed("t", 0, 9);
        a.read("t", 0, 9, Some(7_000), 11_000);
        assert_eq!(age(&a, 11_000), vec![4.0]);
    }

    #[test]
    fn a_record_at_or_past_the_commit_stays_uncommitted() {
        let mut a = InputAges::default();
        a.uncommitted("t", 0, 1, 0);
        // Read while a commit of offset 9 ran (the record in hand).
        a.read("t", 0, 9, Some(4_000), 5_000);
        a.committed("t", 0, 9);
        assert_eq!(age(&a, 6_000), vec![2.0]);
    }

    #[test]
    fn without_a_record_read_the_age_counts_from_the_first_sight_of_lag() {
        let mut a = InputAges::default();
        a.uncommitted("t", 0, 4, 10_000);
        a.uncommitted("t", 0, 6, 15_000);
        assert_eq!(age(&a, 20_000), vec![10.0]);
        // Caught up: zero, and a later lag counts afresh.
        a.uncommitted("t", 0, 0, 21_000);
        assert_eq!(age(&a, 22_000), vec![0.0]);
        a.uncommitted("t", 0, 2, 30_000);
        assert_eq!(age(&a, 31_000), vec![1.0]);
    }

    #[test]
    fn under_steady_load_a_commit_does_not_bring_back_an_old_sight_of_lag() {
        let mut a = InputAges::default();
        // The statistics always find records past the commit.
        a.uncommitted("t", 0, 50, 1_000);
        a.read("t", 0, 0, Some(60_000), 60_000);
        a.uncommitted("t", 0, 50, 61_000);
        a.committed("t", 0, 10);
        // Between the commit and the next record: not 61 s.
        assert_eq!(age(&a, 62_000), vec![0.0]);
        a.uncommitted("t", 0, 50, 63_000);
        assert_eq!(age(&a, 64_000), vec![1.0]);
    }

    #[test]
    fn a_record_without_a_timestamp_counts_from_when_it_was_read() {
        let mut a = InputAges::default();
        a.uncommitted("t", 0, 1, 0);
        a.read("t", 0, 0, None, 8_000);
        assert_eq!(age(&a, 9_000), vec![1.0]);
    }

    #[test]
    fn a_forgotten_partition_has_no_age() {
        let mut a = InputAges::default();
        a.uncommitted("t", 0, 1, 0);
        a.forget("t", 0);
        assert!(age(&a, 1_000).is_empty());
    }
}
