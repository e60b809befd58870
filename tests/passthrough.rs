//! Passthrough on the real broker: output equals input — keys, values,
//! headers, timestamps — each record once, per-key order kept; and the
//! daemon's metrics and probes say so.

mod support;

use support::*;

#[test]
fn passthrough_of_10000_records_copies_each_once_in_key_order() {
    let input_topic = unique("orders");
    let output_topic = unique("orders-out");
    let group = unique("group");
    create_topic(&input_topic, 4);
    create_topic(&output_topic, 3);
    let input = input_records(10_000, 37);
    produce(&input_topic, &input);

    let mut daemon = Daemon::start(&DaemonConfig::new(
        &group,
        &input_topic,
        &output_topic,
        &unique("txn"),
    ));
    daemon.wait_ready();
    wait_caught_up(&group, &input_topic, &mut [&mut daemon]);

    let output = read_all(&output_topic, "read_committed");
    let a = audit(&input, &output);
    assert!(a.is_exactly_once(), "{a:?}");
    assert_eq!(a.order_violations, 0, "{a:?}");
    assert_eq!(output.len(), input.len());

    // The same key always lands in the same output partition.
    let mut partition_of = std::collections::HashMap::new();
    for o in &output {
        let p = partition_of.entry(o.rec.key.clone()).or_insert(o.partition);
        assert_eq!(*p, o.partition, "key {:?} in two partitions", o.rec.key);
    }
    // Timestamps are carried over from the input.
    let inputs_read = read_all(&input_topic, "read_committed");
    let ts_of: std::collections::HashMap<_, _> = inputs_read
        .iter()
        .map(|o| (o.rec.value.clone(), o.timestamp))
        .collect();
    for o in &output {
        assert_eq!(ts_of[&o.rec.value], o.timestamp);
    }

    assert_eq!(daemon.metric("exactly_records_consumed_total"), 10_000.0);
    assert_eq!(daemon.metric("exactly_records_produced_total"), 10_000.0);
    assert!(daemon.metric("exactly_transactions_total{outcome=\"committed\"}") >= 1.0);
    assert_eq!(daemon.metric("exactly_assigned_partitions"), 4.0);
    assert_eq!(daemon.http_get("/healthz").map(|r| r.0), Some(200));

    let (status, took) = daemon.terminate();
    assert!(status.success(), "exit {status}: {}", daemon.log_text());
    assert!(
        took < std::time::Duration::from_secs(10),
        "stop took {took:?}"
    );
}

#[test]
fn tombstones_and_empty_records_stay_as_they_are() {
    let input_topic = unique("tombstones");
    let output_topic = unique("tombstones-out");
    let group = unique("group");
    create_topic(&input_topic, 1);
    create_topic(&output_topic, 1);
    let input = vec![
        Rec {
            key: Some(b"gone".to_vec()),
            value: None,
            headers: vec![],
        },
        Rec {
            key: None,
            value: Some(b"no key".to_vec()),
            headers: vec![],
        },
        Rec {
            key: Some(b"empty".to_vec()),
            value: Some(Vec::new()),
            headers: vec![],
        },
    ];
    produce(&input_topic, &input);
    let mut daemon = Daemon::start(&DaemonConfig::new(
        &group,
        &input_topic,
        &output_topic,
        &unique("txn"),
    ));
    daemon.wait_ready();
    wait_caught_up(&group, &input_topic, &mut [&mut daemon]);
    let output: Vec<Rec> = read_all(&output_topic, "read_committed")
        .into_iter()
        .map(|o| o.rec)
        .collect();
    assert_eq!(output, input);
}
