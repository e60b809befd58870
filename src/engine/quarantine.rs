//! Inputs whose outputs failed for good (a record too large for its topic,
//! for example). The broker says so only after the produce, which aborts the
//! transaction; without a memory of the culprit, the replay would abort the
//! same transaction forever. Each output carries its input's coordinates as
//! a delivery tag; after the abort the suspects land here. On replay each
//! suspect is committed in a transaction of its own: if it fails alone it is
//! the culprit, and the worker hands it to the failure policy instead of
//! producing it again.

use std::collections::HashMap;

/// Packs input coordinates into a delivery tag and back.
#[derive(Debug, Clone)]
pub struct Origins {
    topics: Vec<String>,
}

const OFFSET_BITS: u32 = 40;
const PARTITION_BITS: u32 = 16;
/// Set on the tag of a dead-letter record: its failure cannot be sent to
/// the dead-letter topic again.
pub const DEAD_LETTER_FLAG: usize = 1 << 63;

impl Origins {
    /// Tags for inputs of `topics`.
    pub fn new(topics: &[String]) -> Self {
        Origins {
            topics: topics.to_vec(),
        }
    }

    /// The tag of an input record.
    pub fn pack(&self, topic: &str, partition: i32, offset: i64) -> usize {
        let t = self.topics.iter().position(|x| x == topic).unwrap_or(0);
        (t << (OFFSET_BITS + PARTITION_BITS))
            | ((partition as usize & 0xffff) << OFFSET_BITS)
            | (offset as usize & ((1 << OFFSET_BITS) - 1))
    }

    /// The input record of a tag, and whether it tagged a dead-letter record.
    pub fn unpack(&self, tag: usize) -> ((String, i32, i64), bool) {
        let dead_letter = tag & DEAD_LETTER_FLAG != 0;
        let tag = tag & !DEAD_LETTER_FLAG;
        let t = tag >> (OFFSET_BITS + PARTITION_BITS);
        let p = (tag >> OFFSET_BITS) & 0xffff;
        let o = tag & ((1 << OFFSET_BITS) - 1);
        let topic = self.topics.get(t).cloned().unwrap_or_default();
        ((topic, p as i32, o as i64), dead_letter)
    }
}

/// Why an input is quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Culprit {
    /// The broker's or client's error.
    pub cause: String,
    /// Its dead-letter record failed too: only `fail` is left.
    pub dead_letter_failed: bool,
    /// It failed in a transaction of its own. Until then it is a suspect:
    /// a broker refuses a whole record batch, so the innocent neighbours of
    /// a culprit fail with it, and each is retried alone before anything is
    /// dead-lettered.
    pub confirmed: bool,
}

/// Quarantined inputs of one worker.
#[derive(Debug, Default)]
pub struct Quarantine {
    inputs: HashMap<(String, i32, i64), Culprit>,
}

impl Quarantine {
    /// Remembers an input whose output failed for good.
    pub fn insert(&mut self, input: (String, i32, i64), culprit: Culprit) {
        self.inputs
            .entry(input)
            .and_modify(|c| {
                c.dead_letter_failed |= culprit.dead_letter_failed;
                c.confirmed |= culprit.confirmed;
            })
            .or_insert(culprit);
    }

    /// The culprit record for this input, if quarantined. It stays in
    /// quarantine until [`Quarantine::release`]: a later abort may bring the
    /// input back again.
    pub fn get(&self, topic: &str, partition: i32, offset: i64) -> Option<Culprit> {
        if self.inputs.is_empty() {
            return None;
        }
        self.inputs
            .get(&(topic.to_owned(), partition, offset))
            .cloned()
    }

    /// Forgets an input: a suspect that committed alone was innocent.
    pub fn release(&mut self, input: &(String, i32, i64)) {
        self.inputs.remove(input);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let o = Origins::new(&["a".into(), "b".into()]);
        let tag = o.pack("b", 11, 123_456_789);
        assert_eq!(o.unpack(tag), (("b".into(), 11, 123_456_789), false));
        assert!(o.unpack(tag | DEAD_LETTER_FLAG).1);
    }

    #[test]
    fn a_quarantined_input_stays_until_released() {
        let mut q = Quarantine::default();
        q.insert(
            ("a".into(), 0, 5),
            Culprit {
                cause: "too large".into(),
                dead_letter_failed: false,
                confirmed: false,
            },
        );
        assert!(q.get("a", 0, 4).is_none());
        assert_eq!(q.get("a", 0, 5).unwrap().cause, "too large");
        assert!(q.get("a", 0, 5).is_some(), "kept until released");
        q.release(&("a".into(), 0, 5));
        assert!(q.get("a", 0, 5).is_none());
    }
}
