//! Typed configuration: a TOML file plus `EXACTLY__SECTION__KEY` environment
//! overrides, validated before anything touches Kafka.
//!
//! Every error names the key that is wrong and what would be right; the CLI
//! turns them into exit code 2.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// exactly's `transaction.timeout.ms`: an abandoned transaction (a replica
/// that never comes back under the same id) blocks read_committed readers
/// at most this long.
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 10_000;

/// Prefix of environment overrides: `EXACTLY__KAFKA__BOOTSTRAP_SERVERS`.
pub const ENV_PREFIX: &str = "EXACTLY";
const ENV_PREFIX_SEP: &str = "EXACTLY__";

/// The whole configuration of one daemon process.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the cluster is and who this replica is.
    pub kafka: KafkaSettings,
    /// What to read.
    pub input: InputSettings,
    /// Where results go by default.
    pub output: OutputSettings,
    /// Delivery guarantee and transaction sizing.
    #[serde(default)]
    pub processing: ProcessingSettings,
    /// The HTTP endpoint for metrics and probes.
    #[serde(default)]
    pub http: HttpSettings,
    /// Log format and level.
    #[serde(default)]
    pub log: LogSettings,
    /// The transform chain: `[[transform]]` tables applied in order, each
    /// with a `type` (filter, map, key, route, headers, explode, or a
    /// registered custom step). Empty: records pass through unchanged.
    #[serde(default)]
    pub transform: Vec<serde_json::Value>,
    /// Where records go that the chain cannot handle.
    #[serde(default)]
    pub dead_letter: DeadLetterSettings,
}

/// What happens to a record that cannot be decoded, transformed or produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum FailurePolicy {
    /// Write the original record, with error headers, to the dead-letter
    /// topic inside the same transaction.
    DeadLetter,
    /// Count it and move on.
    Skip,
    /// Stop the worker with the error; the record's offset is not committed.
    Fail,
}

impl TryFrom<String> for FailurePolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "dead_letter" => Ok(FailurePolicy::DeadLetter),
            "skip" => Ok(FailurePolicy::Skip),
            "fail" => Ok(FailurePolicy::Fail),
            other => Err(format!(
                "`{other}` is not a policy; use \"dead_letter\", \"skip\" or \"fail\""
            )),
        }
    }
}

/// `[dead_letter]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterSettings {
    /// The dead-letter topic.
    pub topic: Option<String>,
    /// `dead_letter` (the default when a topic is set), `skip`, or `fail`
    /// (the default without a topic).
    pub policy: Option<FailurePolicy>,
}

impl FailurePolicy {
    /// The name the configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::DeadLetter => "dead_letter",
            FailurePolicy::Skip => "skip",
            FailurePolicy::Fail => "fail",
        }
    }
}

impl DeadLetterSettings {
    /// The policy in force.
    pub fn effective_policy(&self) -> FailurePolicy {
        match (self.policy, &self.topic) {
            (Some(p), _) => p,
            (None, Some(_)) => FailurePolicy::DeadLetter,
            (None, None) => FailurePolicy::Fail,
        }
    }
}

/// `[kafka]`: the cluster, the consumer group and this replica's identity.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    pub bootstrap_servers: String,
    /// Consumer group shared by all replicas of one deployment.
    pub group_id: String,
    /// Stable identity of this replica's transactional producer(s). A
    /// restarted replica must come back with the same id, so that it fences
    /// its dead predecessor and aborts its open transaction at once.
    /// Default: `<group_id>-<hostname>`.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// How long start-up waits for the cluster to answer before giving up
    /// with an error naming the bootstrap servers.
    #[serde(default = "default_startup_timeout_ms")]
    pub startup_timeout_ms: u64,
    /// Static group membership (KIP-345): each worker joins with
    /// `group.instance.id` = its transactional id, so a restarted replica
    /// takes its partitions back at once, without a rebalance. The price: a
    /// replica that stops for good leaves its partitions idle for
    /// `session.timeout.ms`, since static members do not leave the group.
    #[serde(default = "yes")]
    pub static_membership: bool,
    /// librdkafka properties for every client the daemon makes (consumers,
    /// producers, start-up look-ups, `verify`): the home of security
    /// settings. `[kafka.consumer]` and `[kafka.producer]` win over it.
    /// A value may be a `${file:PATH}` or `${env:NAME}` reference.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
    /// librdkafka consumer properties, passed through unchanged.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka producer properties, passed through unchanged.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
    /// The three tables with their references read; filled by
    /// [`Settings::parse`]. Never printed: it holds secrets.
    #[serde(skip)]
    pub resolved: ResolvedTables,
}

/// The passthrough tables as librdkafka gets them: every `${file:…}` and
/// `${env:…}` reference read once, at load time.
#[derive(Clone, Default)]
pub struct ResolvedTables {
    /// `[kafka.client]`
    pub client: BTreeMap<String, String>,
    /// `[kafka.consumer]`
    pub consumer: BTreeMap<String, String>,
    /// `[kafka.producer]`
    pub producer: BTreeMap<String, String>,
}

impl fmt::Debug for ResolvedTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResolvedTables { .. }")
    }
}

impl ResolvedTables {
    /// The consumer's properties: `[kafka.client]`, then `[kafka.consumer]`.
    pub fn for_consumer(&self) -> BTreeMap<String, String> {
        merged(&self.client, &self.consumer)
    }

    /// The producer's properties: `[kafka.client]`, then `[kafka.producer]`.
    pub fn for_producer(&self) -> BTreeMap<String, String> {
        merged(&self.client, &self.producer)
    }
}

fn merged(
    shared: &BTreeMap<String, String>,
    own: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all = shared.clone();
    all.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

fn default_startup_timeout_ms() -> u64 {
    30_000
}

/// `[input]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSettings {
    /// Topics to consume; all replicas share their partitions.
    pub topics: Vec<String>,
    /// How values are read by expressions: `json` (default), `string`, `bytes`.
    #[serde(default)]
    pub format: crate::transform::Format,
}

/// `[output]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSettings {
    /// Topic that records go to unless a transform step routes them elsewhere.
    pub topic: String,
    /// Stamp each output with lineage headers (source topic, partition,
    /// offset, output index) so that `exactly verify` can audit it.
    #[serde(default = "yes")]
    pub lineage: bool,
    /// How values produced by expressions are written: `json` (default),
    /// `string`, `bytes`.
    #[serde(default)]
    pub format: crate::transform::Format,
    /// Let a `route` step write into an input topic. Off by default: such a
    /// record is consumed again, and a route that always matches loops
    /// forever. A route that names an input topic is a configuration error,
    /// and a record routed to one at run time a record failure.
    #[serde(default)]
    pub allow_routes_to_input: bool,
}

fn yes() -> bool {
    true
}

/// Which delivery guarantee the daemon keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Guarantee {
    /// Outputs and input offsets commit in one Kafka transaction.
    ExactlyOnce,
    /// Outputs are acknowledged, then offsets are committed by the consumer;
    /// a crash in between duplicates outputs.
    AtLeastOnce,
}

impl TryFrom<String> for Guarantee {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "exactly_once" => Ok(Guarantee::ExactlyOnce),
            "at_least_once" => Ok(Guarantee::AtLeastOnce),
            other => Err(format!(
                "`{other}` is not a guarantee; use \"exactly_once\" or \"at_least_once\""
            )),
        }
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guarantee::ExactlyOnce => "exactly_once",
            Guarantee::AtLeastOnce => "at_least_once",
        })
    }
}

/// `[processing]`: the guarantee and when a transaction closes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingSettings {
    /// `exactly_once` (default) or `at_least_once`.
    pub guarantee: Guarantee,
    /// A transaction closes at the latest this long after the previous
    /// commit started ...
    pub commit_interval_ms: u64,
    /// ... and, under exactly-once, as soon as nothing more is ready to
    /// consume, but no sooner than this long after the previous commit
    /// started. Unset: `commit_interval_ms`, the fixed cadence (on the
    /// benchmark machine early closes lowered the median latency and raised
    /// the p99; docs/tuning.md has the figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_commit_interval_ms: Option<u64>,
    /// ... or once it holds this many input records ...
    pub max_batch_records: usize,
    /// ... or this many bytes of input (key + value), whichever comes first.
    pub max_batch_bytes: usize,
    /// Workers in this process: each is one consumer and one transactional
    /// producer on its own thread, with its own transactional id suffix.
    pub workers: usize,
    /// Upper bound for a graceful stop (SIGTERM/SIGINT): finish the open
    /// transaction, leave the group, exit.
    pub shutdown_timeout_ms: u64,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        ProcessingSettings {
            guarantee: Guarantee::ExactlyOnce,
            commit_interval_ms: 100,
            min_commit_interval_ms: None,
            max_batch_records: 100_000,
            max_batch_bytes: 16 * 1024 * 1024,
            workers: 1,
            shutdown_timeout_ms: 8_000,
        }
    }
}

impl ProcessingSettings {
    /// `min_commit_interval_ms` as it applies: `commit_interval_ms` (the
    /// fixed cadence) when unset, never above it.
    pub fn effective_min_commit_interval_ms(&self) -> u64 {
        self.min_commit_interval_ms
            .unwrap_or(self.commit_interval_ms)
            .min(self.commit_interval_ms)
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address for `/metrics`, `/healthz` and `/readyz`.
    pub listen: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "0.0.0.0:9464".to_owned(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "`{other}` is not a log format; use \"text\" or \"json\""
            )),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `exactly=debug,rdkafka=warn`;
    /// `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// A configuration problem, reported before anything touches Kafka.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or is not TOML.
    #[error("cannot read configuration {path}: {message}")]
    Source { path: String, message: String },
    /// A key is unknown, missing or has a value of the wrong kind.
    #[error("invalid configuration at `{key}`{}: {message}", shown_origin(.origin))]
    Invalid {
        key: String,
        message: String,
        /// Where the value came from: `FILE:LINE:COLUMN: `text`` or
        /// `environment variable NAME`; `None` for a default.
        origin: Option<String>,
    },
}

fn shown_origin(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|o| format!(" ({o})"))
        .unwrap_or_default()
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
        origin: None,
    }
}

/// Passthrough properties that would break the exactly-once contract if a
/// user could set them; the daemon sets them itself.
const CONSUMER_OWNED: &[(&str, &str)] = &[
    (
        "isolation.level",
        "the daemon always reads with read_committed",
    ),
    (
        "enable.auto.commit",
        "offsets are committed by the daemon, inside the transaction",
    ),
    (
        "enable.auto.offset.store",
        "the daemon tracks positions itself",
    ),
    ("group.id", "set it as kafka.group_id"),
    (
        "group.instance.id",
        "derived from the transactional id; see kafka.static_membership",
    ),
    ("bootstrap.servers", "set it as kafka.bootstrap_servers"),
];
const PRODUCER_OWNED_EXACTLY_ONCE: &[(&str, &str)] = &[
    (
        "transactional.id",
        "set it as kafka.transactional_id (stable per replica)",
    ),
    (
        "enable.idempotence",
        "transactions require the idempotent producer",
    ),
    ("acks", "transactions require acks=all"),
    (
        "request.required.acks",
        "librdkafka's name for acks; transactions require acks=all",
    ),
    ("bootstrap.servers", "set it as kafka.bootstrap_servers"),
];
/// at_least_once promises no loss: a write counts once every in-sync replica
/// has it (`acks=all`), and a retried write is not stored twice
/// (idempotence). Neither may be weakened.
const PRODUCER_OWNED_AT_LEAST_ONCE: &[(&str, &str)] = &[
    (
        "transactional.id",
        "at_least_once mode does not use transactions",
    ),
    (
        "enable.idempotence",
        "the idempotent producer keeps retried writes from being stored twice or out of order",
    ),
    (
        "acks",
        "an output counts as written only when every in-sync replica has it (acks=all); \
         fewer acknowledgements lose records when a leader fails",
    ),
    (
        "request.required.acks",
        "librdkafka's name for acks; outputs need acks=all",
    ),
    ("bootstrap.servers", "set it as kafka.bootstrap_servers"),
];

impl Settings {
    /// Reads `path`, applies environment overrides from the process
    /// environment, and validates the result.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`Settings::load`] with an explicit environment, for tests.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Source {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse_file(&text, &path.display().to_string(), env).map_err(|e| match e {
            ConfigError::Source { message, .. } => ConfigError::Source {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text with environment overrides and validates it.
    pub fn parse(
        toml_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        Self::parse_file(toml_text, "<text>", env)
    }

    /// [`Settings::parse`] of the text of `file` (named in errors).
    pub fn parse_file(
        toml_text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        // Passthrough properties from the environment are librdkafka strings:
        // they are set as given, never parsed as numbers or booleans (a
        // password `0042` stays `0042`). Every other override is parsed by
        // the type of its key (env.rs).
        let (table_env, env): (Vec<_>, Vec<_>) = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX_SEP))
            .partition(|(k, _)| passthrough_env_key(k).is_some());
        let (overrides, values) = env::collect(env)?;
        let with_origin = |e: ConfigError| match e {
            ConfigError::Invalid {
                key,
                message,
                origin: None,
            } => {
                let unknown = origin::unknown_field(&message);
                let origin = origin::locate(
                    &key,
                    unknown.as_ref().map(|(field, _)| field.as_str()),
                    file,
                    toml_text,
                    &overrides,
                    &table_env,
                );
                let message = unknown.map(|(_, hint)| hint).unwrap_or(message);
                ConfigError::Invalid {
                    key,
                    message,
                    origin,
                }
            }
            other => other,
        };
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(toml_text, config::FileFormat::Toml));
        for (key, value) in values {
            builder = builder
                .set_override(key.as_str(), value)
                .map_err(|e| invalid(key.as_str(), e.to_string()))?;
        }
        let layered = builder.build().map_err(|e| ConfigError::Source {
            path: file.to_owned(),
            message: e.to_string(),
        })?;
        let mut settings: Settings = serde_path_to_error::deserialize(layered).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            with_origin(invalid(
                if key == "." { "<root>".to_owned() } else { key },
                strip_key_suffix(&message),
            ))
        })?;
        for (name, value) in &table_env {
            if let Some((table, key)) = passthrough_env_key(name) {
                let k = &mut settings.kafka;
                let map = match table {
                    Table::Client => &mut k.client,
                    Table::Consumer => &mut k.consumer,
                    Table::Producer => &mut k.producer,
                };
                map.insert(key, value.clone());
            }
        }
        let k = &mut settings.kafka;
        k.client = dotted_keys(std::mem::take(&mut k.client));
        k.consumer = dotted_keys(std::mem::take(&mut k.consumer));
        k.producer = dotted_keys(std::mem::take(&mut k.producer));
        settings.validate().map_err(with_origin)?;
        settings.kafka.resolved = settings.kafka.resolve().map_err(with_origin)?;
        settings.kafka.check_security().map_err(with_origin)?;
        properties::check(&settings).map_err(with_origin)?;
        Ok(settings)
    }

    /// Checks the rules that types alone cannot express.
    fn validate(&self) -> Result<(), ConfigError> {
        non_empty("kafka.bootstrap_servers", &self.kafka.bootstrap_servers)?;
        non_empty("kafka.group_id", &self.kafka.group_id)?;
        if let Some(id) = &self.kafka.transactional_id {
            non_empty("kafka.transactional_id", id)?;
        }
        if self.input.topics.is_empty() {
            return Err(invalid(
                "input.topics",
                "name at least one topic to consume",
            ));
        }
        for (i, t) in self.input.topics.iter().enumerate() {
            check_topic_name(&format!("input.topics[{i}]"), t)?;
            if self.input.topics[..i].contains(t) {
                return Err(invalid(
                    format!("input.topics[{i}]"),
                    format!("`{t}` is listed twice"),
                ));
            }
        }
        self.check_identity()?;
        self.check_routes()?;
        if let Some((name, first, again)) =
            crate::transform::registry::duplicate_step_name(&self.transform)
        {
            return Err(invalid(
                format!("transform[{again}].name"),
                format!(
                    "`{name}` already names transform[{first}]; step names must be unique in the chain (they label metrics and dead letters)"
                ),
            ));
        }
        check_topic_name("output.topic", &self.output.topic)?;
        if let Some(t) = &self.dead_letter.topic {
            check_topic_name("dead_letter.topic", t)?;
            if self.input.topics.contains(t) || *t == self.output.topic {
                return Err(invalid(
                    "dead_letter.topic",
                    format!("`{t}` is also an input or the output topic; dead letters need a topic of their own"),
                ));
            }
        }
        if self.dead_letter.policy == Some(FailurePolicy::DeadLetter)
            && self.dead_letter.topic.is_none()
        {
            return Err(invalid(
                "dead_letter.policy",
                "\"dead_letter\" needs dead_letter.topic",
            ));
        }
        if self.input.topics.contains(&self.output.topic) {
            return Err(invalid(
                "output.topic",
                format!(
                    "`{}` is also an input topic; the daemon would consume its own output forever",
                    self.output.topic
                ),
            ));
        }
        let p = &self.processing;
        positive("kafka.startup_timeout_ms", self.kafka.startup_timeout_ms)?;
        positive("processing.commit_interval_ms", p.commit_interval_ms)?;
        if let Some(min) = p
            .min_commit_interval_ms
            .filter(|m| *m > p.commit_interval_ms)
        {
            return Err(invalid(
                "processing.min_commit_interval_ms",
                format!(
                    "{min} ms is above processing.commit_interval_ms ({} ms): the least time \
                     between commits cannot exceed the most; set both equal for a fixed cadence",
                    p.commit_interval_ms
                ),
            ));
        }
        positive("processing.max_batch_records", p.max_batch_records as u64)?;
        positive("processing.max_batch_bytes", p.max_batch_bytes as u64)?;
        positive("processing.shutdown_timeout_ms", p.shutdown_timeout_ms)?;
        if p.workers == 0 || p.workers > 64 {
            return Err(invalid(
                "processing.workers",
                format!("must be between 1 and 64, got {}", p.workers),
            ));
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                format!(
                    "`{}` is not a socket address such as 0.0.0.0:9464",
                    self.http.listen
                ),
            ));
        }
        let producer_owned = match p.guarantee {
            Guarantee::ExactlyOnce => PRODUCER_OWNED_EXACTLY_ONCE,
            Guarantee::AtLeastOnce => PRODUCER_OWNED_AT_LEAST_ONCE,
        };
        let k = &self.kafka;
        for (table, map, owned) in [
            ("consumer", &k.consumer, CONSUMER_OWNED),
            ("producer", &k.producer, producer_owned),
            ("client", &k.client, CONSUMER_OWNED),
            ("client", &k.client, producer_owned),
        ] {
            for (key, why) in owned {
                if map.contains_key(*key) {
                    return Err(invalid(
                        format!("kafka.{table}.\"{key}\""),
                        format!("this property is managed by exactly and cannot be set: {why}"),
                    ));
                }
            }
        }
        if p.guarantee == Guarantee::ExactlyOnce {
            let timeout = self.transaction_timeout_ms()?;
            if p.commit_interval_ms >= timeout {
                // The coordinator aborts a transaction older than its
                // timeout; the producer then sees itself fenced and every
                // transaction would end that way.
                return Err(invalid(
                    "processing.commit_interval_ms",
                    format!(
                        "{} ms is not below kafka.producer.\"transaction.timeout.ms\" ({timeout} ms): \
                         every transaction would be aborted by the coordinator before it commits; \
                         lower the interval or raise the timeout (leave room for the commit itself)",
                        p.commit_interval_ms
                    ),
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid(
                "log.level",
                format!(
                    "`{}` is not a tracing filter such as `info` or `exactly=debug`: {e}",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    /// Under static membership the transactional id is also the
    /// consumer's `group.instance.id`, which Kafka restricts to 1-249 of
    /// `[a-zA-Z0-9._-]`; without `kafka.transactional_id` that id is made
    /// from `kafka.group_id`, so the group id must keep to the same set.
    fn check_identity(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if let Some(c) = k.group_id.chars().find(|c| c.is_control()) {
            return Err(invalid(
                "kafka.group_id",
                format!("holds the control character {c:?}"),
            ));
        }
        if !k.static_membership {
            return Ok(());
        }
        let why = "under static membership the transactional id is also the                    group.instance.id, which Kafka limits to 1-249 of a-z A-Z 0-9 . _ -";
        // The longest id a worker gets: `<base>-w63`.
        let suffix = if self.processing.workers > 1 { 4 } else { 0 };
        match &k.transactional_id {
            Some(id) if !is_legal_instance_id(id, suffix) => Err(invalid(
                "kafka.transactional_id",
                format!("`{id}` is not a legal id: {why}"),
            )),
            None if !is_legal_instance_id(&k.group_id, suffix + 2) => Err(invalid(
                "kafka.group_id",
                format!(
                    "`{}` cannot make the default transactional id `<group_id>-<hostname>`:                      {why}; set kafka.transactional_id, or use such a group id",
                    k.group_id
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A `route` step whose expression names an input topic as a string
    /// would write records back into the input; refused unless
    /// `output.allow_routes_to_input` says it is meant.
    fn check_routes(&self) -> Result<(), ConfigError> {
        if self.output.allow_routes_to_input {
            return Ok(());
        }
        for (i, step) in self.transform.iter().enumerate() {
            if step.get("type").and_then(|t| t.as_str()) != Some("route") {
                continue;
            }
            let Some(expr) = step.get("expr").and_then(|e| e.as_str()) else {
                continue;
            };
            if let Some(t) = self
                .input
                .topics
                .iter()
                .find(|t| expr.contains(&format!("\"{t}\"")))
            {
                return Err(invalid(
                    format!("transform[{i}].expr"),
                    format!(
                        "this route can send records to `{t}`, an input topic: they would be \
                         consumed again, and a route that matches them again loops forever; \
                         set output.allow_routes_to_input = true if that is meant"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `transaction.timeout.ms` of the producer: the user's, or exactly's
    /// default.
    pub fn transaction_timeout_ms(&self) -> Result<u64, ConfigError> {
        let k = &self.kafka;
        match k
            .producer
            .get("transaction.timeout.ms")
            .or(k.client.get("transaction.timeout.ms"))
        {
            None => Ok(DEFAULT_TRANSACTION_TIMEOUT_MS),
            Some(v) => v.trim().parse().map_err(|_| {
                invalid(
                    "kafka.producer.\"transaction.timeout.ms\"",
                    format!("`{v}` is not a number of milliseconds"),
                )
            }),
        }
    }

    /// The transactional id this replica's producers derive theirs from.
    pub fn base_transactional_id(&self) -> String {
        match &self.kafka.transactional_id {
            Some(id) => id.clone(),
            None => {
                let host = hostname::get()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".to_owned());
                format!("{}-{}", self.kafka.group_id, host)
            }
        }
    }

    /// The transactional id of worker `index`: the base id itself when the
    /// process runs one worker, `<base>-w<index>` otherwise.
    pub fn worker_transactional_id(&self, index: usize) -> String {
        let base = self.base_transactional_id();
        if self.processing.workers == 1 {
            base
        } else {
            format!("{base}-w{index}")
        }
    }

    /// The effective settings as TOML, with secret-looking values masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.kafka.transactional_id = Some(self.base_transactional_id());
        let k = &mut shown.kafka;
        for map in [&mut k.client, &mut k.consumer, &mut k.producer] {
            for (key, v) in map.iter_mut() {
                // A reference names where the secret is, not the secret.
                if is_secret_key(key) && !crate::secrets::is_reference(v) {
                    *v = crate::secrets::MASK.to_owned();
                }
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

pub use crate::secrets::is_secret_key;

fn non_empty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(())
    }
}

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(invalid(key, "must be greater than 0"))
    } else {
        Ok(())
    }
}

pub use crate::transform::is_legal_topic_name;

/// Kafka's rule for `group.instance.id` (the same set as topic names, up
/// to 249 characters), with room for `reserve` more characters.
fn is_legal_instance_id(id: &str, reserve: usize) -> bool {
    !id.is_empty()
        && id.len() + reserve <= 249
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn check_topic_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if is_legal_topic_name(name) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("`{name}` is not a legal Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
        ))
    }
}

/// Environment names cannot hold dots, so inside the passthrough tables an
/// underscore stands for a dot: `EXACTLY__KAFKA__CONSUMER__SESSION_TIMEOUT_MS`
/// sets `session.timeout.ms`. The one librdkafka property that a string can
/// set and whose name holds an underscore, `log_level`, keeps it.
fn dotted_keys(map: BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter()
        .map(|(k, v)| (dotted_keys_one(&k), v))
        .collect()
}

/// One passthrough key with its underscores turned into dots.
fn dotted_keys_one(key: &str) -> String {
    if UNDERSCORED_PROPERTIES.contains(&key) {
        key.to_owned()
    } else {
        key.replace('_', ".")
    }
}

/// Which passthrough table an environment variable sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Client,
    Consumer,
    Producer,
}

impl Table {
    /// The table's name under `[kafka]`.
    fn name(self) -> &'static str {
        match self {
            Table::Client => "client",
            Table::Consumer => "consumer",
            Table::Producer => "producer",
        }
    }
}

/// `EXACTLY__KAFKA__CLIENT__SASL_PASSWORD` → (client, `sasl_password`); the
/// underscores become dots later, as for keys written in the file.
fn passthrough_env_key(name: &str) -> Option<(Table, String)> {
    let rest = name.strip_prefix(ENV_PREFIX_SEP)?;
    let (section, rest) = rest.split_once("__")?;
    if !section.eq_ignore_ascii_case("kafka") {
        return None;
    }
    let (table, key) = rest.split_once("__")?;
    let table = match table.to_ascii_lowercase().as_str() {
        "client" => Table::Client,
        "consumer" => Table::Consumer,
        "producer" => Table::Producer,
        _ => return None,
    };
    (!key.is_empty()).then(|| (table, key.to_ascii_lowercase()))
}

/// librdkafka properties spelt with an underscore (the others are callbacks,
/// which no configuration file can set).
const UNDERSCORED_PROPERTIES: &[&str] = &["log_level"];

/// `config` appends " for key `a.b`" to its messages; our error names the key
/// already.
fn strip_key_suffix(message: &str) -> String {
    match message.find(" for key `") {
        Some(at) => {
            let rest = &message[at + " for key `".len()..];
            let after = rest.find('`').map(|i| &rest[i + 1..]).unwrap_or("");
            format!("{}{}", &message[..at], after)
        }
        None => message.to_owned(),
    }
}

mod client;
mod env;
mod origin;
mod properties;
#[cfg(test)]
mod tests;
