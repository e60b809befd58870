//! Three replicated brokers under faults (`scripts/cluster.sh`: replication
//! factor 3, `min.insync.replicas=2` everywhere, the internal topics too).
//! Three exactly_once replicas process a stream that keeps flowing while one
//! fault hits the cluster; then `exactly verify` must find zero missing,
//! zero duplicates and zero order violations, and no replica may have
//! exited (the daemon rides out broker faults in-process) — save for the
//! watchdog's exit when librdkafka blocks a transactional call for good
//! (librdkafka issues 5456 and 5511), which is counted and printed.
//!
//! Each fault runs on a pipeline of its own (fresh topics and group), and
//! prints its figures: the longest output stall, the replicas' exits, the
//! output rate and end-to-end latency in the steady state before the fault
//! and across it.
//!
//! Faults (`EXACTLY_CLUSTER_FAULTS`, comma-separated; default the reduced
//! CI run `txn-coordinator,rolling-restart`; `all` for every one):
//! - `txn-coordinator`: kill -9 of the node that coordinates a replica's
//!   transactional id (Admin API: describeTransactions), its restart;
//! - `group-coordinator`: kill -9 of the group coordinator's node;
//! - `leader`: kill -9 of the leader of an output partition;
//! - `rolling-restart`: each node in turn shut down and started, waiting
//!   for every partition to be in sync again before the next;
//! - `two-down`: two nodes killed at once: writes must stall (too few
//!   in-sync replicas), then resume when one returns;
//! - `isolate`: one node cut off from the others and the clients while it
//!   keeps running (needs network namespaces: root and `ip netns`).
//!
//! Also `EXACTLY_CLUSTER_RATE` (input records/s, default 500),
//! `_DOWN_SECS` (how long a killed node stays down, default 10),
//! `_NETNS` (1: run the nodes in network namespaces even without `isolate`).
//! `scripts/cluster-faults.sh` runs every fault in a release build.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::cluster::{cluster, netns_available, Cluster};
use support::*;

const PARTITIONS: i32 = 6;
const REPLICAS: usize = 3;
/// Steady state measured before each fault, and flow kept after it.
const STEADY: Duration = Duration::from_secs(10);
const AFTER: Duration = Duration::from_secs(10);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(format!("EXACTLY_CLUSTER_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    TxnCoordinator,
    GroupCoordinator,
    Leader,
    RollingRestart,
    TwoDown,
    Isolate,
}

const ALL: [(&str, Fault); 6] = [
    ("txn-coordinator", Fault::TxnCoordinator),
    ("group-coordinator", Fault::GroupCoordinator),
    ("leader", Fault::Leader),
    ("rolling-restart", Fault::RollingRestart),
    ("two-down", Fault::TwoDown),
    ("isolate", Fault::Isolate),
];

fn name_of(f: Fault) -> &'static str {
    ALL.iter().find(|(_, x)| *x == f).unwrap().0
}

fn faults() -> Vec<Fault> {
    let list = std::env::var("EXACTLY_CLUSTER_FAULTS")
        .unwrap_or_else(|_| "txn-coordinator,rolling-restart".into());
    if list.trim() == "all" {
        return ALL.iter().map(|(_, f)| *f).collect();
    }
    list.split(',')
        .map(|n| {
            ALL.iter()
                .find(|(name, _)| *name == n.trim())
                .unwrap_or_else(|| panic!("unknown fault {n:?} in EXACTLY_CLUSTER_FAULTS"))
                .1
        })
        .collect()
}

/// Input written at a steady rate until told to stop (sent without waiting
/// for each acknowledgement, as a real producer does); every record is
/// acknowledged before [`Writer::finish`] returns.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    /// Sent and still waiting for an acknowledgement.
    unacked: Arc<AtomicUsize>,
    handle: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(topic: &str, per_sec: usize) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let unacked = Arc::new(AtomicUsize::new(0));
        let (s, w, u, topic) = (
            stop.clone(),
            written.clone(),
            unacked.clone(),
            topic.to_owned(),
        );
        let handle = std::thread::spawn(move || {
            use rdkafka::producer::Producer;
            let p = producer();
            let start = Instant::now();
            let chunk = (per_sec / 20).max(1);
            let mut done = 0;
            while !s.load(Ordering::Relaxed) {
                for i in done..done + chunk {
                    send(&p, &topic, &input_record(i, 997));
                }
                done += chunk;
                w.store(done, Ordering::Relaxed);
                u.store(p.in_flight_count().max(0) as usize, Ordering::Relaxed);
                let due = start + Duration::from_secs_f64(done as f64 / per_sec as f64);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    // Pacing of a load generator, not synchronisation.
                    std::thread::sleep(d);
                }
            }
            // Two nodes down hold acknowledgements back for as long as the
            // fault lasts; the idempotent producer retries until then.
            p.flush(Duration::from_secs(300))
                .expect("every input acknowledged");
        });
        Writer {
            stop,
            written,
            unacked,
            handle,
        }
    }

    /// Stops writing, waits for every acknowledgement; returns how many
    /// records were written.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap();
        self.written.load(Ordering::Relaxed)
    }
}

/// Lets the fault last `d` (the fault's length is the fault itself), while
/// the orchestrator restarts whatever exits.
fn hold(fleet: &mut Fleet, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        fleet.heal();
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Outcome {
    fault: Fault,
    /// The node(s) the fault hit.
    nodes: Vec<i32>,
    steady: Window,
    across: Window,
    /// Rolling restart: the output rate while the nodes restarted.
    during: Option<Window>,
    /// Two down: records that reached the output while writes had to stall.
    during_stall: Option<usize>,
    restarts: Vec<String>,
    verify: serde_json::Value,
    took: Duration,
    /// Every replica's log, kept until the fault's checks pass.
    logs: std::path::PathBuf,
}

fn run(c: &Cluster, fault: Fault) -> Outcome {
    let rate = env_or("RATE", 500) as usize;
    let down = Duration::from_secs(env_or("DOWN_SECS", 10));
    let name = name_of(fault);
    let started = Instant::now();
    let p = Pipeline::create(&format!("cluster-{name}"), PARTITIONS, PARTITIONS);
    let monitor = Monitor::start(&p.output, PARTITIONS);
    let writer = Writer::start(&p.input, rate);
    let cfg = DaemonConfig::new(&p.group, &p.input, &p.output, "unused");
    let ids: Vec<String> = (0..REPLICAS).map(|i| format!("{}-r{i}", p.group)).collect();
    // Every replica's whole log outlives it (removed when the fault passes).
    let logs = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cluster-logs")
        .join(&p.group);
    keep_daemon_logs(&logs);
    let mut fleet = Fleet::start(cfg, &ids);
    wait_until("every replica's first commit", || {
        fleet.heal();
        fleet.replicas.iter().all(|r| {
            r.daemon
                .metric("exactly_transactions_total{outcome=\"committed\"}")
                >= 1.0
        })
    });
    // The replicas started behind the input: the steady state is measured
    // once the group's committed offsets are within a second of input of
    // the end ...
    // (A record's timestamp is taken when it is sent: input still queued in
    // the writer's producer counts as lag too.)
    wait_until("the replicas to catch up with the input", || {
        fleet.heal();
        let (committed, end) = committed_and_end(&p.group, &p.input);
        end - committed <= rate as i64 && writer.unacked.load(Ordering::Relaxed) <= rate / 2
    });
    // ... and the reader has seen every output of what was written by then.
    let caught_up = writer.written.load(Ordering::Relaxed);
    wait_until("the reader to catch up with the output", || {
        fleet.heal();
        monitor.seen() >= caught_up
    });
    let steady_from = Instant::now();
    hold(&mut fleet, STEADY);
    let fault_at = Instant::now();
    eprintln!("[{name}] steady state measured; fault begins");
    let mut nodes = Vec::new();
    let mut during = None;
    let mut during_stall = None;
    match fault {
        Fault::TxnCoordinator | Fault::GroupCoordinator | Fault::Leader => {
            let n = match fault {
                Fault::TxnCoordinator => c.txn_coordinator(&ids[0]),
                Fault::GroupCoordinator => c.group_coordinator(&p.group),
                _ => c.leader(&p.output, 0),
            };
            nodes.push(n);
            c.kill(n);
            hold(&mut fleet, down);
            c.resume(n);
            c.wait_in_sync();
        }
        Fault::RollingRestart => {
            for n in 1..=3 {
                nodes.push(n);
                c.restart(n);
                c.wait_in_sync();
                fleet.heal();
            }
            during = Some(monitor.window(fault_at, Instant::now()));
        }
        Fault::TwoDown => {
            // Neither of the two may be the one that leads output
            // partition 0's... any two will do: node 1 and node 2.
            nodes.extend([1, 2]);
            c.kill(1);
            c.kill(2);
            // Transactions already committed may still be on their way to
            // the reader; after that, nothing can commit: every partition
            // has fewer than min.insync.replicas replicas, and so does
            // __transaction_state.
            hold(&mut fleet, Duration::from_secs(5));
            let before = monitor.seen();
            hold(&mut fleet, down.max(Duration::from_secs(15)));
            during_stall = Some(monitor.seen() - before);
            c.resume(1);
            let back = monitor.seen();
            wait_until("outputs to flow again with two nodes of three", || {
                fleet.heal();
                monitor.seen() > back
            });
            c.resume(2);
            c.wait_in_sync();
        }
        Fault::Isolate => {
            let n = c.txn_coordinator(&ids[0]);
            nodes.push(n);
            c.isolate(n);
            hold(&mut fleet, down.max(Duration::from_secs(20)));
            c.heal(n);
            c.wait_in_sync();
        }
    }
    eprintln!(
        "[{name}] fault over after {:.1} s (nodes {nodes:?})",
        fault_at.elapsed().as_secs_f64()
    );
    hold(&mut fleet, AFTER);
    let written = writer.finish();
    fleet.wait_all_committed(&p.input, written, &logs, "exactly_once");
    let end = Instant::now();
    let steady = monitor.window(steady_from, fault_at);
    let across = monitor.window(fault_at, end);
    let (code, verify, err) = verify_json(&p.group, &p.input, &[&p.output], &["--wait-secs", "90"]);
    assert!(code == 0 || code == 1, "verify failed to run: {err}");
    if !fleet.restarts_after_exit.is_empty() {
        fleet.print_state();
    }
    Outcome {
        fault,
        nodes,
        steady,
        across,
        during,
        during_stall,
        restarts: fleet.restarts_after_exit.clone(),
        verify,
        took: started.elapsed(),
        logs,
    }
}

fn print(o: &Outcome) {
    let r = &o.verify["report"];
    eprintln!(
        "\n=== cluster fault: {} (node {:?}) ===\n\
         inputs audited: {}  outputs read: {}\n\
         missing: {}  duplicates: {}  order violations: {}\n\
         replicas that exited: {}\n\
         longest output stall: {:.2} s (steady state: {:.2} s)\n\
         output rate: steady {:.0}/s, across the fault {:.0}/s\n\
         end-to-end latency ms p50/p99/max: steady {}/{}/{}, across the fault {}/{}/{}\n\
         took {:.1} s",
        name_of(o.fault),
        o.nodes,
        r["inputs"],
        r["outputs_read"],
        r["missing"],
        r["duplicates"],
        r["order_violations"],
        o.restarts.len(),
        o.across.longest_gap.as_secs_f64(),
        o.steady.longest_gap.as_secs_f64(),
        o.steady.per_sec(),
        o.across.per_sec(),
        o.steady.p50_ms,
        o.steady.p99_ms,
        o.steady.max_ms,
        o.across.p50_ms,
        o.across.p99_ms,
        o.across.max_ms,
        o.took.as_secs_f64()
    );
    if let Some(w) = &o.during {
        eprintln!(
            "during the rolling restart ({:.1} s): {:.0}/s = {:.2} x steady; latency p99 {} ms, longest stall {:.2} s",
            w.secs,
            w.per_sec(),
            w.per_sec() / o.steady.per_sec(),
            w.p99_ms,
            w.longest_gap.as_secs_f64()
        );
    }
    if let Some(n) = o.during_stall {
        eprintln!("outputs that arrived while two of three nodes were down: {n}");
    }
    for r in &o.restarts {
        eprintln!("  {r}");
    }
}

#[test]
fn three_replicated_brokers_under_faults_keep_exactly_once() {
    let faults = faults();
    let netns = faults.contains(&Fault::Isolate) || env_or("NETNS", 0) == 1;
    assert!(
        !netns || netns_available(),
        "the isolate fault needs network namespaces (root and `ip netns`); \
         leave it out of EXACTLY_CLUSTER_FAULTS on this machine"
    );
    let c = cluster(netns);
    let mut failures = Vec::new();
    for fault in faults {
        let o = run(c, fault);
        print(&o);
        let failed_before = failures.len();
        let r = &o.verify["report"];
        let counts = (
            r["missing"].as_u64(),
            r["duplicates"].as_u64(),
            r["order_violations"].as_u64(),
        );
        if o.verify["clean"] != true || counts != (Some(0), Some(0), Some(0)) {
            failures.push(format!("{}: {:#}", name_of(fault), o.verify));
        }
        // The goal is no exit at all. One exit is known and allowed: the
        // watchdog's, when librdkafka's send_offsets_to_transaction blocks
        // for good after a coordinator's broker left the cluster (librdkafka
        // issues 5456 and 5511; see src/engine/transaction/watchdog.rs).
        let other: Vec<&String> = o
            .restarts
            .iter()
            .filter(|r| !r.contains("the Kafka client is stuck"))
            .collect();
        if !other.is_empty() {
            failures.push(format!(
                "{}: replicas exited instead of riding the fault out: {other:?}",
                name_of(fault)
            ));
        }
        if o.during_stall.is_some_and(|n| n > 0) {
            failures.push(format!(
                "two-down: {} outputs were committed with two of three nodes down",
                o.during_stall.unwrap()
            ));
        }
        if failures.len() == failed_before {
            let _ = std::fs::remove_dir_all(&o.logs);
        } else {
            eprintln!("every replica's log: {}", o.logs.display());
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\nnode logs: {}",
        c.logs()
    );
}
