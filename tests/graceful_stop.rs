//! SIGTERM with a transaction open: the daemon commits it, closes its
//! clients (a static member keeps its place in the group until its session
//! times out) and exits 0 within 10 s; what it consumed is committed exactly
//! once.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn sigterm_commits_the_open_transaction_and_exits_0_within_10_s() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("stop", 2, 2);
    let input = input_records(3_000, 7);
    produce(&input_topic, &input);

    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    // A long transaction: the stop surely finds one open.
    cfg.fixed_cadence(60_000);
    cfg.max_batch_records = 1_000_000;
    // A transaction may not outlive its timeout (check refuses the
    // interval otherwise).
    cfg.extra_env = vec![(
        "EXACTLY__KAFKA__PRODUCER__TRANSACTION_TIMEOUT_MS".into(),
        "120000".into(),
    )];
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_ready();
    wait_until("records in an open transaction", || {
        daemon.metric("exactly_records_consumed_total") >= 3_000.0
    });
    assert_eq!(
        daemon.metric("exactly_records_produced_total"),
        0.0,
        "nothing committed yet"
    );

    let (status, took) = daemon.terminate();
    assert!(status.success(), "exit {status}:\n{}", daemon.log_text());
    assert!(took < Duration::from_secs(10), "stop took {took:?}");

    let (committed, end) = committed_and_end(&group, &input_topic);
    assert_eq!(
        committed, end,
        "the open transaction's offsets were committed"
    );
    let a = audit(&input, &read_all(&output_topic, "read_committed"));
    assert!(a.is_exactly_once(), "{a:?}");
}
