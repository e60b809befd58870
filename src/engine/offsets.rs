//! Offsets: which positions a transaction commits, and how assigned
//! partitions are rewound to their committed offsets after an abort.

use std::collections::HashMap;
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
}

/// Starting positions this worker fixed for partitions that had no
/// committed offset when they were assigned, not yet committed. Each is
/// committed (in a transaction of its own, or with the open one) before any
/// record of its partition is processed, so a later owner of the partition
/// starts from it too instead of resolving the reset policy again.
pub type Starts = HashMap<(String, i32), i64>;

/// Why a transaction cannot have the offsets it must commit.
#[derive(Debug, thiserror::Error)]
pub enum PositionError {
    /// The consumer could not say where it is.
    #[error("reading positions: {0}")]
    Kafka(#[from] KafkaError),
    /// The transaction consumed from a partition the consumer no longer
    /// reports: its assignment was cleared behind the rebalance callback (a
    /// fatal consumer, a rebalance error). Committing without it would make
    /// its outputs visible while its input is read again.
    #[error("no position for {topic}[{partition}], which this transaction consumed from (the assignment was cleared)")]
    Missing {
        /// The input topic.
        topic: String,
        /// The input partition.
        partition: i32,
    },
}

/// The offsets a transaction commits: the consumer's position — the next
/// offset to read — of each partition the transaction consumed from. The
/// position is never computed as "last offset + 1": transactional input
/// holds control records, so positions can jump. Every such partition must
/// have a position; otherwise the transaction must abort.
pub fn positions_to_commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[(String, i32)],
) -> Result<TopicPartitionList, PositionError> {
    let positions = consumer.position()?;
    let mut out = TopicPartitionList::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let position = positions
            .find_partition(topic, *partition)
            .map(|e| e.offset());
        match position {
            Some(Offset::Offset(o)) => {
                out.add_partition_offset(topic, *partition, Offset::Offset(o))?;
            }
            _ => {
                return Err(PositionError::Missing {
                    topic: topic.clone(),
                    partition: *partition,
                })
            }
        }
    }
    Ok(out)
}

/// The committed offsets of `partitions`, read with `require_stable` (a
/// read_committed consumer asks so: the broker waits for a transaction that
/// still holds offsets for them). A partition-level error is an error, not
/// "no offset": taking it for one would restart the partition at the reset
/// policy.
pub fn committed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<TopicPartitionList> {
    let committed = consumer.committed_offsets(partitions, timeout)?;
    for elem in committed.elements() {
        elem.error()?;
    }
    Ok(committed)
}

/// Where a partition without a committed offset starts: the log start
/// (`earliest`) or the last stable offset (`latest`; a read_committed
/// consumer's ListOffsets answers the LSO, so an open transaction's records
/// are not skipped when it commits).
pub fn resolve_start<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    reset: ResetPolicy,
    timeout: Duration,
) -> KafkaResult<i64> {
    let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
    Ok(match reset {
        ResetPolicy::Earliest => low,
        ResetPolicy::Latest => high,
    })
}

/// Seeks every assigned partition back to its committed offset, or, for a
/// partition with none yet, to the start this worker fixed for it
/// (`starts`). librdkafka discards records it fetched ahead of the new
/// position, so nothing read before the rewind is returned after it.
/// Returns the offsets sought to.
pub fn rewind<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    starts: &Starts,
    reset: ResetPolicy,
    timeout: Duration,
) -> KafkaResult<TopicPartitionList> {
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(assignment);
    }
    let committed = committed(consumer, assignment, timeout)?;
    let mut targets = TopicPartitionList::with_capacity(committed.count());
    for elem in committed.elements() {
        let offset = match elem.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => match starts.get(&(elem.topic().to_owned(), elem.partition())) {
                Some(start) => Offset::Offset(*start),
                // Every partition assigned without a committed offset has a
                // fixed start until that start is committed; this is a
                // partition assigned before this worker tracked starts.
                None => Offset::Offset(resolve_start(
                    consumer,
                    elem.topic(),
                    elem.partition(),
                    reset,
                    timeout,
                )?),
            },
        };
        targets.add_partition_offset(elem.topic(), elem.partition(), offset)?;
    }
    let result = consumer.seek_partitions(targets.clone(), timeout)?;
    for elem in result.elements() {
        if let Err(e) = elem.error() {
            return Err(KafkaError::Seek(format!(
                "{}[{}]: {e}",
                elem.topic(),
                elem.partition()
            )));
        }
    }
    Ok(targets)
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
