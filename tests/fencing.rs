//! Rule 6 of the contract: a producer fenced by a newer instance with the
//! same transactional id stops its process with a non-zero exit and the
//! cause; the newer instance carries on, and the output stays exactly once.

mod support;

use support::*;

#[test]
fn a_fenced_replica_exits_1_naming_the_cause_and_nothing_is_duplicated() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("fence", 4, 4);
    let input = input_records(30_000, 31);
    let writer = produce_paced(&input_topic, input.clone(), 8_000);

    // Both share one transactional id: the second's init_transactions fences the first.
    let cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("same-id"));
    let mut old = Daemon::start(&cfg);
    old.wait_produced(2_000.0);
    let mut new = Daemon::start(&cfg);

    let status = old.wait_exit();
    assert_eq!(
        status.code(),
        Some(1),
        "fenced daemon exit:\n{}",
        old.log_text()
    );
    let log = old.log_text().to_lowercase();
    assert!(log.contains("fenced"), "the cause is named:\n{log}");

    writer.join().unwrap();
    wait_caught_up(&group, &input_topic, &mut [&mut new]);
    let a = audit(&input, &read_all(&output_topic, "read_committed"));
    assert!(a.is_exactly_once(), "{a:?}");
    assert_eq!(a.order_violations, 0, "{a:?}");
}
