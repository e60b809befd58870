//! Lineage headers: each output record names the input record that produced
//! it — source topic, partition and offset —, its index among that input's
//! outputs, and how many outputs that input has. `exactly verify` audits
//! exactly-once from them: every input's outputs must be indexes
//! `0..count`, each once.
//!
//! Values are decimal ASCII, so console consumers show them readably. An
//! input's own lineage headers (from an upstream exactly deployment) are
//! replaced: lineage always points one hop back.

use crate::transform::{Header, Record};

/// Source topic of the input record.
pub const TOPIC: &str = "exactly.source.topic";
/// Source partition of the input record.
pub const PARTITION: &str = "exactly.source.partition";
/// Source offset of the input record.
pub const OFFSET: &str = "exactly.source.offset";
/// Position of this output among the outputs of one input (0-based).
pub const INDEX: &str = "exactly.output.index";
/// How many outputs the input has (across all output topics).
pub const COUNT: &str = "exactly.output.count";

/// Where an output record came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lineage {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
    /// Index among that input's outputs.
    pub index: u32,
    /// How many outputs that input has; `None` for outputs written before
    /// exactly stamped the count.
    pub count: Option<u32>,
}

fn is_lineage(key: &str) -> bool {
    matches!(key, TOPIC | PARTITION | OFFSET | INDEX | COUNT)
}

/// Replaces any lineage headers of `record` with those naming output `index`
/// of the `count` outputs of input `topic`/`partition`/`offset`.
pub fn stamp(
    record: &mut Record,
    topic: &str,
    partition: i32,
    offset: i64,
    index: u32,
    count: u32,
) {
    record.headers.retain(|h| !is_lineage(&h.key));
    let mut push = |key: &str, value: String| {
        record.headers.push(Header {
            key: key.to_owned(),
            value: Some(value.into_bytes()),
        })
    };
    push(TOPIC, topic.to_owned());
    push(PARTITION, partition.to_string());
    push(OFFSET, offset.to_string());
    push(INDEX, index.to_string());
    push(COUNT, count.to_string());
}

/// Reads lineage from headers given as (key, value) pairs. `None` when any
/// of the first four is missing or malformed (the count is optional).
pub fn read<'a>(headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Option<Lineage> {
    let (mut topic, mut partition, mut offset, mut index) = (None, None, None, None);
    let mut count = None;
    for (k, v) in headers {
        let Some(text) = v.and_then(|v| std::str::from_utf8(v).ok()) else {
            continue;
        };
        match k {
            TOPIC => topic = Some(text.to_owned()),
            PARTITION => partition = text.parse().ok(),
            OFFSET => offset = text.parse().ok(),
            INDEX => index = text.parse().ok(),
            COUNT => count = text.parse().ok(),
            _ => {}
        }
    }
    Some(Lineage {
        topic: topic?,
        partition: partition?,
        offset: offset?,
        index: index?,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(r: &Record) -> Vec<(&str, Option<&[u8]>)> {
        r.headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect()
    }

    #[test]
    fn stamped_lineage_reads_back() {
        let mut r = Record::default();
        stamp(&mut r, "orders", 3, 42, 1, 2);
        assert_eq!(
            read(pairs(&r)),
            Some(Lineage {
                topic: "orders".into(),
                partition: 3,
                offset: 42,
                index: 1,
                count: Some(2),
            })
        );
        // Outputs stamped before the count existed still read.
        r.headers.retain(|h| h.key != COUNT);
        assert_eq!(read(pairs(&r)).unwrap().count, None);
    }

    #[test]
    fn upstream_lineage_is_replaced_and_other_headers_kept() {
        let mut r = Record::default();
        r.headers.push(Header {
            key: "trace".into(),
            value: None,
        });
        stamp(&mut r, "a", 0, 1, 0, 1);
        stamp(&mut r, "b", 2, 7, 0, 1);
        assert_eq!(r.headers.len(), 6);
        assert_eq!(r.headers[0].key, "trace");
        assert_eq!(read(pairs(&r)).unwrap().topic, "b");
    }

    #[test]
    fn incomplete_or_malformed_lineage_is_none() {
        let mut r = Record::default();
        stamp(&mut r, "a", 0, 1, 0, 1);
        r.headers.retain(|h| h.key != OFFSET);
        assert_eq!(read(pairs(&r)), None);
        let bad = [
            (TOPIC, Some(&b"a"[..])),
            (PARTITION, Some(&b"x"[..])),
            (OFFSET, Some(&b"1"[..])),
            (INDEX, Some(&b"0"[..])),
        ];
        assert_eq!(read(bad), None);
    }
}
