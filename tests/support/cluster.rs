//! The three-broker cluster (`scripts/cluster.sh`): replication factor 3,
//! `min.insync.replicas=2`, each node a broker and a KRaft controller. A
//! test binary that starts it makes it the harness's broker (every topic it
//! creates then has three replicas), and drives its faults: a node killed,
//! restarted, cut off from the network; and asks who coordinates what.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::*;

pub struct Cluster {
    dir: tempfile::TempDir,
    pub bootstrap: String,
    /// Whether the nodes run in network namespaces, so that one can be cut off.
    pub netns: bool,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// Whether this machine can run the cluster in network namespaces (root,
/// `ip netns`): the isolation fault needs it.
pub fn netns_available() -> bool {
    let name = format!("exactly-probe-{}", std::process::id());
    let ok = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    ok(&["netns", "add", &name]) && ok(&["netns", "del", &name])
}

/// The cluster of this test binary, started on first use and made the
/// harness's broker. Call it before anything else uses [`broker`]. It stops
/// (and its namespaces go) when the test process ends, however it ends:
/// `scripts/cluster.sh start --owner-pid` watches the process.
pub fn cluster(netns: bool) -> &'static Cluster {
    let c = CLUSTER.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("exactly-cluster")
            .tempdir()
            .expect("temp dir");
        let mut cmd = Command::new(repo_path("scripts/cluster.sh"));
        cmd.arg("start")
            .arg(dir.path())
            .arg("--owner-pid")
            .arg(std::process::id().to_string());
        if netns {
            cmd.arg("--netns");
        }
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/cluster.sh");
        assert!(out.status.success(), "scripts/cluster.sh start failed");
        let bootstrap = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Cluster {
            dir,
            bootstrap,
            netns,
        }
    });
    let registered = BROKER.get_or_init(|| Broker {
        bootstrap: c.bootstrap.clone(),
        replication: 3,
        _dir: None,
    });
    assert_eq!(
        registered.bootstrap, c.bootstrap,
        "cluster() must come before anything else uses the broker"
    );
    c
}

impl Cluster {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `scripts/cluster.sh <args>` on this cluster; returns its output.
    fn script(&self, command: &str, args: &[&str]) -> String {
        let out = Command::new(repo_path("scripts/cluster.sh"))
            .arg(command)
            .arg(self.dir.path())
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/cluster.sh");
        assert!(
            out.status.success(),
            "scripts/cluster.sh {command} {args:?} failed"
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// kill -9 node `n` (1-3).
    pub fn kill(&self, n: i32) {
        self.script("kill", &[&n.to_string()]);
    }

    /// Starts a killed node again; returns once it serves metadata.
    pub fn resume(&self, n: i32) {
        self.script("resume", &[&n.to_string()]);
    }

    /// A controlled shutdown of node `n` and its start: one step of a
    /// rolling upgrade. Returns once it serves metadata.
    pub fn restart(&self, n: i32) {
        self.script("restart", &[&n.to_string()]);
    }

    /// Cuts node `n` off from the other nodes and every client; it keeps
    /// running. Needs a cluster in network namespaces.
    pub fn isolate(&self, n: i32) {
        assert!(
            self.netns,
            "isolation needs the cluster in network namespaces"
        );
        self.script("isolate", &[&n.to_string()]);
    }

    pub fn heal(&self, n: i32) {
        self.script("heal", &[&n.to_string()]);
    }

    /// Waits until every partition, the internal topics' too, has all three
    /// replicas in sync.
    pub fn wait_in_sync(&self) {
        self.script("in-sync", &["300"]);
    }

    /// The node that coordinates transactional id `id` (Admin API:
    /// describeTransactions).
    pub fn txn_coordinator(&self, id: &str) -> i32 {
        self.script("txn-coordinator", &[id]).parse().unwrap()
    }

    /// The node that coordinates consumer group `group`.
    pub fn group_coordinator(&self, group: &str) -> i32 {
        self.script("group-coordinator", &[group]).parse().unwrap()
    }

    /// The node that leads `topic`'s `partition`, from the metadata.
    pub fn leader(&self, topic: &str, partition: i32) -> i32 {
        let c: BaseConsumer = consumer_config("leader-probe").create().unwrap();
        poll_for(
            Duration::from_millis(200),
            || {
                let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
                let p = md.topics().first()?.partitions().get(partition as usize)?;
                (p.leader() > 0).then_some(p.leader())
            },
            || format!("no leader for {topic}-{partition}"),
        )
    }

    /// Each node's log directory, for a failure message.
    pub fn logs(&self) -> String {
        self.dir.path().join("b*/logs").display().to_string()
    }
}
