//! A failure after producing and before committing: the transaction aborts,
//! the partitions rewind, the records are produced again — and a
//! read_committed reader sees each exactly once, although the aborted copies
//! are physically in the log (a read_uncommitted reader sees them).

mod support;

use support::*;

#[test]
fn records_of_aborted_transactions_are_never_seen_by_read_committed_readers() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("abort", 3, 3);
    let input = input_records(6_000, 13);
    let writer = produce_paced(&input_topic, input.clone(), 5_000);

    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    // Every third transaction fails between produce and commit.
    cfg.extra_env = vec![("EXACTLY_TEST_ABORT_EVERY".into(), "3".into())];
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_ready();
    writer.join().unwrap();
    wait_caught_up(&group, &input_topic, &mut [&mut daemon]);

    let aborted = daemon.metric("exactly_transactions_total{outcome=\"aborted\"}");
    assert!(
        aborted >= 1.0,
        "no transaction was aborted:\n{}",
        daemon.log_text()
    );
    assert!(daemon.metric("exactly_rewinds_total") >= aborted);

    let committed = read_all(&output_topic, "read_committed");
    let a = audit(&input, &committed);
    assert!(a.is_exactly_once(), "{a:?}");
    assert_eq!(a.order_violations, 0, "{a:?}");

    let uncommitted = read_all(&output_topic, "read_uncommitted");
    assert!(
        uncommitted.len() > committed.len(),
        "aborted records should be in the log: {} read_uncommitted vs {} read_committed",
        uncommitted.len(),
        committed.len()
    );
    assert!(!audit(&input, &uncommitted).is_exactly_once());
}
