//! Scaling while the stream flows: a second replica joins, then leaves with
//! SIGTERM; a third joins and is killed (its open transaction is aborted by
//! the transaction timeout, its partitions move after the session timeout).
//! Every input exactly once.

mod support;

use std::time::Duration;

use support::*;

/// Waits until `d` holds partitions and has committed a transaction — the
/// commit only while input still flows: a replica that joins after the
/// input ended has nothing to commit.
fn holds_partitions_and_commits(d: &mut Daemon, writer: &std::thread::JoinHandle<()>) {
    wait_until("the replica to hold partitions and commit", || {
        d.assert_alive();
        d.metric("exactly_assigned_partitions") >= 1.0
            && (writer.is_finished()
                || d.metric("exactly_transactions_total{outcome=\"committed\"}") >= 1.0)
    });
}

#[test]
fn replicas_joining_leaving_and_dying_mid_stream_keep_exactly_once() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("scale", 6, 6);
    let input = input_records(60_000, 211);
    // About 20 s of input: long enough to span B's leave (its partitions
    // idle for the session timeout under static membership) and C's join.
    let writer = produce_paced(&input_topic, input.clone(), 3_000);

    let cfg = |id: &str| DaemonConfig::new(&group, &input_topic, &output_topic, id);
    let mut a = Daemon::start(&cfg("replica-a"));
    a.wait_ready();
    a.wait_produced(3_000.0);

    let mut b = Daemon::start(&cfg("replica-b"));
    holds_partitions_and_commits(&mut b, &writer);
    let (status, took) = b.terminate();
    assert!(
        status.success(),
        "replica b exit {status}:\n{}",
        b.log_text()
    );
    assert!(
        took < Duration::from_secs(10),
        "graceful stop took {took:?}"
    );

    let mut c = Daemon::start(&cfg("replica-c"));
    holds_partitions_and_commits(&mut c, &writer);
    c.kill9();

    writer.join().unwrap();
    wait_caught_up(&group, &input_topic, &mut [&mut a]);
    let output = read_all(&output_topic, "read_committed");
    let audit = audit(&input, &output);
    assert!(audit.is_exactly_once(), "{audit:?}");
    assert_eq!(audit.order_violations, 0, "{audit:?}");
    // The group really moved partitions: A started with all of them, gave
    // some to B and C (cooperative: only those), and took them back twice.
    assert!(a.metric("exactly_rebalances_total{event=\"revoked\"}") >= 1.0);
    assert!(a.metric("exactly_rebalances_total{event=\"assigned\"}") >= 3.0);
}

/// More replicas than partitions: the idle one holds nothing but is a
/// member of the group with an initialised producer, so it is ready — a
/// rolling update or a node drain must not wait on it.
#[test]
fn replicas_beyond_the_partition_count_are_ready_and_idle() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("idle", 2, 2);
    let input = input_records(2_000, 17);
    produce(&input_topic, &input);

    let cfg = |id: &str| DaemonConfig::new(&group, &input_topic, &output_topic, id);
    let mut replicas: Vec<Daemon> = ["idle-a", "idle-b", "idle-c"]
        .iter()
        .map(|id| Daemon::start(&cfg(id)))
        .collect();
    for r in &mut replicas {
        r.wait_ready();
    }
    wait_caught_up(
        &group,
        &input_topic,
        &mut replicas.iter_mut().collect::<Vec<_>>(),
    );
    let held = |rs: &[Daemon]| -> Vec<f64> {
        rs.iter()
            .map(|r| r.metric("exactly_assigned_partitions"))
            .collect()
    };
    wait_until("both partitions held and one replica idle", || {
        let h = held(&replicas);
        h.iter().sum::<f64>() == 2.0 && h.contains(&0.0)
    });
    let idle = replicas
        .iter_mut()
        .find(|r| r.metric("exactly_assigned_partitions") == 0.0)
        .expect("one replica holds no partition");
    let (status, body) = idle.http_get("/readyz").expect("/readyz answers");
    assert_eq!(status, 200, "the idle replica is ready: {body}");
    assert!(body.contains("0 partitions assigned"), "{body}");

    let a = audit(&input, &read_all(&output_topic, "read_committed"));
    assert!(a.is_exactly_once(), "{a:?}");
}
