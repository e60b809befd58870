//! Building librdkafka clients from the configuration: the properties the
//! exactly-once contract requires, sensible defaults a user may override, and
//! the user's passthrough properties.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::config::{Guarantee, Settings};

/// Defaults for the consumer that users may override in `[kafka.consumer]`.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // A new group starts from the beginning of the input: nothing is skipped.
    ("auto.offset.reset", "earliest"),
    // Feeds exactly_consumer_lag.
    ("statistics.interval.ms", "5000"),
    ("enable.partition.eof", "false"),
    // A replica joining or leaving moves only the partitions that change
    // owner; the others keep flowing.
    ("partition.assignment.strategy", "cooperative-sticky"),
    // Memory and flow, measured with bench/ (docs/tuning.md): librdkafka
    // prefetches into a local queue. Its defaults (64 MB, 100,000 records,
    // 1 MB per partition and fetch) made the queue most of the process's
    // memory without making it faster, and once the queue is over its threshold the
    // next fetch waits `fetch.queue.backoff.ms` (1 s by default), which
    // stalled the pipeline for up to a second at a time.
    ("queued.max.messages.kbytes", "4096"),
    ("queued.min.messages", "10000"),
    ("max.partition.fetch.bytes", "262144"),
    ("fetch.queue.backoff.ms", "5"),
];

/// Defaults for the producer that users may override in `[kafka.producer]`.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    // Same key, same partition as Kafka's Java clients would choose.
    ("partitioner", "murmur2_random"),
    ("linger.ms", "5"),
    // After a commit the coordinator writes its markers; a new transaction's
    // first AddPartitionsToTxn is often answered CONCURRENT_TRANSACTIONS
    // meanwhile, and librdkafka retries it after `retry.backoff.ms` (100 ms):
    // the outputs wait that long. 10 ms (still growing exponentially towards
    // retry.backoff.max.ms on repeated failures) took exactly_once from 0.81x
    // to 1.14x at_least_once on 100 B records (docs/tuning.md).
    ("retry.backoff.ms", "10"),
    // Success needs no report: commit_transaction (exactly_once) and the
    // flush before the offset commit (at_least_once) fail or wait for every
    // output anyway, and only failures feed the quarantine. A report per
    // output cost the worker thread a queue pop and a callback each.
    ("delivery.report.only.error", "true"),
];

fn base(settings: &Settings, client_id: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .set("client.id", client_id);
    cfg
}

/// Applies a passthrough table to a client, and the log level it asks for.
fn passthrough(cfg: &mut ClientConfig, table: &BTreeMap<String, String>) {
    for (k, v) in table {
        cfg.set(k, v);
    }
    cfg.set_log_level(log_level(table));
}

/// The level librdkafka logs at, from a passthrough table. rust-rdkafka sets
/// the client's level after creating it, which would silence `debug` (its
/// messages are at level 7): `debug` therefore raises the level to debug,
/// and `log_level` (syslog 0-7) sets it. Otherwise warnings and worse.
fn log_level(table: &BTreeMap<String, String>) -> RDKafkaLogLevel {
    if let Some(level) = table
        .get("log_level")
        .and_then(|v| v.trim().parse::<u8>().ok())
    {
        return match level {
            0 => RDKafkaLogLevel::Emerg,
            1 => RDKafkaLogLevel::Alert,
            2 => RDKafkaLogLevel::Critical,
            3 => RDKafkaLogLevel::Error,
            4 => RDKafkaLogLevel::Warning,
            5 => RDKafkaLogLevel::Notice,
            6 => RDKafkaLogLevel::Info,
            _ => RDKafkaLogLevel::Debug,
        };
    }
    if table.get("debug").is_some_and(|v| !v.trim().is_empty()) {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    }
}

/// A client for start-up look-ups (metadata, committed offsets): the
/// brokers and the `[kafka.consumer]` table, whose security and network
/// properties apply to it too.
pub fn probe_config(settings: &Settings, client_id: &str) -> ClientConfig {
    let mut cfg = base(settings, client_id);
    passthrough(&mut cfg, &settings.kafka.consumer);
    cfg
}

/// The consumer of one worker: read_committed, no auto-commit, positions
/// stored by the daemon; with static membership, `instance_id` is its
/// `group.instance.id`.
pub fn consumer_config(settings: &Settings, client_id: &str, instance_id: &str) -> ClientConfig {
    let mut cfg = base(settings, client_id);
    for (k, v) in CONSUMER_DEFAULTS {
        cfg.set(*k, *v);
    }
    passthrough(&mut cfg, &settings.kafka.consumer);
    // Required by the contract; config validation refuses user values for these.
    cfg.set("group.id", &settings.kafka.group_id)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    if settings.kafka.static_membership {
        cfg.set("group.instance.id", instance_id);
    }
    cfg
}

/// The producer of one worker: transactional with `transactional_id` in
/// exactly_once mode, idempotent in both modes.
pub fn producer_config(
    settings: &Settings,
    client_id: &str,
    transactional_id: &str,
) -> ClientConfig {
    let mut cfg = base(settings, client_id);
    for (k, v) in PRODUCER_DEFAULTS {
        cfg.set(*k, *v);
    }
    if settings.processing.guarantee == Guarantee::ExactlyOnce {
        cfg.set(
            "transaction.timeout.ms",
            crate::config::DEFAULT_TRANSACTION_TIMEOUT_MS.to_string(),
        );
    }
    passthrough(&mut cfg, &settings.kafka.producer);
    match settings.processing.guarantee {
        Guarantee::ExactlyOnce => {
            cfg.set("transactional.id", transactional_id)
                .set("enable.idempotence", "true")
                .set("acks", "all");
        }
        Guarantee::AtLeastOnce => {
            if !settings.kafka.producer.contains_key("enable.idempotence") {
                cfg.set("enable.idempotence", "true");
            }
        }
    }
    cfg
}

/// Checks, before any worker starts, that the cluster answers and that every
/// configured topic exists: a typo in a topic name is a clear error at
/// start-up, not a silent idle daemon or an endless produce failure.
pub fn check_cluster(settings: &Settings, timeout: Duration) -> anyhow::Result<()> {
    let probe: BaseConsumer = probe_config(settings, "exactly-startup-check")
        .create()
        .context("cannot create a Kafka client from [kafka] and [kafka.consumer]")?;
    let metadata = probe.fetch_metadata(None, timeout).with_context(|| {
        format!(
            "cannot reach Kafka at kafka.bootstrap_servers = {} within {} s",
            settings.kafka.bootstrap_servers,
            timeout.as_secs()
        )
    })?;
    let exists = |name: &str| {
        metadata
            .topics()
            .iter()
            .any(|t| t.name() == name && t.error().is_none())
    };
    for topic in &settings.input.topics {
        if !exists(topic) {
            bail!(
                "input topic `{topic}` (input.topics) does not exist on the cluster at {}; create it first",
                settings.kafka.bootstrap_servers
            );
        }
    }
    if !exists(&settings.output.topic) {
        bail!(
            "output topic `{}` (output.topic) does not exist on the cluster at {}; create it first",
            settings.output.topic,
            settings.kafka.bootstrap_servers
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn librdkafka_logs_warnings_unless_the_table_asks_for_more() {
        assert_eq!(
            log_level(&table(&[])) as i32,
            RDKafkaLogLevel::Warning as i32
        );
        assert_eq!(
            log_level(&table(&[("debug", "")])) as i32,
            RDKafkaLogLevel::Warning as i32
        );
        // `debug` logs at level 7, which the Warning level would drop.
        assert_eq!(
            log_level(&table(&[("debug", "eos,cgrp")])) as i32,
            RDKafkaLogLevel::Debug as i32
        );
        // An explicit level wins, `debug` or not.
        assert_eq!(
            log_level(&table(&[("log_level", "6"), ("debug", "eos")])) as i32,
            RDKafkaLogLevel::Info as i32
        );
        assert_eq!(
            log_level(&table(&[("log_level", "3")])) as i32,
            RDKafkaLogLevel::Error as i32
        );
    }

    #[test]
    fn the_clients_carry_the_tables_log_level() {
        let settings = crate::config::Settings::parse(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\ngroup_id = \"g\"\n\
             [kafka.producer]\ndebug = \"eos\"\n[input]\ntopics = [\"i\"]\n\
             [output]\ntopic = \"o\"\n",
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            producer_config(&settings, "p", "t").log_level as i32,
            RDKafkaLogLevel::Debug as i32
        );
        assert_eq!(
            consumer_config(&settings, "c", "i").log_level as i32,
            RDKafkaLogLevel::Warning as i32
        );
    }
}
