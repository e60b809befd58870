//! Reading what the audit needs from Kafka: the audited ranges, the input
//! records in them, and the output records, all with read_committed
//! consumers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::audit::{Audit, Range};
use super::{Until, VerifyOptions};
use crate::lineage;

const CALL: Duration = Duration::from_secs(15);

/// One partition to read: `[from, to)`.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

fn client(opts: &VerifyOptions, group: &str, isolation: &str) -> anyhow::Result<BaseConsumer> {
    let mut cfg = ClientConfig::new();
    crate::kafka::passthrough(&mut cfg, &opts.properties);
    cfg.set("bootstrap.servers", &opts.bootstrap_servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation);
    cfg.create().context("cannot create a Kafka client")
}

/// The clients verify needs, and the partition counts of every topic.
pub struct Cluster {
    committed: BaseConsumer,
    uncommitted: BaseConsumer,
    group: Option<BaseConsumer>,
    partitions: BTreeMap<String, i32>,
}

impl Cluster {
    pub fn connect(opts: &VerifyOptions) -> anyhow::Result<Cluster> {
        // The readers only assign partitions (librdkafka still wants a
        // group for that): they never join it or commit. With the daemon's
        // group they need no ACL beyond the DESCRIBE that reading its
        // committed offsets needs anyway.
        let own_group = opts
            .group
            .clone()
            .unwrap_or_else(|| format!("exactly-verify-{}", std::process::id()));
        let committed = client(opts, &own_group, "read_committed")?;
        let uncommitted = client(opts, &own_group, "read_uncommitted")?;
        let group = match &opts.group {
            Some(g) => Some(client(opts, g, "read_committed")?),
            None => None,
        };
        let md = committed
            .fetch_metadata(None, CALL)
            .with_context(|| format!("cannot reach Kafka at {}", opts.bootstrap_servers))?;
        let mut partitions = BTreeMap::new();
        for topic in opts.inputs.iter().chain(&opts.outputs) {
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .ok_or_else(|| {
                    anyhow!(
                        "topic `{topic}` does not exist on the cluster at {}",
                        opts.bootstrap_servers
                    )
                })?;
            partitions.insert(topic.clone(), t.partitions().len() as i32);
        }
        Ok(Cluster {
            committed,
            uncommitted,
            group,
            partitions,
        })
    }

    fn count(&self, topic: &str) -> i32 {
        self.partitions[topic]
    }

    /// The audited range of each partition of an input topic: from its
    /// first offset to the group's committed offset (or its end).
    pub fn input_spans(&self, topic: &str, until: Until) -> anyhow::Result<Vec<Span>> {
        let n = self.count(topic);
        let committed = match (until, &self.group) {
            (Until::Committed, Some(g)) => {
                let mut tpl = TopicPartitionList::new();
                for p in 0..n {
                    tpl.add_partition(topic, p);
                }
                let got = g.committed_offsets(tpl, CALL).with_context(|| {
                    format!("cannot read the group's committed offsets for `{topic}`")
                })?;
                Some(got)
            }
            (Until::Committed, None) => {
                bail!("--until committed needs a consumer group (--group or kafka.group_id)")
            }
            (Until::End, _) => None,
        };
        let mut spans = Vec::new();
        for p in 0..n {
            let (low, lso) = self.committed.fetch_watermarks(topic, p, CALL)?;
            let to = match &committed {
                Some(tpl) => match tpl.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => low, // the group never committed here: nothing processed yet
                },
                None => lso,
            };
            spans.push(Span {
                partition: p,
                from: low,
                to: to.max(low),
            });
        }
        Ok(spans)
    }

    /// The spans of an output topic: every partition up to its high
    /// watermark at this moment — which includes every output of an input
    /// below the committed offsets read before. Waits up to `wait` for the
    /// transactions still open below that mark to end, so that an abandoned
    /// transaction (a dead replica's) does not hide committed outputs behind
    /// it. Returns the spans and notes about partitions still blocked.
    pub fn output_spans(
        &self,
        topic: &str,
        wait: Duration,
    ) -> anyhow::Result<(Vec<Span>, Vec<String>)> {
        let n = self.count(topic);
        let mut marks = Vec::new();
        for p in 0..n {
            let (low, high) = self.uncommitted.fetch_watermarks(topic, p, CALL)?;
            marks.push((p, low, high));
        }
        let started = Instant::now();
        let mut notes = Vec::new();
        let mut spans = Vec::new();
        for (p, low, high) in marks {
            let mut lso = self.committed.fetch_watermarks(topic, p, CALL)?.1;
            while lso < high && started.elapsed() < wait {
                std::thread::sleep(Duration::from_millis(200));
                lso = self.committed.fetch_watermarks(topic, p, CALL)?.1;
            }
            if lso < high {
                notes.push(format!(
                    "{topic}[{p}]: a transaction is still open at offset {lso} after {} s; outputs after it are not visible yet and their inputs may show as missing (rerun after the producer's transaction.timeout.ms)",
                    wait.as_secs()
                ));
            }
            spans.push(Span {
                partition: p,
                from: low,
                to: lso.min(high),
            });
        }
        Ok((spans, notes))
    }

    /// Reads `spans` of `topic` with the read_committed client, calling
    /// `each` for every record inside its span.
    pub fn read(
        &self,
        topic: &str,
        spans: &[Span],
        mut each: impl FnMut(&BorrowedMessage<'_>),
    ) -> anyhow::Result<()> {
        let c = &self.committed;
        let mut tpl = TopicPartitionList::new();
        let mut open: BTreeMap<i32, Span> = BTreeMap::new();
        for s in spans.iter().filter(|s| s.from < s.to) {
            tpl.add_partition_offset(topic, s.partition, Offset::Offset(s.from))?;
            open.insert(s.partition, *s);
        }
        if open.is_empty() {
            return Ok(());
        }
        c.assign(&tpl)?;
        let mut idle_since = Instant::now();
        while !open.is_empty() {
            match c.poll(Duration::from_millis(500)) {
                None => {
                    if idle_since.elapsed() > Duration::from_secs(60) {
                        bail!(
                            "reading `{topic}` stalled for 60 s; {} partition(s) unfinished",
                            open.len()
                        );
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) => return Err(anyhow!("reading `{topic}`: {e}")),
                Some(Ok(m)) => {
                    idle_since = Instant::now();
                    let Some(span) = open.get(&m.partition()).copied() else {
                        continue;
                    };
                    if m.offset() < span.to {
                        each(&m);
                    }
                    if m.offset() >= span.to - 1 {
                        open.remove(&m.partition());
                    }
                }
            }
        }
        c.unassign()?;
        Ok(())
    }
}

/// Feeds an output record to the audit.
pub fn audit_output(audit: &mut Audit, m: &BorrowedMessage<'_>) {
    let l = m
        .headers()
        .and_then(|hs| lineage::read(hs.iter().map(|h| (h.key, h.value))));
    audit.add_output(m.topic(), m.partition(), m.offset(), l.as_ref());
}

/// Registers the input spans with the audit.
pub fn add_spans(audit: &mut Audit, topic: &str, spans: &[Span]) {
    for s in spans {
        audit.add_partition(
            topic,
            s.partition,
            Range {
                from: s.from,
                to: s.to,
            },
        );
    }
}
