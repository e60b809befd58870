//! The audit itself, free of Kafka: which inputs exist, which outputs name
//! them, and what that says about exactly-once.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::lineage::Lineage;

/// The audited offsets of one input partition: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First offset audited.
    pub from: i64,
    /// One past the last offset audited.
    pub to: i64,
}

#[derive(Debug)]
struct InputPartition {
    range: Range,
    /// Offsets in range that hold a record (transactional inputs have
    /// control records, compacted ones have gaps).
    present: Vec<bool>,
    /// Outputs seen with index 0, per offset in range.
    first_outputs: Vec<u32>,
    /// Outputs seen with index > 0, per (offset, index).
    more_outputs: HashMap<(i64, u32), u32>,
    order_violations: u64,
    outputs: u64,
}

impl InputPartition {
    fn new(range: Range) -> Self {
        let len = (range.to - range.from).max(0) as usize;
        InputPartition {
            range,
            present: vec![false; len],
            first_outputs: vec![0; len],
            more_outputs: HashMap::new(),
            order_violations: 0,
            outputs: 0,
        }
    }

    fn slot(&self, offset: i64) -> Option<usize> {
        (offset >= self.range.from && offset < self.range.to)
            .then(|| (offset - self.range.from) as usize)
    }
}

/// One input partition's line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// First audited offset.
    pub from: i64,
    /// One past the last audited offset.
    pub to: i64,
    /// Input records in the range.
    pub inputs: u64,
    /// Inputs with at least one output.
    pub with_outputs: u64,
    /// Inputs with no output at all.
    pub without_outputs: u64,
    /// Outputs whose lineage (offset and index) was already seen.
    pub duplicates: u64,
    /// Outputs that came before an earlier input's output in the same output partition.
    pub order_violations: u64,
    /// Outputs naming an input of this partition in the range.
    pub outputs: u64,
    /// Up to 10 offsets of inputs without output, for a first look.
    pub first_missing: Vec<i64>,
}

/// The whole audit result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One line per audited input partition.
    pub partitions: Vec<PartitionReport>,
    /// Output records read.
    pub outputs_read: u64,
    /// Outputs without (complete) lineage headers: they cannot be audited.
    pub outputs_without_lineage: u64,
    /// Outputs naming an input outside the audited ranges (later inputs, or
    /// a topic that was not audited).
    pub outputs_outside_range: u64,
    /// Sum of `inputs`.
    pub inputs: u64,
    /// Sum of `without_outputs`.
    pub missing: u64,
    /// Sum of `duplicates`.
    pub duplicates: u64,
    /// Sum of `order_violations`.
    pub order_violations: u64,
}

impl Report {
    /// Whether the audit found a violation. Inputs without outputs count
    /// unless `allow_missing` (a filtering chain legitimately drops records).
    pub fn has_violations(&self, allow_missing: bool) -> bool {
        self.duplicates > 0 || self.order_violations > 0 || (!allow_missing && self.missing > 0)
    }
}

/// Accumulates inputs and outputs, in any order, then reports.
#[derive(Debug, Default)]
pub struct Audit {
    inputs: BTreeMap<(String, i32), InputPartition>,
    /// (output topic, output partition, input topic, input partition) ->
    /// last (offset, index) seen.
    last: HashMap<(String, i32, String, i32), (i64, u32)>,
    outputs_read: u64,
    without_lineage: u64,
    outside: u64,
}

impl Audit {
    /// Audits `range` of input partition `topic`/`partition`.
    pub fn add_partition(&mut self, topic: &str, partition: i32, range: Range) {
        self.inputs
            .insert((topic.to_owned(), partition), InputPartition::new(range));
    }

    /// An input record exists at `offset`.
    pub fn add_input(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.inputs.get_mut(&(topic.to_owned(), partition)) {
            if let Some(i) = p.slot(offset) {
                p.present[i] = true;
            }
        }
    }

    /// An output record was read from `out_topic`/`out_partition`, in log
    /// order for that partition.
    pub fn add_output(&mut self, out_topic: &str, out_partition: i32, lineage: Option<&Lineage>) {
        self.outputs_read += 1;
        let Some(l) = lineage else {
            self.without_lineage += 1;
            return;
        };
        let Some(p) = self.inputs.get_mut(&(l.topic.clone(), l.partition)) else {
            self.outside += 1;
            return;
        };
        let Some(slot) = p.slot(l.offset) else {
            self.outside += 1;
            return;
        };
        p.outputs += 1;
        let count = if l.index == 0 {
            &mut p.first_outputs[slot]
        } else {
            p.more_outputs.entry((l.offset, l.index)).or_default()
        };
        *count += 1;
        if *count > 1 {
            // A repeat is a duplicate, whatever its place; order is judged
            // on first sightings only.
            return;
        }
        let key = (
            out_topic.to_owned(),
            out_partition,
            l.topic.clone(),
            l.partition,
        );
        let now = (l.offset, l.index);
        match self.last.get_mut(&key) {
            Some(prev) if now < *prev => p.order_violations += 1,
            Some(prev) => *prev = now,
            None => {
                self.last.insert(key, now);
            }
        }
    }

    /// The result.
    pub fn report(&self) -> Report {
        let mut partitions = Vec::new();
        for ((topic, partition), p) in &self.inputs {
            let inputs = p.present.iter().filter(|x| **x).count() as u64;
            let mut with_outputs = 0;
            let mut first_missing = Vec::new();
            for (i, present) in p.present.iter().enumerate() {
                if !present {
                    continue;
                }
                let offset = p.range.from + i as i64;
                if p.first_outputs[i] > 0 {
                    with_outputs += 1;
                } else if first_missing.len() < 10 {
                    first_missing.push(offset);
                }
            }
            let duplicates = p
                .first_outputs
                .iter()
                .chain(p.more_outputs.values())
                .map(|n| n.saturating_sub(1) as u64)
                .sum();
            partitions.push(PartitionReport {
                topic: topic.clone(),
                partition: *partition,
                from: p.range.from,
                to: p.range.to,
                inputs,
                with_outputs,
                without_outputs: inputs - with_outputs,
                duplicates,
                order_violations: p.order_violations,
                outputs: p.outputs,
                first_missing,
            });
        }
        let sum = |f: fn(&PartitionReport) -> u64| partitions.iter().map(f).sum();
        Report {
            inputs: sum(|p| p.inputs),
            missing: sum(|p| p.without_outputs),
            duplicates: sum(|p| p.duplicates),
            order_violations: sum(|p| p.order_violations),
            partitions,
            outputs_read: self.outputs_read,
            outputs_without_lineage: self.without_lineage,
            outputs_outside_range: self.outside,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lin(offset: i64, index: u32) -> Lineage {
        Lineage {
            topic: "in".into(),
            partition: 0,
            offset,
            index,
        }
    }

    /// Ten inputs at offsets 0..10, one partition.
    fn audit() -> Audit {
        let mut a = Audit::default();
        a.add_partition("in", 0, Range { from: 0, to: 10 });
        for o in 0..10 {
            a.add_input("in", 0, o);
        }
        a
    }

    #[test]
    fn each_input_once_in_order_is_clean() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", o as i32 % 2, Some(&lin(o, 0)));
        }
        let r = a.report();
        assert_eq!(
            (r.inputs, r.missing, r.duplicates, r.order_violations),
            (10, 0, 0, 0)
        );
        assert!(!r.has_violations(false));
    }

    #[test]
    fn a_planted_duplicate_is_reported() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, Some(&lin(o, 0)));
        }
        a.add_output("out", 1, Some(&lin(4, 0)));
        let r = a.report();
        assert_eq!(r.duplicates, 1);
        assert_eq!(
            r.order_violations, 0,
            "a copy in another partition is not a reordering"
        );
        assert!(r.has_violations(false));
    }

    #[test]
    fn a_planted_gap_is_reported_with_its_offset() {
        let mut a = audit();
        for o in (0..10).filter(|o| *o != 7) {
            a.add_output("out", 0, Some(&lin(o, 0)));
        }
        let r = a.report();
        assert_eq!(r.missing, 1);
        assert_eq!(r.partitions[0].first_missing, vec![7]);
        assert!(r.has_violations(false));
        assert!(!r.has_violations(true), "filters may drop records");
    }

    #[test]
    fn a_late_duplicate_is_a_duplicate_not_a_reordering() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, Some(&lin(o, 0)));
        }
        a.add_output("out", 0, Some(&lin(2, 0)));
        let r = a.report();
        assert_eq!((r.duplicates, r.order_violations), (1, 0));
    }

    #[test]
    fn a_planted_reordering_is_reported() {
        let mut a = audit();
        for o in [0, 1, 3, 2, 4, 5, 6, 7, 8, 9] {
            a.add_output("out", 0, Some(&lin(o, 0)));
        }
        let r = a.report();
        assert_eq!(r.order_violations, 1);
        assert_eq!((r.missing, r.duplicates), (0, 0));
    }

    #[test]
    fn several_outputs_per_input_are_distinguished_by_index() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, Some(&lin(o, 0)));
            a.add_output("other", 0, Some(&lin(o, 1)));
        }
        a.add_output("other", 0, Some(&lin(9, 1)));
        let r = a.report();
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.partitions[0].outputs, 21);
    }

    #[test]
    fn gaps_in_the_input_are_not_missing_outputs() {
        let mut a = Audit::default();
        a.add_partition("in", 0, Range { from: 0, to: 10 });
        // Offsets 3 and 9 are transaction markers: no record there.
        for o in (0..10).filter(|o| *o != 3 && *o != 9) {
            a.add_input("in", 0, o);
            a.add_output("out", 0, Some(&lin(o, 0)));
        }
        let r = a.report();
        assert_eq!((r.inputs, r.missing), (8, 0));
    }

    #[test]
    fn outputs_without_lineage_or_outside_the_range_are_counted_apart() {
        let mut a = audit();
        a.add_output("out", 0, None);
        a.add_output("out", 0, Some(&lin(10, 0)));
        let mut foreign = lin(0, 0);
        foreign.topic = "elsewhere".into();
        a.add_output("out", 0, Some(&foreign));
        let r = a.report();
        assert_eq!((r.outputs_without_lineage, r.outputs_outside_range), (1, 2));
        assert_eq!(r.missing, 10);
    }
}
