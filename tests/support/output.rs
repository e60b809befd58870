//! What a read_committed consumer sees, and the group's committed offsets.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::*;

pub fn consumer_config(group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &broker().bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    c
}

/// What a consumer saw in an output topic.
#[derive(Debug, Clone)]
pub struct OutRec {
    /// The record, without lineage headers.
    pub rec: Rec,
    /// Its lineage headers, if it had all four.
    pub lineage: Option<exactly::lineage::Lineage>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

/// Waits until no transaction is open on any partition of `topic`: the last
/// stable offset (what a read_committed client's ListOffsets answers) equals
/// the high watermark. A writer killed mid-transaction and never restarted
/// holds the LSO back until its transaction times out.
pub fn wait_no_open_transactions(topic: &str) {
    let committed: BaseConsumer = consumer_config(&unique("lso"))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let uncommitted: BaseConsumer = consumer_config(&unique("hw"))
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let partitions = committed
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap()
        .topics()[0]
        .partitions()
        .len() as i32;
    let t = Duration::from_secs(10);
    wait_until(&format!("no open transaction on {topic}"), || {
        (0..partitions).all(|p| {
            let lso = committed.fetch_watermarks(topic, p, t).map(|w| w.1);
            let hw = uncommitted.fetch_watermarks(topic, p, t).map(|w| w.1);
            matches!((lso, hw), (Ok(a), Ok(b)) if a == b)
        })
    });
}

/// Reads every record of `topic` visible at the given isolation level,
/// stopping when each partition reports its end. Call it once the writers
/// are done; it first waits until no transaction is open, so that "end" is
/// the real end.
pub fn read_all(topic: &str, isolation: &str) -> Vec<OutRec> {
    wait_no_open_transactions(topic);
    let c: BaseConsumer = consumer_config(&unique("reader"))
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut at_end = vec![false; partitions];
    let mut out = Vec::new();
    let start = Instant::now();
    while at_end.iter().any(|e| !e) {
        assert!(
            start.elapsed() < WAIT,
            "reading {topic} did not reach its end"
        );
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                at_end[m.partition() as usize] = false;
                let all: Vec<(String, Option<Vec<u8>>)> = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                let lineage =
                    exactly::lineage::read(all.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
                let headers = all
                    .into_iter()
                    .filter(|(k, _)| {
                        !k.starts_with("exactly.source.") && !k.starts_with("exactly.output.")
                    })
                    .collect();
                out.push(OutRec {
                    lineage,
                    rec: Rec {
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers,
                    },
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                });
            }
        }
    }
    out
}

/// Sum over partitions of the group's committed offsets for `topic`, and of
/// the topic's end offsets.
pub fn committed_and_end(group: &str, topic: &str) -> (i64, i64) {
    let c: BaseConsumer = consumer_config(group).create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut end = 0;
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
        end += c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap()
            .1;
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .map(|t| {
            t.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0);
    (committed, end)
}

/// Records written to `topic` so far, committed or not: the sum of its
/// high watermarks as a read_uncommitted client sees them.
pub fn written_to(topic: &str) -> i64 {
    let c: BaseConsumer = consumer_config(&unique("hw"))
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// The metadata of `group`'s committed offsets on each partition of `topic`
/// (exactly writes the committing worker's transactional id there).
pub fn committed_metadata(group: &str, topic: &str) -> Vec<String> {
    let c: BaseConsumer = consumer_config(group).create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .map(|t| {
            t.elements()
                .iter()
                .map(|e| e.metadata().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `group` has committed the end of every partition of `topic`:
/// every input record written so far has been processed and committed.
/// `live` are daemons that must keep running meanwhile: if one exits, the
/// wait fails at once with its log.
pub fn wait_caught_up(group: &str, topic: &str, live: &mut [&mut Daemon]) {
    wait_until(
        &format!("group {group} to commit the end of {topic}"),
        || {
            for d in live.iter_mut() {
                d.assert_alive();
            }
            let (committed, end) = committed_and_end(group, topic);
            end > 0 && committed == end
        },
    );
}

/// A plain consumer that joins `group` under `instance_id`, the way a second
/// replica with the same transactional id would: the coordinator gives it the
/// static member's place and fences the member that held it. Poll it to
/// drive its join and keep it in the group.
pub fn interloper(group: &str, instance_id: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = consumer_config(group)
        .set("group.instance.id", instance_id)
        // The group's protocol: another would be refused as inconsistent.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}
