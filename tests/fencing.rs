//! Rule 6 of the contract: a producer fenced by a newer instance with the
//! same transactional id stops its process with a non-zero exit and the
//! cause; the newer instance carries on, and the output stays exactly once.
//! The same holds for the consumer: a static member fenced by another with
//! its `group.instance.id` cannot consume again, so the process exits.

mod support;

use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use support::*;

/// Polls `interloper` (which drives its join and keeps it in the group)
/// until `daemon` exits; returns the records it polled.
fn poll_until_exit(interloper: &BaseConsumer, daemon: &mut Daemon) -> usize {
    let mut polled = 0;
    let mut errors = Vec::new();
    wait_until("the fenced daemon to exit", || {
        match interloper.poll(Duration::from_millis(50)) {
            Some(Ok(_)) => polled += 1,
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
        assert!(errors.len() < 100, "the interloper failed: {errors:?}");
        daemon.exited().is_some()
    });
    polled
}

/// Starts the daemon of `cfg` again (as an orchestrator would), lets it
/// finish the input, and audits the output.
fn restart_and_audit(
    cfg: &DaemonConfig,
    writer: std::thread::JoinHandle<()>,
    input: &[Rec],
    context: &str,
) {
    let mut restarted = Daemon::start(cfg);
    writer.join().unwrap();
    wait_caught_up(&cfg.group, &cfg.input, &mut [&mut restarted]);
    assert_exactly_once_in_order(input, &cfg.output, context);
}

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
    assert_exactly_once_in_order(&input, &output_topic, "");
}

#[test]
fn a_replica_whose_consumer_is_fenced_exits_1_and_a_restart_keeps_exactly_once() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("consumer-fence", 4, 4);
    let input = input_records(20_000, 31);
    let writer = produce_paced(&input_topic, input.clone(), 8_000);

    let txn_id = unique("static");
    let cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &txn_id);
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_produced(2_000.0);

    // A plain consumer joins with the daemon's group.instance.id (its
    // transactional id): the daemon's consumer is fenced at its next
    // heartbeat or commit, the way librdkafka fences itself after a session
    // timeout. No producer shares the id, so only the consumer side can
    // notice.
    let interloper = interloper(&group, &txn_id, &input_topic);
    let polled = poll_until_exit(&interloper, &mut daemon);
    let status = daemon.wait_exit();
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "fenced consumer exit:\n{log}");
    assert!(
        log.contains("the consumer failed fatally") && log.contains("group.instance.id"),
        "the cause is named:\n{log}"
    );
    // Static members do not leave on close: the restarted daemon takes the
    // place back under the same id, and aborts whatever the old one left open.
    drop(interloper);
    restart_and_audit(
        &cfg,
        writer,
        &input,
        &format!("(interloper polled {polled})"),
    );
}

#[test]
fn a_member_fenced_at_commit_exits_1_at_once_naming_the_group_instance_id() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("commit-fence", 4, 4);
    let input = input_records(20_000, 31);
    let writer = produce_paced(&input_topic, input.clone(), 8_000);

    let txn_id = unique("static");
    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &txn_id);
    // Heartbeats 15 s apart, commits every 100 ms: once the interloper has
    // the group.instance.id, the daemon's next request to the group
    // coordinator is a commit's TxnOffsetCommit, which the coordinator
    // refuses with FENCED_INSTANCE_ID. Deterministic, not a race.
    cfg.extra_env = vec![
        (
            "EXACTLY__KAFKA__CONSUMER__HEARTBEAT_INTERVAL_MS".into(),
            "15000".into(),
        ),
        (
            "EXACTLY__KAFKA__CONSUMER__SESSION_TIMEOUT_MS".into(),
            "60000".into(),
        ),
    ];
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_produced(2_000.0);

    let interloper = interloper(&group, &txn_id, &input_topic);
    let polled = poll_until_exit(&interloper, &mut daemon);
    let status = daemon.wait_exit();
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "fenced member exit:\n{log}");
    assert!(
        log.contains("FencedInstanceId") && log.contains("group.instance.id"),
        "the cause names the fenced static member:\n{log}"
    );
    assert!(
        !log.contains("in a row aborted"),
        "fatal at once, not after replays:\n{log}"
    );
    drop(interloper);
    restart_and_audit(
        &cfg,
        writer,
        &input,
        &format!("(interloper polled {polled})"),
    );
}

#[test]
fn a_transaction_that_outlives_its_timeout_recovers_in_process_without_exiting() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("txn-timeout", 4, 4);
    let input = input_records(2_000, 31);
    produce(&input_topic, &input);

    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    // One long transaction (9 s, under the default 10 s timeout) takes the
    // whole input.
    cfg.fixed_cadence(9_000);
    cfg.max_batch_records = 1_000_000;
    // The group keeps the member through the pause: only the producer side
    // is fenced.
    cfg.extra_env = vec![(
        "EXACTLY__KAFKA__CONSUMER__SESSION_TIMEOUT_MS".into(),
        "60000".into(),
    )];
    let mut daemon = Daemon::start(&cfg);
    // Every output written and acknowledged (nothing left in the client's
    // queue to time out on its own), none committed yet.
    wait_until("the open transaction to hold every output", || {
        daemon.assert_alive();
        written_to(&output_topic) == input.len() as i64
    });
    assert_eq!(daemon.metric("exactly_records_produced_total"), 0.0);
    // Paused past the timeout and the coordinator's 10 s sweep: when it
    // resumes, the coordinator has aborted its transaction and bumped the
    // epoch, and its commit is refused as fenced — with no other instance.
    daemon.signal("STOP");
    std::thread::sleep(Duration::from_secs(30)); // the fault's length
    daemon.signal("CONT");

    wait_caught_up(&group, &input_topic, &mut [&mut daemon]);
    daemon.assert_alive();
    assert!(
        daemon.metric("exactly_worker_recoveries_total{cause=\"transaction_timed_out\"}") >= 1.0,
        "the worker replaced its clients in-process:\n{}",
        daemon.log_text()
    );
    assert_exactly_once_in_order(&input, &output_topic, "");
}

#[test]
fn a_replica_restarted_with_fewer_workers_fences_the_ids_it_no_longer_uses() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("retired-ids", 4, 4);
    let input = input_records(20_000, 31);
    let writer = produce_paced(&input_topic, input.clone(), 4_000);

    let txn_id = unique("shrink");
    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &txn_id);
    // An abandoned transaction would pin the outputs for 15 minutes, far
    // past every wait of this test: only fencing can free them.
    let timeout = (
        "EXACTLY__KAFKA__PRODUCER__TRANSACTION_TIMEOUT_MS".to_owned(),
        "900000".to_owned(),
    );
    cfg.extra_env = vec![
        timeout.clone(),
        ("EXACTLY__PROCESSING__WORKERS".into(), "2".into()),
    ];
    let mut two = Daemon::start(&cfg);
    two.wait_produced(4_000.0);
    // Both workers have committed: the group's offsets name both ids (an
    // id that never committed cannot be found, and its transaction ends
    // with its timeout: docs/exactly-once.md).
    let ids = [format!("{txn_id}-w0"), format!("{txn_id}-w1")];
    wait_until("both workers' ids in the committed offsets", || {
        let named = committed_metadata(&group, &input_topic);
        ids.iter().all(|id| named.contains(id))
    });
    wait_until("transactions holding records", || {
        two.metric("exactly_records_consumed_total") > two.metric("exactly_records_produced_total")
    });
    let first_log = strip_ansi(&two.log_text());
    two.kill9();

    // The same replica comes back with one worker: `<id>-w0` and `<id>-w1`
    // are no longer anyone's, and `<id>-w1` may hold an open transaction.
    cfg.extra_env = vec![timeout];
    let mut one = Daemon::start(&cfg);
    writer.join().unwrap();
    wait_caught_up(&group, &input_topic, &mut [&mut one]);
    let log = strip_ansi(&one.log_text());
    for retired in &ids {
        assert!(
            log.lines()
                .any(|l| l.contains("fenced a transactional id") && l.contains(retired.as_str())),
            "{retired} fenced at start-up:\n{log}\n--- the two-worker run ---\n{first_log}"
        );
    }
    // read_all waits until no transaction is open on the outputs: with a
    // 15-minute timeout that only happens because they were fenced.
    assert_exactly_once_in_order(&input, &output_topic, "");
}
