//! Rule 4 of the contract for partitions the group has never committed: the
//! starting position is fixed the first time the group reads a partition,
//! and no input after it is ever skipped — whichever replica holds the
//! partition later, and however often its transactions abort. With
//! `auto.offset.reset = "latest"`, resolving `latest` again after an abort
//! or on another replica would skip everything written meanwhile.

mod support;

use support::*;

#[test]
fn with_latest_a_replica_joining_during_the_first_transaction_skips_nothing() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("reset-latest", 6, 6);
    // Written before the group exists: `latest` skips these, by definition.
    let before = input_records(500, 7);
    produce(&input_topic, &before);

    let with_latest = |txn: &str| {
        let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, txn);
        // The group's first transaction is long: the second replica joins
        // while it is open, so it is aborted before anything is committed.
        cfg.fixed_cadence(5_000);
        cfg.max_batch_records = 1_000_000;
        cfg.extra_env = vec![(
            "EXACTLY__KAFKA__CONSUMER__AUTO_OFFSET_RESET".into(),
            "latest".into(),
        )];
        cfg
    };
    let mut first = Daemon::start(&with_latest(&unique("reset-a")));
    // Partitions assigned, their starting positions fixed.
    first.wait_ready();
    first.wait_assigned();

    let input: Vec<Rec> = input_records(20_000, 31)
        .into_iter()
        .map(|mut r| {
            // Distinct from `before`, whose seq values overlap.
            r.value = r.value.map(|mut v| {
                v.extend_from_slice(b"-after");
                v
            });
            r
        })
        .collect();
    let writer = produce_paced(&input_topic, input.clone(), 5_000);
    wait_until("the first transaction to hold records", || {
        first.metric("exactly_records_consumed_total") >= 2_000.0
    });
    assert_eq!(
        first.metric("exactly_records_produced_total"),
        0.0,
        "nothing committed yet"
    );
    let mut second = Daemon::start(&with_latest(&unique("reset-b")));
    second.wait_ready();
    second.wait_assigned();

    writer.join().unwrap();
    wait_caught_up(&group, &input_topic, &mut [&mut first, &mut second]);
    let output = read_all(&output_topic, "read_committed");
    let a = audit(&input, &output);
    assert_eq!(
        a.missing, 0,
        "input written after the start was skipped: {a:?}"
    );
    assert!(a.is_exactly_once(), "{a:?}");
    assert_eq!(a.order_violations, 0, "{a:?}");
}
