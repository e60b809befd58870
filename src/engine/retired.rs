//! Transactional ids this replica no longer uses. When `processing.workers`
//! shrinks (4 workers become 2, or 2 become 1), the ids of the workers that
//! are gone are never initialised again, so a transaction they left open
//! would hold back the outputs' last stable offset — and every
//! read_committed reader — until `transaction.timeout.ms` expires.
//!
//! Each commit records the committing worker's transactional id as the
//! metadata of the offsets it commits. At start-up the ids found there that
//! belong to this replica (its base id, or `<base>-w<N>`) but to none of its
//! current workers are fenced: `init_transactions` under that id aborts
//! whatever it left open. Ids of other replicas have another base and are
//! never touched.
//!
//! Not covered: a replica whose *base* id changed (a new hostname with the
//! hostname-derived default) cannot tell its old ids from another
//! replica's; that needs the Admin API's ListTransactions, which librdkafka
//! does not offer. Its old transactions end with their timeout.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::config::{Guarantee, Settings};
use crate::kafka::{self, NotAuthorized, ProbeContext};

/// The ids among `found` that are this replica's (`base`, or `base-w<N>`)
/// but none of its `current` workers'.
pub fn retired_ids<'a>(
    base: &str,
    current: &[String],
    found: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    let ours = |id: &str| {
        id == base
            || id
                .strip_prefix(base)
                .and_then(|rest| rest.strip_prefix("-w"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    found
        .into_iter()
        .filter(|id| ours(id) && !current.iter().any(|c| c == id))
        .map(str::to_owned)
        .collect()
}

/// Fences the retired ids of this replica; returns them. An error here
/// costs no correctness (a retired id's open transaction still ends with
/// its timeout), so the caller only warns.
pub fn fence_retired(settings: &Settings, timeout: Duration) -> anyhow::Result<Vec<String>> {
    if settings.processing.guarantee != Guarantee::ExactlyOnce {
        return Ok(Vec::new());
    }
    // Not read_committed: with require_stable the broker would make the
    // probe wait for exactly the transactions it is about to fence.
    let probe: BaseConsumer<ProbeContext> = kafka::probe_config(settings, "exactly-retired-ids")
        .set("group.id", &settings.kafka.group_id)
        .set("isolation.level", "read_uncommitted")
        .create_with_context(ProbeContext::default())
        .context("cannot create the client that looks for retired transactional ids")?;
    let mut partitions = TopicPartitionList::new();
    for topic in &settings.input.topics {
        let metadata = probe
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("cannot read the partitions of `{topic}`"))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                partitions.add_partition(t.name(), p.id());
            }
        }
    }
    // A broker that has just started answers NOT_COORDINATOR (or "loading")
    // for a while: ask again until the start-up timeout.
    let deadline = Instant::now() + timeout;
    let committed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let result = probe.committed_offsets(partitions.clone(), left.min(Duration::from_secs(1)));
        let _ = probe.poll(Duration::ZERO);
        if let Some((RDKafkaErrorCode::GroupAuthorizationFailed, _)) = probe.context().refused() {
            // No retry grants an ACL: the worker would fail the same way.
            return Err(NotAuthorized(format!(
                "{} is not authorized to use consumer group `{group}`: grant READ on Group:{group} \
                 (docs/security.md lists every ACL exactly needs)",
                kafka::principal(settings),
                group = settings.kafka.group_id
            ))
            .into());
        }
        match result {
            Ok(c) => break c,
            Err(e) if !left.is_zero() => {
                tracing::debug!(error = %e, "committed offsets not readable yet; asking again");
                // Backoff between attempts, not synchronisation.
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e).context("cannot read the group's committed offsets"),
        }
    };
    let current: Vec<String> = (0..settings.processing.workers)
        .map(|i| settings.worker_transactional_id(i))
        .collect();
    let elements = committed.elements();
    let retired = retired_ids(
        &settings.base_transactional_id(),
        &current,
        elements.iter().map(|e| e.metadata()),
    );
    for id in &retired {
        let producer: BaseProducer = kafka::producer_config(settings, &format!("exactly-{id}"), id)
            .create()
            .with_context(|| format!("cannot create a producer to fence `{id}`"))?;
        producer
            .init_transactions(timeout)
            .with_context(|| format!("cannot fence retired transactional id `{id}`"))?;
        tracing::info!(transactional_id = %id, "fenced a transactional id no worker uses any more; its open transaction is aborted");
    }
    Ok(retired.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_replicas_ids_that_no_worker_uses_are_retired() {
        let current = vec!["orders-a".to_owned()];
        let found = [
            "orders-a",        // the current worker
            "orders-a-w0",     // from when there were two workers
            "orders-a-w1",     // likewise
            "orders-a-w1",     // seen on several partitions
            "orders-b",        // another replica
            "orders-a-west-1", // another replica whose id merely starts alike
            "orders-a-w",      // not a worker id
            "",                // committed by a tool without metadata
        ];
        let retired: Vec<String> = retired_ids("orders-a", &current, found)
            .into_iter()
            .collect();
        assert_eq!(retired, ["orders-a-w0", "orders-a-w1"]);
        // Growing from one worker to two retires the plain id.
        let two = vec!["orders-a-w0".to_owned(), "orders-a-w1".to_owned()];
        let retired: Vec<String> = retired_ids("orders-a", &two, found).into_iter().collect();
        assert_eq!(retired, ["orders-a"]);
    }
}
