//! The guard against a record the consumer hands over twice.
//!
//! librdkafka pauses every assigned partition while a cooperative rebalance
//! waits for the application, and saves the application's position as the
//! place each partition resumes from. That position moves only when the
//! application takes the record out of the event it polled. A pause that
//! lands after `poll` has taken the event off the queue but before the
//! record is handed over saves the position *of* that record; the record is
//! still returned and processed, and once the partition resumes, it is
//! fetched and returned again. Nothing marks the second copy.
//!
//! Chaos under CPU starvation caught this: one input in two committed
//! transactions of the same producer, two seconds apart, with no rewind in
//! between; the second began at the offset the first had just committed
//! past, minus one. Without a guard the second copy is a duplicate output.
//!
//! The worker knows where each partition must go on: one past the last
//! record it took, or where its own rewind sent the partition. A record
//! below that mark was taken already and is dropped. The mark is forgotten
//! when the partition is revoked, lost or assigned (its next owner starts
//! from the committed offset, which may lie lower), and every rewind sets it
//! to the offsets it seeks to.

use std::collections::HashMap;

use rdkafka::{Offset, TopicPartitionList};

/// The next offset each partition may deliver.
#[derive(Debug, Default)]
pub struct NextOffsets {
    by_topic: HashMap<String, HashMap<i32, i64>>,
}

impl NextOffsets {
    /// Whether the record at `offset` is new: at or past the partition's
    /// mark, or on a partition without one. A new record moves the mark
    /// past it; an old one leaves it alone.
    pub fn admit(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let marks = match self.by_topic.get_mut(topic) {
            Some(m) => m,
            None => self.by_topic.entry(topic.to_owned()).or_default(),
        };
        let next = marks.entry(partition).or_insert(offset);
        if offset < *next {
            return false;
        }
        *next = offset + 1;
        true
    }

    /// The partitions of `tpl` changed hands: whatever they deliver next
    /// is taken as new.
    pub fn forget(&mut self, tpl: &TopicPartitionList) {
        for e in tpl.elements() {
            if let Some(marks) = self.by_topic.get_mut(e.topic()) {
                marks.remove(&e.partition());
            }
        }
    }

    /// Every mark goes (the assignment was given up).
    pub fn clear(&mut self) {
        self.by_topic.clear();
    }

    /// The worker sought these partitions to these offsets.
    pub fn rewound(&mut self, targets: &TopicPartitionList) {
        for e in targets.elements() {
            let marks = self.by_topic.entry(e.topic().to_owned()).or_default();
            match e.offset() {
                Offset::Offset(o) => {
                    marks.insert(e.partition(), o);
                }
                _ => {
                    marks.remove(&e.partition());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(entries: &[(&str, i32, i64)]) -> TopicPartitionList {
        let mut t = TopicPartitionList::new();
        for (topic, p, o) in entries {
            t.add_partition_offset(topic, *p, Offset::Offset(*o))
                .unwrap();
        }
        t
    }

    #[test]
    fn a_record_handed_over_again_is_not_new() {
        let mut n = NextOffsets::default();
        assert!(n.admit("in", 6, 2679));
        assert!(n.admit("in", 6, 2680));
        assert!(n.admit("in", 6, 2681));
        // The resumed fetch starts again at 2681.
        assert!(!n.admit("in", 6, 2681));
        assert!(n.admit("in", 6, 2682));
        // Other partitions and topics keep marks of their own.
        assert!(n.admit("in", 7, 5));
        assert!(n.admit("other", 6, 0));
    }

    #[test]
    fn gaps_are_new_records() {
        // Transaction markers and compaction leave offsets without records.
        let mut n = NextOffsets::default();
        assert!(n.admit("in", 0, 10));
        assert!(n.admit("in", 0, 14));
        assert!(!n.admit("in", 0, 12));
    }

    #[test]
    fn a_rewind_sets_the_marks_to_where_it_sought() {
        let mut n = NextOffsets::default();
        for o in 100..110 {
            assert!(n.admit("in", 0, o));
        }
        n.rewound(&tpl(&[("in", 0, 100)]));
        assert!(n.admit("in", 0, 100), "the aborted records come again");
        assert!(!n.admit("in", 0, 99), "nothing before the committed offset");
    }

    #[test]
    fn a_partition_that_changed_hands_starts_wherever_it_is_assigned() {
        let mut n = NextOffsets::default();
        for o in 0..50 {
            n.admit("in", 3, o);
        }
        n.forget(&tpl(&[("in", 3, 0)]));
        // Back from the committed offset, lower than where this worker was.
        assert!(n.admit("in", 3, 20));
        n.clear();
        assert!(n.admit("in", 3, 0));
    }
}
