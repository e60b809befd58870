//! The broker the tests run against (the shared one, or one of a test
//! binary's own), unique names, and topics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::*;

pub struct Broker {
    pub bootstrap: String,
    /// The replication factor of the topics the tests create: 1 on a
    /// single broker, 3 on the cluster.
    pub replication: i32,
    pub(super) _dir: Option<tempfile::TempDir>,
}

pub static BROKER: OnceLock<Broker> = OnceLock::new();

/// The broker shared by every test of this binary.
pub fn broker() -> &'static Broker {
    BROKER.get_or_init(|| {
        if let Ok(bootstrap) = std::env::var("EXACTLY_TEST_BOOTSTRAP") {
            return Broker {
                bootstrap,
                replication: 1,
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

pub fn start_owned_broker() -> Broker {
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
            replication: 1,
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

pub fn runtime() -> tokio::runtime::Runtime {
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
    let mut topic = NewTopic::new(
        name,
        partitions,
        TopicReplication::Fixed(broker().replication),
    );
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
