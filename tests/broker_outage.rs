//! The broker becomes unreachable while the daemon holds an open
//! transaction. This binary owns its broker (it freezes it), and its tests
//! take turns.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use exactly::engine::topics::{OutputTopics, TopicState};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use support::*;

/// One fault at a time: every test here stops the one broker.
static BROKER_TURN: Mutex<()> = Mutex::new(());

#[test]
fn a_stop_whose_final_commit_cannot_finish_exits_non_zero_within_the_budget() {
    let _turn = BROKER_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let broker = own_broker();
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("stop-fail", 2, 2);
    let input = input_records(3_000, 7);
    produce(&input_topic, &input);

    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    cfg.fixed_cadence(60_000);
    cfg.max_batch_records = 1_000_000;
    cfg.extra_env = vec![
        (
            "EXACTLY__PROCESSING__SHUTDOWN_TIMEOUT_MS".into(),
            "4000".into(),
        ),
        (
            "EXACTLY__KAFKA__PRODUCER__TRANSACTION_TIMEOUT_MS".into(),
            "120000".into(),
        ),
    ];
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_ready();
    wait_until("records in an open transaction", || {
        daemon.metric("exactly_records_consumed_total") >= 3_000.0
    });

    // The final commit cannot reach the broker.
    broker.signal("STOP");
    let (status, took) = daemon.terminate();
    broker.signal("CONT");
    let log = daemon.log_text();
    assert!(
        !status.success(),
        "a stop that did not commit must not exit 0 ({status}, after {took:?}):\n{log}"
    );
    assert!(
        log.contains("final commit"),
        "the cause names the final commit:\n{log}"
    );
    // The budget bounds every call, not only the gaps between them: 4 s of
    // budget, plus the second the supervisor grants, plus process exit.
    assert!(took < Duration::from_secs(8), "stop took {took:?}:\n{log}");

    // Nothing is lost: the restarted replica fences the unfinished
    // transaction and processes the input again, once.
    cfg.fixed_cadence(100);
    let mut restarted = Daemon::start(&cfg);
    wait_caught_up(&group, &input_topic, &mut [&mut restarted]);
    let a = audit(&input, &read_all(&output_topic, "read_committed"));
    assert!(a.is_exactly_once(), "{a:?}");
}

#[test]
fn a_metadata_request_without_an_answer_is_not_taken_for_a_missing_topic() {
    let _turn = BROKER_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let broker = own_broker();
    let routed = unique("routed");
    create_topic(&routed, 1);
    let never_created = unique("never-created");
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    let mut topics = OutputTopics::default();
    // The broker's own answer: the topic does not exist.
    assert_eq!(
        topics.state(client.client(), &never_created),
        Ok(TopicState::Missing)
    );

    // No answer at all: the broker is frozen with its connections open.
    broker.signal("STOP");
    let during = topics.state(client.client(), &routed);
    broker.signal("CONT");
    assert!(
        during.is_err(),
        "a request that got no answer says nothing about the topic: {during:?}"
    );
    // Nothing was cached from it: the next look sees the topic.
    assert_eq!(
        topics.state(client.client(), &routed),
        Ok(TopicState::Exists)
    );
}

/// How long the broker stays down: longer than the transaction timeout
/// (10 s) and the consumer's session timeout (6 s in tests), so that the
/// open transaction is aborted by the coordinator and the group membership
/// expires on the client's side, as in a real outage.
const OUTAGE: Duration = Duration::from_secs(60);

#[test]
fn a_60_s_broker_outage_is_ridden_out_in_process_with_exactly_once_and_order() {
    let _turn = BROKER_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let broker = own_broker();
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("outage", 4, 4);
    let input = input_records(30_000, 31);
    let writer = produce_paced(&input_topic, input.clone(), 2_000);

    let cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_produced(2_000.0);
    wait_until("a transaction holding records", || {
        daemon.metric("exactly_records_consumed_total")
            > daemon.metric("exactly_records_produced_total")
    });

    broker.kill();
    // The outage's length is the fault itself, not a wait for a condition.
    std::thread::sleep(OUTAGE);
    daemon.assert_alive();
    let committed_before = daemon.metric("exactly_records_produced_total");
    let back = Instant::now();
    broker.resume();
    wait_until("the first commit after the broker's return", || {
        daemon.assert_alive();
        daemon.metric("exactly_records_produced_total") > committed_before
    });
    // A figure for the docs, not an assertion.
    eprintln!(
        "outage of {OUTAGE:?}: first commit {:?} after the broker was started again (its own start-up included); recoveries: {:?}",
        back.elapsed(),
        daemon
            .log_text()
            .lines()
            .filter(|l| l.contains("recovering in-process"))
            .map(strip_ansi)
            .collect::<Vec<_>>()
    );

    writer.join().unwrap();
    wait_caught_up(&group, &input_topic, &mut [&mut daemon]);
    daemon.assert_alive();
    assert_exactly_once_in_order(&input, &output_topic, "");
}
