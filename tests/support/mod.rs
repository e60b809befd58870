//! The real-broker test harness: one Apache Kafka broker per test binary
//! (started by `scripts/kafka.sh`, or the one named by
//! `EXACTLY_TEST_BOOTSTRAP`), unique topics per test, the daemon as a child
//! process, and readers that see what a read_committed consumer sees.
//!
//! Every wait here waits for an observable condition (a metric, a committed
//! offset, end of partition), bounded by a generous deadline that only turns
//! a hang into a failure.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Deadline for waits that should take seconds; exceeded only by a bug.
pub const WAIT: Duration = Duration::from_secs(120);

pub mod secure;

pub struct Broker {
    pub bootstrap: String,
    _dir: Option<tempfile::TempDir>,
}

static BROKER: OnceLock<Broker> = OnceLock::new();

/// The broker shared by every test of this binary.
pub fn broker() -> &'static Broker {
    BROKER.get_or_init(|| {
        if let Ok(bootstrap) = std::env::var("EXACTLY_TEST_BOOTSTRAP") {
            return Broker {
                bootstrap,
                _dir: None,
            };
        }
        start_owned_broker()
    })
}

/// A broker of this binary's own, whatever `EXACTLY_TEST_BOOTSTRAP` says —
/// for tests that bounce it. Call it before anything else uses [`broker`].
pub fn own_broker() -> &'static Broker {
    BROKER.get_or_init(start_owned_broker)
}

impl Broker {
    /// kill -9 the broker and start it again on the same ports and data;
    /// returns once it serves metadata.
    pub fn bounce_hard(&self) {
        let dir = self
            ._dir
            .as_ref()
            .expect("only an owned broker can be bounced");
        let ok = Command::new(repo_path("scripts/kafka.sh"))
            .args(["restart"])
            .arg(dir.path())
            .arg("--hard")
            .status()
            .expect("run scripts/kafka.sh restart")
            .success();
        assert!(ok, "broker restart failed");
    }

    /// Runs `scripts/kafka.sh <command> DIR` on this (owned) broker.
    fn script(&self, command: &str) {
        let dir = self
            ._dir
            .as_ref()
            .expect("only an owned broker can be stopped and started");
        let ok = Command::new(repo_path("scripts/kafka.sh"))
            .arg(command)
            .arg(dir.path())
            .status()
            .expect("run scripts/kafka.sh")
            .success();
        assert!(ok, "scripts/kafka.sh {command} failed");
    }

    /// kill -9 the broker: an outage begins.
    pub fn kill(&self) {
        self.script("kill");
    }

    /// Starts a killed broker again on the same ports and data; returns once
    /// it serves metadata.
    pub fn resume(&self) {
        self.script("resume");
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to the broker's JVM: `STOP`
    /// freezes it with every connection open, the way a hung or partitioned
    /// broker looks to its clients.
    pub fn signal(&self, signal: &str) {
        let dir = self
            ._dir
            .as_ref()
            .expect("only an owned broker can be signalled");
        let pid = std::fs::read_to_string(dir.path().join("pid")).expect("broker pid file");
        send_signal(pid.trim().parse().expect("broker pid"), signal);
    }
}

fn start_owned_broker() -> Broker {
    {
        let dir = tempfile::Builder::new()
            .prefix("exactly-test-broker")
            .tempdir()
            .expect("temp dir");
        let out = Command::new(repo_path("scripts/kafka.sh"))
            .arg("start")
            .arg(dir.path())
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/kafka.sh");
        assert!(out.status.success(), "scripts/kafka.sh start failed");
        let bootstrap = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Broker {
            bootstrap,
            _dir: Some(dir),
        }
    }
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]);
}

/// Creates a topic with topic-level configs, e.g. `("max.message.bytes", "2000")`.
pub fn create_topic_with(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker().bootstrap)
        .create()
        .unwrap();
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = runtime()
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .unwrap();
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
    // Metadata propagates asynchronously; wait until a client sees every partition.
    let probe = consumer_config("probe").create::<BaseConsumer>().unwrap();
    wait_until(&format!("topic {name} visible"), || {
        probe
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .ok()
            .and_then(|m| m.topics().first().map(|t| t.partitions().len()))
            == Some(partitions as usize)
    });
}

/// The names one test uses: an input and an output topic (created) and a
/// consumer group, none shared with any other test.
pub struct Pipeline {
    pub input: String,
    pub output: String,
    pub group: String,
}

impl Pipeline {
    pub fn create(name: &str, input_partitions: i32, output_partitions: i32) -> Pipeline {
        let p = Pipeline {
            input: unique(&format!("{name}-in")),
            output: unique(&format!("{name}-out")),
            group: unique(&format!("{name}-group")),
        };
        create_topic(&p.input, input_partitions);
        create_topic(&p.output, output_partitions);
        p
    }
}

/// Polls `cond` until it holds; panics after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`, `KILL`) to process `pid`. For
/// `STOP` it returns only once every thread of the process has stopped: the
/// kernel stops a process's threads one after another, after `kill` has
/// returned, and a JVM thread still running for a few milliseconds can
/// answer a request sent "to a frozen broker".
pub fn send_signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
    if signal == "STOP" {
        wait_until(&format!("every thread of process {pid} stopped"), || {
            running_threads(pid) == 0
        });
    }
}

/// How many threads of `pid` are not stopped (state `T`): the state is the
/// field after the parenthesised name in /proc/PID/task/TID/stat.
fn running_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        panic!("process {pid} is gone");
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(
                state.and_then(|r| r.chars().next()),
                Some('T' | 't' | 'Z' | 'X')
            )
        })
        .count()
}

fn consumer_config(group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &broker().bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    c
}

/// An input record written by the test; its value is `<key>:<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The input of a test: `count` records over `keys` keys, `seq` header and
/// value `k<key>:<seq>` so that per-key order can be checked.
pub fn input_records(count: usize, keys: usize) -> Vec<Rec> {
    (0..count)
        .map(|i| {
            let key = format!("k{}", i % keys);
            Rec {
                value: Some(format!("{key}:{i}").into_bytes()),
                key: Some(key.into_bytes()),
                headers: vec![
                    ("seq".into(), Some(i.to_string().into_bytes())),
                    ("null-header".into(), None),
                ],
            }
        })
        .collect()
}

pub fn producer() -> ThreadedProducer<DefaultProducerContext> {
    producer_with(&[])
}

/// A producer with extra properties, e.g. `("compression.type", "zstd")`.
pub fn producer_with(props: &[(&str, &str)]) -> ThreadedProducer<DefaultProducerContext> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &broker().bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    for (k, v) in props {
        cfg.set(*k, *v);
    }
    cfg.create().unwrap()
}

pub fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, r: &Rec) {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
    if let Some(k) = &r.key {
        rec = rec.key(k);
    }
    if let Some(v) = &r.value {
        rec = rec.payload(v);
    }
    let mut rec = rec;
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(_), back)) => {
                p.poll(Duration::from_millis(10));
                rec = back;
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}

/// Writes `records` to `topic` and waits for every acknowledgement.
pub fn produce(topic: &str, records: &[Rec]) {
    produce_with(topic, records, &[]);
}

/// [`produce`] with a producer of extra properties.
pub fn produce_with(topic: &str, records: &[Rec], props: &[(&str, &str)]) {
    let p = producer_with(props);
    for r in records {
        send(&p, topic, r);
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Writes `records` from a background thread at about `per_sec` records a
/// second, so that faults can be injected while input still flows.
pub fn produce_paced(topic: &str, records: Vec<Rec>, per_sec: usize) -> JoinHandle<()> {
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let p = producer();
        let start = Instant::now();
        for (i, r) in records.iter().enumerate() {
            send(&p, &topic, r);
            if i % 100 == 99 {
                // Pacing of a load generator, not synchronisation.
                let due = start + Duration::from_secs_f64((i + 1) as f64 / per_sec as f64);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        }
        // Long enough to outlast a broker outage a test injects meanwhile.
        p.flush(Duration::from_secs(300)).unwrap();
    })
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

/// How output compares with input: each input exactly once, nothing else.
#[derive(Debug, Default)]
pub struct Audit {
    pub missing: usize,
    pub duplicated: usize,
    pub unexpected: usize,
    pub order_violations: usize,
}

impl Audit {
    pub fn is_exactly_once(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

/// Compares a passthrough's output with its input: counts of each record,
/// and per-key order of the `seq` header.
pub fn audit(input: &[Rec], output: &[OutRec]) -> Audit {
    let mut expected: HashMap<&Rec, usize> = HashMap::new();
    for r in input {
        *expected.entry(r).or_default() += 1;
    }
    let mut seen: HashMap<&Rec, usize> = HashMap::new();
    for o in output {
        *seen.entry(&o.rec).or_default() += 1;
    }
    let mut a = Audit::default();
    for (r, n) in &expected {
        let got = seen.get(r).copied().unwrap_or(0);
        if got == 0 {
            a.missing += n;
        } else if got > *n {
            a.duplicated += got - n;
        }
    }
    a.unexpected = seen
        .iter()
        .filter(|(r, _)| !expected.contains_key(*r))
        .map(|(_, n)| n)
        .sum();
    // Per key, in output offset order, seq must increase.
    // (output partition, key) -> [(offset, seq)]
    type ByKey = BTreeMap<(i32, Vec<u8>), Vec<(i64, u64)>>;
    let mut by_key = ByKey::new();
    for o in output {
        let seq = seq_of(&o.rec);
        by_key
            .entry((o.partition, o.rec.key.clone().unwrap_or_default()))
            .or_default()
            .push((o.offset, seq));
    }
    for (_, mut v) in by_key {
        v.sort();
        a.order_violations += v.windows(2).filter(|w| w[1].1 <= w[0].1).count();
    }
    a
}

/// Reads `output` as a read_committed consumer and asserts that it holds
/// each of `input` once, with per-key order kept; `context` is printed on
/// failure.
pub fn assert_exactly_once_in_order(input: &[Rec], output: &str, context: &str) {
    let a = audit(input, &read_all(output, "read_committed"));
    assert!(a.is_exactly_once(), "{a:?} {context}");
    assert_eq!(a.order_violations, 0, "{a:?} {context}");
}

pub fn seq_of(r: &Rec) -> u64 {
    r.headers
        .iter()
        .find(|(k, _)| k == "seq")
        .and_then(|(_, v)| v.as_ref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Configuration of a test daemon.
pub struct DaemonConfig {
    pub group: String,
    pub input: String,
    pub output: String,
    pub transactional_id: String,
    pub guarantee: &'static str,
    pub commit_interval_ms: u64,
    /// `processing.min_commit_interval_ms`; the daemon's default when unset.
    pub min_commit_interval_ms: Option<u64>,
    pub max_batch_records: usize,
    /// TOML appended to the configuration (`[[transform]]`, `[dead_letter]`, ...).
    pub extra_toml: String,
    pub extra_env: Vec<(String, String)>,
    /// The daemon's brokers, when not the harness's own address (a secured
    /// listener of the same broker).
    pub bootstrap: Option<String>,
}

impl DaemonConfig {
    pub fn new(group: &str, input: &str, output: &str, transactional_id: &str) -> Self {
        DaemonConfig {
            group: group.into(),
            input: input.into(),
            output: output.into(),
            transactional_id: transactional_id.into(),
            guarantee: "exactly_once",
            commit_interval_ms: 100,
            min_commit_interval_ms: None,
            max_batch_records: 2_000,
            extra_toml: String::new(),
            extra_env: Vec::new(),
            bootstrap: None,
        }
    }

    /// Transactions that close only at `ms` (or at the size limits), never
    /// early because nothing more is ready: a test that needs a transaction
    /// to stay open, for a kill or a stop to find it, asks for this.
    pub fn fixed_cadence(&mut self, ms: u64) {
        self.commit_interval_ms = ms;
        self.min_commit_interval_ms = Some(ms);
    }

    fn toml(&self, http_port: u16) -> String {
        let min_interval = match self.min_commit_interval_ms {
            Some(ms) => format!("min_commit_interval_ms = {ms}"),
            None => String::new(),
        };
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
transactional_id = "{txid}"

[kafka.consumer]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"

[input]
topics = ["{input}"]

[output]
topic = "{output}"

[processing]
guarantee = "{guarantee}"
commit_interval_ms = {interval}
{min_interval}
max_batch_records = {max_batch}

[http]
listen = "127.0.0.1:{http_port}"

{extra}
"#,
            bootstrap = self.bootstrap.as_deref().unwrap_or(&broker().bootstrap),
            group = self.group,
            txid = self.transactional_id,
            input = self.input,
            output = self.output,
            guarantee = self.guarantee,
            interval = self.commit_interval_ms,
            max_batch = self.max_batch_records,
            extra = self.extra_toml,
        )
    }
}

/// A daemon running as a child process.
pub struct Daemon {
    child: Child,
    pub http_port: u16,
    pub log: PathBuf,
    /// The transactional id it runs under, to name a kept log.
    name: String,
    _dir: tempfile::TempDir,
}

/// Where daemons' logs are copied when the daemons end (see
/// [`keep_daemon_logs`]).
static KEPT_LOGS: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
static KEPT_SEQ: AtomicU32 = AtomicU32::new(0);

/// From now on, every daemon's whole log is copied into `dir` when the
/// daemon is dropped (killed, replaced or at the end of a test), named by
/// the order of the drops and the daemon's transactional id: a failed audit
/// can then be read against what every replica did, not only the last one.
pub fn keep_daemon_logs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    *KEPT_LOGS.lock().unwrap() = Some(dir.to_owned());
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    pub fn start(cfg: &DaemonConfig) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let path = dir.path().join("exactly.toml");
        std::fs::write(&path, cfg.toml(http_port)).unwrap();
        let log = dir.path().join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_exactly"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info,exactly=debug")
            .envs(cfg.extra_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start exactly");
        Daemon {
            child,
            http_port,
            log,
            name: cfg.transactional_id.clone(),
            _dir: dir,
        }
    }

    /// Starts a daemon on `cfg` and waits until it is ready and its group has
    /// committed the end of the (already written) input.
    pub fn run_to_end(cfg: &DaemonConfig) -> Daemon {
        let mut d = Daemon::start(cfg);
        d.wait_ready();
        wait_caught_up(&cfg.group, &cfg.input, &mut [&mut d]);
        d
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        send_signal(self.child.id(), name);
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Panics with the log if the daemon has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("daemon exited ({status}):\n{}", self.log_text());
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET `path` on the daemon's HTTP port: (status, body), or None if it
    /// does not answer yet.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_owned();
        Some((status, body))
    }

    /// Value of a metric sample (e.g. `exactly_records_produced_total` or
    /// `exactly_transactions_total{outcome="committed"}`), 0 if absent.
    pub fn metric(&self, sample: &str) -> f64 {
        self.http_get("/metrics")
            .and_then(|(_, body)| {
                body.lines()
                    .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0.0)
    }

    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "daemon exited ({status}) before ready:\n{}",
                    self.log_text()
                );
            }
            if matches!(self.http_get("/readyz"), Some((200, _))) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "daemon never ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the daemon holds at least one partition (readiness does
    /// not say so: an idle member is ready too).
    pub fn wait_assigned(&mut self) {
        self.wait_metric("exactly_assigned_partitions", 1.0, "never held a partition");
    }

    /// Waits until the daemon reports at least `n` committed output records.
    pub fn wait_produced(&mut self, n: f64) {
        self.wait_metric(
            "exactly_records_produced_total",
            n,
            &format!("stuck below {n} outputs"),
        );
    }

    /// Waits until `sample` reaches `at_least`; panics with the log if the
    /// daemon exits first or the wait runs out (`what` says how).
    fn wait_metric(&mut self, sample: &str, at_least: f64, what: &str) {
        let start = Instant::now();
        while self.metric(sample) < at_least {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("daemon exited ({status}):\n{}", self.log_text());
            }
            assert!(
                start.elapsed() < WAIT,
                "daemon {what}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit: (status, time to exit).
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let start = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < WAIT,
                "daemon ignored SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, start.elapsed())
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < WAIT,
                "daemon did not exit:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- last lines of daemon pid {} log ---", self.child.id());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = KEPT_LOGS.lock().ok().and_then(|d| d.clone()) {
            let n = KEPT_SEQ.fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::copy(&self.log, dir.join(format!("{n:03}-{}.log", self.name)));
        }
    }
}

/// Runs `exactly verify --json` for `group` over `input` and `outputs`
/// (plus `extra` flags) against the test broker: (exit code, report, stderr).
pub fn verify_json(
    group: &str,
    input: &str,
    outputs: &[&str],
    extra: &[&str],
) -> (i32, serde_json::Value, String) {
    let bootstrap = &broker().bootstrap;
    let mut args = vec![
        "verify",
        "--bootstrap-servers",
        bootstrap,
        "--group",
        group,
        "--input",
        input,
        "--json",
    ];
    for o in outputs {
        args.extend(["--output", o]);
    }
    args.extend_from_slice(extra);
    let (code, out, err) = exactly(&args, &[]);
    (
        code,
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null),
        err,
    )
}

/// Runs `exactly` with arguments, returning (exit code, stdout, stderr).
pub fn exactly(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_exactly"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A log line without its colour codes.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
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
