//! The audit itself, free of Kafka: which inputs exist, which outputs name
//! them, and what that says about exactly-once.

use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// Where the first output with index 0 of each offset was read, packed
    /// (see [`Position`]), so that a later copy can name both places.
    first_at: Vec<u64>,
    /// Where the first output with index > 0 was read, per (offset, index).
    more_at: HashMap<(i64, u32), u64>,
    /// The first duplicates seen, with the places of both copies.
    duplicates: Vec<Duplicate>,
    /// The output count the outputs of each input declare (0: none did).
    declared: Vec<u32>,
    /// Inputs whose outputs declare different counts.
    conflicting: HashSet<i64>,
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
            first_at: vec![UNKNOWN_AT; len],
            more_at: HashMap::new(),
            duplicates: Vec::new(),
            declared: vec![0; len],
            conflicting: HashSet::new(),
            order_violations: 0,
            outputs: 0,
        }
    }

    /// Whether the input in `slot` (at `offset`) has every output its
    /// outputs declare, and no other: index 0, the indexes above 0 it has
    /// (`others`), all below the declared count. Without a declared count
    /// (outputs older than the count header) the indexes must still run
    /// from 0 without a gap.
    fn complete(&self, slot: usize, offset: i64, others: &[u32]) -> bool {
        if self.conflicting.contains(&offset) || self.first_outputs[slot] == 0 {
            return false;
        }
        let highest = others.iter().copied().max().unwrap_or(0);
        let expected = match self.declared[slot] {
            0 => highest + 1,
            n => n,
        };
        highest < expected && others.len() as u32 == expected - 1
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
    /// Inputs with outputs, but not exactly the indexes `0..count` their
    /// outputs declare: an output lost (another index made it), an index
    /// beyond the count, or outputs that disagree on the count.
    pub incomplete: u64,
    /// Outputs whose lineage (offset and index) was already seen.
    pub duplicates: u64,
    /// Outputs that came before an earlier input's output in the same output partition.
    pub order_violations: u64,
    /// Outputs naming an input of this partition in the range.
    pub outputs: u64,
    /// Up to 10 offsets of inputs without output, for a first look.
    pub first_missing: Vec<i64>,
    /// Up to 10 offsets of incomplete inputs.
    pub first_incomplete: Vec<i64>,
    /// Up to 10 duplicates, each with where both copies were read: the
    /// output offsets lead to the transactions (and the replica logs) that
    /// wrote them.
    pub first_duplicates: Vec<Duplicate>,
}

/// One repeated output: the input it names and where its copies are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// Input offset the copies name.
    pub offset: i64,
    /// Output index (0 for the first output of an input).
    pub index: u32,
    /// `topic[partition]@offset` of the copy read first (when known).
    pub first: Option<String>,
    /// `topic[partition]@offset` of the repeat.
    pub repeat: String,
}

/// A packed output position: an index into the audit's table of output
/// partitions (16 bits) and the output offset (48 bits). Packing keeps the
/// per-input cost of remembering where each output was read at 8 bytes.
struct Position;

/// A position that could not be packed (or was not recorded).
const UNKNOWN_AT: u64 = u64::MAX;

impl Position {
    fn pack(partition_index: usize, offset: i64) -> u64 {
        if partition_index >= 0xffff || !(0..1 << 48).contains(&offset) {
            return UNKNOWN_AT;
        }
        (partition_index as u64) << 48 | offset as u64
    }

    fn unpack(at: u64) -> Option<(usize, i64)> {
        (at != UNKNOWN_AT).then_some(((at >> 48) as usize, (at & ((1 << 48) - 1)) as i64))
    }
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
    /// Sum of `incomplete`.
    pub incomplete: u64,
    /// Sum of `duplicates`.
    pub duplicates: u64,
    /// Sum of `order_violations`.
    pub order_violations: u64,
}

/// What the audit may accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    /// Inputs without any output (a filter step drops records).
    pub missing: bool,
    /// Outputs without lineage headers (another writer shares the topic).
    /// Without this they are violations: a duplicate among them could not
    /// be seen.
    pub unstamped: bool,
}

impl Report {
    /// Whether the audit found a violation, given what it may accept.
    pub fn has_violations(&self, allow: Allow) -> bool {
        self.duplicates > 0
            || self.order_violations > 0
            || self.incomplete > 0
            || (!allow.missing && self.missing > 0)
            || (!allow.unstamped && self.outputs_without_lineage > 0)
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
    /// Output partitions seen, in order of first sighting (see [`Position`]).
    out_partitions: Vec<(String, i32)>,
    out_index: HashMap<(String, i32), usize>,
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

    /// An output record was read at `out_offset` of
    /// `out_topic`/`out_partition`, in log order for that partition.
    pub fn add_output(
        &mut self,
        out_topic: &str,
        out_partition: i32,
        out_offset: i64,
        lineage: Option<&Lineage>,
    ) {
        self.outputs_read += 1;
        let Some(l) = lineage else {
            self.without_lineage += 1;
            return;
        };
        let out_index = match self.out_index.get(&(out_topic.to_owned(), out_partition)) {
            Some(i) => *i,
            None => {
                let i = self.out_partitions.len();
                self.out_partitions
                    .push((out_topic.to_owned(), out_partition));
                self.out_index
                    .insert((out_topic.to_owned(), out_partition), i);
                i
            }
        };
        let at = Position::pack(out_index, out_offset);
        let Some(p) = self.inputs.get_mut(&(l.topic.clone(), l.partition)) else {
            self.outside += 1;
            return;
        };
        let Some(slot) = p.slot(l.offset) else {
            self.outside += 1;
            return;
        };
        p.outputs += 1;
        if let Some(declared) = l.count {
            match p.declared[slot] {
                0 => p.declared[slot] = declared,
                d if d != declared => {
                    p.conflicting.insert(l.offset);
                }
                _ => {}
            }
        }
        let (count, first_at) = if l.index == 0 {
            (&mut p.first_outputs[slot], &mut p.first_at[slot])
        } else {
            (
                p.more_outputs.entry((l.offset, l.index)).or_default(),
                p.more_at.entry((l.offset, l.index)).or_insert(UNKNOWN_AT),
            )
        };
        *count += 1;
        if *count > 1 {
            // A repeat is a duplicate, whatever its place; order is judged
            // on first sightings only.
            let first = *first_at;
            if p.duplicates.len() < 10 {
                let place = |at: u64| {
                    Position::unpack(at).map(|(i, offset)| {
                        let (t, part) = &self.out_partitions[i];
                        format!("{t}[{part}]@{offset}")
                    })
                };
                p.duplicates.push(Duplicate {
                    offset: l.offset,
                    index: l.index,
                    first: place(first),
                    repeat: format!("{out_topic}[{out_partition}]@{out_offset}"),
                });
            }
            return;
        }
        *first_at = at;
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
            // Indexes above 0 seen per input offset.
            let mut more: HashMap<i64, Vec<u32>> = HashMap::new();
            for (offset, index) in p.more_outputs.keys() {
                more.entry(*offset).or_default().push(*index);
            }
            let (mut with_outputs, mut incomplete) = (0, 0);
            let (mut first_missing, mut first_incomplete) = (Vec::new(), Vec::new());
            for (i, present) in p.present.iter().enumerate() {
                if !present {
                    continue;
                }
                let offset = p.range.from + i as i64;
                let others = more.get(&offset).map(Vec::as_slice).unwrap_or(&[]);
                if p.first_outputs[i] == 0 && others.is_empty() {
                    if first_missing.len() < 10 {
                        first_missing.push(offset);
                    }
                    continue;
                }
                with_outputs += 1;
                if !p.complete(i, offset, others) {
                    incomplete += 1;
                    if first_incomplete.len() < 10 {
                        first_incomplete.push(offset);
                    }
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
                incomplete,
                duplicates,
                order_violations: p.order_violations,
                outputs: p.outputs,
                first_missing,
                first_incomplete,
                first_duplicates: p.duplicates.clone(),
            });
        }
        let sum = |f: fn(&PartitionReport) -> u64| partitions.iter().map(f).sum();
        Report {
            inputs: sum(|p| p.inputs),
            missing: sum(|p| p.without_outputs),
            incomplete: sum(|p| p.incomplete),
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
            count: Some(1),
        }
    }

    fn lin_of(offset: i64, index: u32, count: u32) -> Lineage {
        Lineage {
            count: Some(count),
            ..lin(offset, index)
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
            a.add_output("out", o as i32 % 2, 0, Some(&lin(o, 0)));
        }
        let r = a.report();
        assert_eq!(
            (r.inputs, r.missing, r.duplicates, r.order_violations),
            (10, 0, 0, 0)
        );
        assert!(!r.has_violations(Allow::default()));
    }

    #[test]
    fn a_planted_duplicate_is_reported() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, 0, Some(&lin(o, 0)));
        }
        a.add_output("out", 1, 0, Some(&lin(4, 0)));
        let r = a.report();
        assert_eq!(r.duplicates, 1);
        assert_eq!(
            r.order_violations, 0,
            "a copy in another partition is not a reordering"
        );
        assert!(r.has_violations(Allow::default()));
    }

    #[test]
    fn a_planted_gap_is_reported_with_its_offset() {
        let mut a = audit();
        for o in (0..10).filter(|o| *o != 7) {
            a.add_output("out", 0, 0, Some(&lin(o, 0)));
        }
        let r = a.report();
        assert_eq!(r.missing, 1);
        assert_eq!(r.partitions[0].first_missing, vec![7]);
        assert!(r.has_violations(Allow::default()));
        let filters = Allow {
            missing: true,
            ..Allow::default()
        };
        assert!(!r.has_violations(filters), "filters may drop records");
    }

    #[test]
    fn a_duplicate_names_where_both_copies_were_read() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, 100 + o, Some(&lin(o, 0)));
        }
        a.add_output("out", 1, 7, Some(&lin(4, 0)));
        let r = a.report();
        assert_eq!(
            r.partitions[0].first_duplicates,
            vec![Duplicate {
                offset: 4,
                index: 0,
                first: Some("out[0]@104".into()),
                repeat: "out[1]@7".into(),
            }]
        );
    }

    #[test]
    fn a_late_duplicate_is_a_duplicate_not_a_reordering() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, 0, Some(&lin(o, 0)));
        }
        a.add_output("out", 0, 0, Some(&lin(2, 0)));
        let r = a.report();
        assert_eq!((r.duplicates, r.order_violations), (1, 0));
    }

    #[test]
    fn a_planted_reordering_is_reported() {
        let mut a = audit();
        for o in [0, 1, 3, 2, 4, 5, 6, 7, 8, 9] {
            a.add_output("out", 0, 0, Some(&lin(o, 0)));
        }
        let r = a.report();
        assert_eq!(r.order_violations, 1);
        assert_eq!((r.missing, r.duplicates), (0, 0));
    }

    #[test]
    fn several_outputs_per_input_are_distinguished_by_index() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, 0, Some(&lin_of(o, 0, 2)));
            a.add_output("other", 0, 0, Some(&lin_of(o, 1, 2)));
        }
        a.add_output("other", 0, 0, Some(&lin(9, 1)));
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
            a.add_output("out", 0, 0, Some(&lin(o, 0)));
        }
        let r = a.report();
        assert_eq!((r.inputs, r.missing), (8, 0));
    }

    #[test]
    fn outputs_without_lineage_or_outside_the_range_are_counted_apart() {
        let mut a = audit();
        a.add_output("out", 0, 0, None);
        a.add_output("out", 0, 0, Some(&lin(10, 0)));
        let mut foreign = lin(0, 0);
        foreign.topic = "elsewhere".into();
        a.add_output("out", 0, 0, Some(&foreign));
        let r = a.report();
        assert_eq!((r.outputs_without_lineage, r.outputs_outside_range), (1, 2));
        assert_eq!(r.missing, 10);
    }

    #[test]
    fn an_output_without_lineage_is_a_violation_unless_allowed() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, 0, Some(&lin(o, 0)));
        }
        // A copy written without headers: a duplicate nobody could see.
        a.add_output("out", 0, 0, None);
        let r = a.report();
        assert!(r.has_violations(Allow::default()));
        let unstamped = Allow {
            unstamped: true,
            ..Allow::default()
        };
        assert!(!r.has_violations(unstamped));
    }

    #[test]
    fn a_lost_second_output_makes_its_input_incomplete() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, 0, Some(&lin_of(o, 0, 2)));
            if o != 6 {
                a.add_output("routed", 0, 0, Some(&lin_of(o, 1, 2)));
            }
        }
        let r = a.report();
        assert_eq!((r.missing, r.incomplete), (0, 1));
        assert_eq!(r.partitions[0].first_incomplete, vec![6]);
        let filters = Allow {
            missing: true,
            ..Allow::default()
        };
        assert!(r.has_violations(filters), "a lost output is never allowed");
    }

    #[test]
    fn a_lost_first_output_is_incomplete_not_missing() {
        let mut a = audit();
        for o in 0..10 {
            if o != 2 {
                a.add_output("out", 0, 0, Some(&lin_of(o, 0, 2)));
            }
            a.add_output("routed", 0, 0, Some(&lin_of(o, 1, 2)));
        }
        let r = a.report();
        assert_eq!((r.missing, r.incomplete), (0, 1));
    }

    #[test]
    fn an_index_beyond_the_count_or_disagreeing_counts_are_incomplete() {
        let mut a = audit();
        for o in 0..10 {
            a.add_output("out", 0, 0, Some(&lin(o, 0)));
        }
        a.add_output("out", 0, 0, Some(&lin(3, 1))); // count 1, index 1
        a.add_output("out", 0, 0, Some(&lin_of(5, 1, 2))); // says 2; index 0 said 1
        let r = a.report();
        assert_eq!(r.incomplete, 2);
        assert_eq!(r.partitions[0].first_incomplete, vec![3, 5]);
    }

    #[test]
    fn outputs_without_a_count_still_need_indexes_without_gaps() {
        let mut a = audit();
        for o in 0..10 {
            let old = |index| Lineage {
                count: None,
                ..lin(o, index)
            };
            a.add_output("out", 0, 0, Some(&old(0)));
            if o == 4 {
                a.add_output("out", 0, 0, Some(&old(2))); // index 1 lost
            }
        }
        let r = a.report();
        assert_eq!((r.missing, r.incomplete), (0, 1));
    }
}
