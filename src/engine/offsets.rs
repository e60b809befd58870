//! Offsets: which positions a transaction commits, and how assigned
//! partitions are rewound to their committed offsets after an abort.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};

/// Where a partition without a committed offset starts, from the consumer's
/// `auto.offset.reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPolicy {
    /// `earliest` / `smallest` / `beginning`
    Earliest,
    /// `latest` / `largest` / `end`
    Latest,
}

impl ResetPolicy {
    /// Reads librdkafka's `auto.offset.reset` spelling; `None` means the
    /// daemon's default, earliest.
    pub fn from_property(value: Option<&str>) -> ResetPolicy {
        match value {
            Some("latest" | "largest" | "end") => ResetPolicy::Latest,
            _ => ResetPolicy::Earliest,
        }
    }

    fn offset(self) -> Offset {
        match self {
            ResetPolicy::Earliest => Offset::Beginning,
            ResetPolicy::Latest => Offset::End,
        }
    }
}

/// The offsets a transaction commits: the consumer's position — the next
/// offset to read — of each partition the transaction consumed from. The
/// position is never computed as "last offset + 1": transactional input
/// holds control records, so positions can jump.
pub fn positions_to_commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[(String, i32)],
) -> KafkaResult<TopicPartitionList> {
    let positions = consumer.position()?;
    let mut out = TopicPartitionList::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        // A partition consumed in this transaction but revoked since is not
        // ours to commit; the rebalance handler has aborted in that case.
        if let Some(elem) = positions.find_partition(topic, *partition) {
            if let Offset::Offset(o) = elem.offset() {
                out.add_partition_offset(topic, *partition, Offset::Offset(o))?;
            }
        }
    }
    Ok(out)
}

/// Seeks every assigned partition back to its committed offset (or to the
/// reset policy when it has none). librdkafka discards records it fetched
/// ahead of the new position, so nothing read before the rewind is returned
/// after it. Returns the number of partitions rewound.
pub fn rewind<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    reset: ResetPolicy,
    timeout: Duration,
) -> KafkaResult<usize> {
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(0);
    }
    let committed = consumer.committed_offsets(assignment, timeout)?;
    let mut targets = TopicPartitionList::with_capacity(committed.count());
    for elem in committed.elements() {
        let offset = match elem.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => reset.offset(),
        };
        targets.add_partition_offset(elem.topic(), elem.partition(), offset)?;
    }
    let result = consumer.seek_partitions(targets, timeout)?;
    for elem in result.elements() {
        if let Err(e) = elem.error() {
            return Err(KafkaError::Seek(format!(
                "{}[{}]: {e}",
                elem.topic(),
                elem.partition()
            )));
        }
    }
    Ok(result.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_policy_reads_every_librdkafka_spelling() {
        for s in ["latest", "largest", "end"] {
            assert_eq!(ResetPolicy::from_property(Some(s)), ResetPolicy::Latest);
        }
        for s in ["earliest", "smallest", "beginning"] {
            assert_eq!(ResetPolicy::from_property(Some(s)), ResetPolicy::Earliest);
        }
        assert_eq!(ResetPolicy::from_property(None), ResetPolicy::Earliest);
    }
}
