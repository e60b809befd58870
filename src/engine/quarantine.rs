//! Inputs whose outputs failed for good (a record too large for its topic,
//! for example). The broker says so only after the produce, which aborts the
//! transaction; without a memory of the culprit, the replay would abort the
//! same transaction forever. Each output carries its input's coordinates as
//! a delivery tag; after the abort the suspects land here. On replay each
//! suspect is committed in a transaction of its own: if it fails alone it is
//! the culprit, and the worker hands it to the failure policy instead of
//! producing it again.

use std::collections::HashMap;

/// The inputs of the open transaction, so that a delivery tag (a `usize`
/// that librdkafka hands back with each failed output) can name the input
/// whole: a tag is an index into this table, plus a flag. Offsets are kept
/// at full width, not packed into the tag's bits.
#[derive(Debug, Clone)]
pub struct Origins {
    topics: Vec<String>,
    inputs: Vec<(usize, i32, i64)>,
}

/// Set on the tag of a dead-letter record: its failure cannot be sent to
/// the dead-letter topic again.
pub const DEAD_LETTER_FLAG: usize = 1 << (usize::BITS - 1);

impl Origins {
    /// Tags for inputs of `topics`.
    pub fn new(topics: &[String]) -> Self {
        Origins {
            topics: topics.to_vec(),
            inputs: Vec::new(),
        }
    }

    /// A new transaction begins: the tags of the last one are done with.
    pub fn clear(&mut self) {
        self.inputs.clear();
    }

    /// The tag of an input record (the same for all of its outputs).
    pub fn tag(&mut self, topic: &str, partition: i32, offset: i64) -> usize {
        let t = self.topics.iter().position(|x| x == topic).unwrap_or(0);
        let input = (t, partition, offset);
        if self.inputs.last() != Some(&input) {
            self.inputs.push(input);
        }
        self.inputs.len() - 1
    }

    /// The input record of a tag, and whether it tagged a dead-letter
    /// record; `None` for a tag of no input of this transaction.
    pub fn input(&self, tag: usize) -> Option<((String, i32, i64), bool)> {
        let dead_letter = tag & DEAD_LETTER_FLAG != 0;
        let (t, p, o) = *self.inputs.get(tag & !DEAD_LETTER_FLAG)?;
        Some(((self.topics.get(t)?.clone(), p, o), dead_letter))
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
    fn tags_name_the_input_at_full_offset_width() {
        let mut o = Origins::new(&["a".into(), "b".into()]);
        // Past 2^40, where a bit-packed tag used to lose the high bits.
        let far = (1_i64 << 41) + 123;
        let first = o.tag("b", 11, far);
        assert_eq!(
            o.tag("b", 11, far),
            first,
            "one tag for all outputs of an input"
        );
        let second = o.tag("a", 40_000, 7);
        assert_eq!(o.input(first), Some((("b".into(), 11, far), false)));
        assert_eq!(o.input(second), Some((("a".into(), 40_000, 7), false)));
        assert_eq!(o.input(first | DEAD_LETTER_FLAG).map(|x| x.1), Some(true));
        o.clear();
        assert_eq!(o.input(first), None);
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
