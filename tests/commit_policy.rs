//! When a transaction closes, on the real broker: under exactly-once with
//! `min_commit_interval_ms` set below `commit_interval_ms`, as soon as
//! nothing more is ready to consume; by default (the fixed cadence) and
//! under at-least-once, only at the interval. `exactly_transaction_closes_total{reason}` tells which limit
//! closed each transaction.

mod support;

use support::*;

fn closes(d: &Daemon, reason: &str) -> f64 {
    d.metric(&format!(
        "exactly_transaction_closes_total{{reason=\"{reason}\"}}"
    ))
}

/// Runs 300 records written in three bursts through a daemon with `cfg`
/// and returns it once they are all committed, exactly once.
fn three_bursts(prefix: &str, configure: impl Fn(&mut DaemonConfig)) -> Daemon {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create(prefix, 2, 2);
    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    configure(&mut cfg);
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_ready();
    let input = input_records(300, 11);
    for burst in input.chunks(100) {
        produce(&input_topic, burst);
        wait_caught_up(&group, &input_topic, &mut [&mut daemon]);
    }
    let a = audit(&input, &read_all(&output_topic, "read_committed"));
    assert!(a.is_exactly_once(), "{a:?}");
    daemon
}

#[test]
fn with_a_least_interval_a_transaction_closes_when_nothing_more_is_ready() {
    // An interval far longer than any burst takes: a close at the interval
    // would show in the metric.
    let daemon = three_bursts("drained", |cfg| {
        cfg.commit_interval_ms = 9_000;
        cfg.min_commit_interval_ms = Some(50);
    });
    assert!(closes(&daemon, "drained") >= 3.0, "{}", daemon.log_text());
    assert_eq!(closes(&daemon, "interval"), 0.0);
    assert_eq!(closes(&daemon, "max_records"), 0.0);
}

#[test]
fn by_default_transactions_close_on_the_cadence_only() {
    let daemon = three_bursts("cadence", |cfg| cfg.commit_interval_ms = 1_000);
    assert!(closes(&daemon, "interval") >= 3.0, "{}", daemon.log_text());
    assert_eq!(closes(&daemon, "drained"), 0.0);
}

#[test]
fn at_least_once_never_closes_early() {
    // Its outputs are visible before any commit: an early commit would only
    // cost throughput.
    let daemon = three_bursts("alo-cadence", |cfg| {
        cfg.guarantee = "at_least_once";
        cfg.commit_interval_ms = 1_000;
        cfg.min_commit_interval_ms = Some(50);
    });
    assert!(closes(&daemon, "interval") >= 3.0, "{}", daemon.log_text());
    assert_eq!(closes(&daemon, "drained"), 0.0);
}
