//! Building librdkafka clients from the configuration: the properties the
//! exactly-once contract requires, sensible defaults a user may override, and
//! the user's passthrough properties.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use std::sync::Mutex;

use rdkafka::bindings::rd_kafka_resp_err_t as RDKafkaRespErr;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

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

/// The librdkafka this binary is built with: its version and its built-in
/// features (`builtin.features`: codecs, TLS, SASL mechanisms, OIDC).
pub fn library() -> (String, String) {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    // The cmake build lists `sasl_gssapi` whether or not Cyrus SASL is
    // linked; it is not (Kerberos is not built in: docs/security.md).
    let features = features
        .split(',')
        .filter(|f| *f != "sasl_gssapi")
        .collect::<Vec<_>>()
        .join(",");
    (version, features)
}

fn base(settings: &Settings, client_id: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .set("client.id", client_id);
    cfg
}

/// Applies a passthrough table to a client, and the log level it asks for.
pub fn passthrough(cfg: &mut ClientConfig, table: &BTreeMap<String, String>) {
    for (k, v) in table {
        cfg.set(k, v);
    }
    if uses_tls(table) && !table.keys().any(|k| k.starts_with("ssl.ca.")) {
        // OpenSSL is linked statically, so its compiled-in CA directory is
        // not the system's: `probe` makes librdkafka look in the usual
        // places (/etc/ssl/certs/ca-certificates.crt on Debian), so a
        // cluster with a public certificate works with no CA setting.
        cfg.set("ssl.ca.location", "probe");
    }
    let oidc = table
        .get("sasl.oauthbearer.method")
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("oidc"));
    if oidc && !table.keys().any(|k| k.starts_with("https.ca.")) {
        // The same for the token endpoint's certificate, which libcurl
        // checks against librdkafka's `https.ca.location`.
        cfg.set("https.ca.location", "probe");
    }
    cfg.set_log_level(log_level(table));
}

/// Whether `security.protocol` is SSL or SASL_SSL.
fn uses_tls(table: &BTreeMap<String, String>) -> bool {
    table
        .get("security.protocol")
        .is_some_and(|p| p.trim().to_ascii_uppercase().ends_with("SSL"))
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
/// brokers, `[kafka.client]` and the `[kafka.consumer]` table, whose
/// security and network properties apply to it too.
pub fn probe_config(settings: &Settings, client_id: &str) -> ClientConfig {
    let mut cfg = base(settings, client_id);
    passthrough(&mut cfg, &settings.kafka.resolved.for_consumer());
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
    passthrough(&mut cfg, &settings.kafka.resolved.for_consumer());
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
    let table = settings.kafka.resolved.for_producer();
    passthrough(&mut cfg, &table);
    match settings.processing.guarantee {
        Guarantee::ExactlyOnce => {
            cfg.set("transactional.id", transactional_id)
                .set("enable.idempotence", "true")
                .set("acks", "all");
        }
        Guarantee::AtLeastOnce => {
            // Not settable (config refuses both): no loss, no stored retries.
            cfg.set("enable.idempotence", "true").set("acks", "all");
        }
    }
    cfg
}

/// What `check` shows of the clients of worker 0: every property the
/// consumer and the producer get, each marked with who set it (exactly, or
/// the user's tables), secret values masked. As comment lines, so that the
/// output stays a valid TOML file.
pub fn describe_clients(settings: &Settings) -> String {
    use std::fmt::Write;
    let txn_id = settings.worker_transactional_id(0);
    let client_id = format!("exactly-{txn_id}");
    let r = &settings.kafka.resolved;
    let mut out = String::new();
    let policy = settings.dead_letter.effective_policy();
    let _ = writeln!(
        out,
        "\n# failure policy in force: {}{}",
        policy.as_str(),
        match (&settings.dead_letter.topic, policy) {
            (Some(t), crate::config::FailurePolicy::DeadLetter) => format!(" (to `{t}`)"),
            _ => String::new(),
        }
    );
    for (what, cfg, user) in [
        (
            "consumer",
            consumer_config(settings, &client_id, &txn_id),
            r.for_consumer(),
        ),
        (
            "producer",
            producer_config(settings, &client_id, &txn_id),
            r.for_producer(),
        ),
    ] {
        let _ = writeln!(out, "#\n# the {what} of worker 0, as librdkafka gets it:");
        for (k, v) in cfg.config_map() {
            // Owned properties are refused in the tables, so a key there
            // is the user's value.
            let who = if user.contains_key(k) {
                "yours"
            } else {
                "exactly"
            };
            let v = if crate::config::is_secret_key(k) {
                crate::secrets::MASK
            } else {
                v
            };
            let _ = writeln!(out, "#   {k} = {v:?}   ({who})");
        }
    }
    out
}

/// Checks, before any worker starts, that the cluster answers, that this
/// principal may log in, and that every configured topic exists and may be
/// described: a typo in a topic name, a wrong password or a missing ACL is a
/// clear error at start-up, not a silent idle daemon or an endless produce
/// failure.
pub fn check_cluster(settings: &Settings, timeout: Duration) -> anyhow::Result<()> {
    let probe: BaseConsumer<ProbeContext> = probe_config(settings, "exactly-startup-check")
        .create_with_context(ProbeContext::default())
        .context("cannot create a Kafka client from [kafka.client] and [kafka.consumer]")?;
    fetch_metadata(&probe, settings, None, timeout)?;
    let brokers = &settings.kafka.bootstrap_servers;
    let who = principal(settings);
    // One request per topic: a request for all topics silently leaves out
    // those this principal may not describe, and they would look missing.
    let check = |topic: &str, key: &str, operation: &str| -> anyhow::Result<()> {
        let metadata = fetch_metadata(&probe, settings, Some(topic), timeout)?;
        let error = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.error());
        match error {
            Some(None) => Ok(()),
            Some(Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)) => bail!(
                "{who} is not authorized to use {key} `{topic}` on the cluster at {brokers}: \
                 grant {operation} on Topic:{topic} (docs/security.md lists every ACL exactly needs)"
            ),
            _ => bail!("{key} `{topic}` does not exist on the cluster at {brokers}; create it first"),
        }
    };
    for topic in &settings.input.topics {
        check(topic, "input topic (input.topics)", "READ")?;
    }
    check(
        &settings.output.topic,
        "output topic (output.topic)",
        "WRITE",
    )?;
    if let Some(topic) = &settings.dead_letter.topic {
        check(topic, "dead-letter topic (dead_letter.topic)", "WRITE")?;
    }
    Ok(())
}

/// Asks for the cluster's metadata until it answers or `timeout` ends; a
/// failed login or TLS handshake ends the wait at once.
fn fetch_metadata(
    probe: &BaseConsumer<ProbeContext>,
    settings: &Settings,
    topic: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<rdkafka::metadata::Metadata> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let attempt = left.min(Duration::from_millis(500));
        let result = probe.fetch_metadata(topic, attempt);
        // Error events reach the context only when the client is polled.
        let _ = probe.poll(Duration::ZERO);
        if let Some((code, reason)) = probe.context().refused() {
            return Err(refusal(settings, code, &reason));
        }
        match result {
            Ok(metadata) => return Ok(metadata),
            Err(e) if left <= attempt => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot reach Kafka at kafka.bootstrap_servers = {} within {} s",
                    settings.kafka.bootstrap_servers,
                    timeout.as_secs()
                )))
            }
            Err(_) => {}
        }
    }
}

/// The error for a cluster that refused this client's login or handshake:
/// it names the broker, the protocol, the mechanism and the principal, and
/// librdkafka's reason (with any secret redacted by the writer).
fn refusal(settings: &Settings, code: RDKafkaErrorCode, reason: &str) -> anyhow::Error {
    let table = settings.kafka.resolved.for_consumer();
    let get = |k: &str| table.get(k).map(String::as_str);
    let protocol = get("security.protocol").unwrap_or("plaintext");
    let what = if code == RDKafkaErrorCode::Authentication {
        let mechanism = get("sasl.mechanism")
            .or(get("sasl.mechanisms"))
            .unwrap_or("GSSAPI");
        format!(
            "refused the login of {} with SASL mechanism {mechanism} over {protocol}",
            principal(settings)
        )
    } else {
        format!(
            "failed the TLS handshake over {protocol} (client certificate: {})",
            get("ssl.certificate.location").unwrap_or(if get("ssl.certificate.pem").is_some() {
                "ssl.certificate.pem"
            } else {
                "none"
            })
        )
    };
    anyhow::anyhow!(
        "Kafka at {} {what}: {reason}. Check the credentials in [kafka.client] (docs/security.md)",
        settings.kafka.bootstrap_servers
    )
}

/// Who this client is to the cluster, as far as the configuration says.
pub fn principal(settings: &Settings) -> String {
    let table = settings.kafka.resolved.for_consumer();
    match table.get("sasl.username") {
        Some(user) => format!("principal User:{user}"),
        None => match table.get("ssl.certificate.location") {
            Some(cert) => format!("the principal of certificate {cert}"),
            None => "this client's principal".to_owned(),
        },
    }
}

/// A refusal no retry can overcome: a missing ACL. The start-up ends with
/// it instead of treating it as a look-up that may succeed later.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotAuthorized(pub String);

/// The start-up probes' context: it remembers the first login, TLS or group
/// authorization failure that librdkafka reports, which a metadata or
/// committed-offsets request would only show as a timeout. Error events
/// reach it when the client is polled.
#[derive(Default)]
pub struct ProbeContext {
    refused: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ProbeContext {
    /// The first refusal seen: its code (`SSL` for any TLS handshake
    /// failure) and librdkafka's reason.
    pub fn refused(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }
}

impl ProbeContext {
    fn remember(&self, code: RDKafkaErrorCode, reason: &str) {
        if let Ok(mut r) = self.refused.lock() {
            r.get_or_insert((code, reason.to_owned()));
        }
    }
}

/// What a librdkafka message says was refused, if anything. librdkafka
/// reports a failed TLS handshake inconsistently: as an `SSL` error, as a
/// transport failure whose reason is OpenSSL's ("SSL routines: ... alert bad
/// certificate"), or only as a `FAIL` log line (a broker certificate the
/// client does not trust). The text is what they share.
fn refusal_in(message: &str) -> Option<RDKafkaErrorCode> {
    if message.contains("SASL authentication error") {
        Some(RDKafkaErrorCode::Authentication)
    } else if message.contains("SSL handshake failed") || message.contains("SSL routines") {
        Some(RDKafkaErrorCode::SSL)
    } else {
        None
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if let Some(code) = refusal_in(message) {
            self.remember(code, message);
        }
        forward_log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(
                code @ (RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::GroupAuthorizationFailed),
            ) => self.remember(code, reason),
            _ => match refusal_in(reason) {
                Some(code) => self.remember(code, reason),
                None => {
                    tracing::debug!(target: "librdkafka", error = %error, reason, "start-up check")
                }
            },
        }
    }
}

/// librdkafka's log line, at its level, as rust-rdkafka's default does.
fn forward_log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
    }
}

impl ConsumerContext for ProbeContext {}

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
