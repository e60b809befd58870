//! A record the consumer hands over a second time without a rewind.
//!
//! librdkafka saves a paused partition's resume point from the application's
//! position, which moves only when the record of a polled event is handed
//! over; a rebalance pause that lands between the two makes the partition
//! resume at a record already processed (see `src/engine/redelivery.rs`).
//! The race needs a descheduled thread at the wrong microsecond, so the test
//! injects its effect instead: after every second commit the worker seeks
//! each committed partition one record back (`EXACTLY_TEST_REDELIVER_EVERY`),
//! and the consumer hands the last committed record over again. The output
//! must still hold each input once; with the guard removed, it does not.

mod support;

use support::*;

#[test]
fn a_record_handed_over_again_is_not_processed_twice() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("redeliver", 3, 3);
    let input = input_records(6_000, 13);
    let writer = produce_paced(&input_topic, input.clone(), 5_000);

    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    cfg.extra_env = vec![("EXACTLY_TEST_REDELIVER_EVERY".into(), "2".into())];
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_ready();
    writer.join().unwrap();
    wait_caught_up(&group, &input_topic, &mut [&mut daemon]);

    // The injection ran, and every copy it caused was dropped.
    let dropped = daemon.metric("exactly_redelivered_records_total");
    assert!(
        dropped >= 1.0,
        "no record was handed over again:\n{}",
        daemon.log_text()
    );
    assert_eq!(
        daemon.metric("exactly_rewinds_total"),
        0.0,
        "the copies came without a rewind"
    );

    let committed = read_all(&output_topic, "read_committed");
    let a = audit(&input, &committed);
    assert!(a.is_exactly_once(), "{dropped} copies dropped; {a:?}");
    assert_eq!(a.order_violations, 0, "{a:?}");
}
