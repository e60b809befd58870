//! Passthrough on the real broker: output equals input — keys, values,
//! headers, timestamps — each record once, per-key order kept; and the
//! daemon's metrics and probes say so.

mod support;

use support::*;

#[test]
fn passthrough_of_10000_records_copies_each_once_in_key_order() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("orders", 4, 3);
    let input = input_records(10_000, 37);
    produce(&input_topic, &input);

    let mut daemon = Daemon::run_to_end(&DaemonConfig::new(
        &group,
        &input_topic,
        &output_topic,
        &unique("txn"),
    ));

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
    // Timestamps are carried over from the input, and each output's lineage
    // names exactly the input record it copies.
    let inputs_read = read_all(&input_topic, "read_committed");
    let ts_of: std::collections::HashMap<_, _> = inputs_read
        .iter()
        .map(|o| (o.rec.value.clone(), o.timestamp))
        .collect();
    let input_at: std::collections::HashMap<_, _> = inputs_read
        .iter()
        .map(|o| ((o.partition, o.offset), &o.rec))
        .collect();
    for o in &output {
        assert_eq!(ts_of[&o.rec.value], o.timestamp);
        let l = o.lineage.as_ref().expect("lineage headers on by default");
        assert_eq!((l.topic.as_str(), l.index), (input_topic.as_str(), 0));
        assert_eq!(input_at[&(l.partition, l.offset)], &o.rec);
    }

    assert_eq!(daemon.metric("exactly_records_consumed_total"), 10_000.0);
    assert_eq!(daemon.metric("exactly_records_produced_total"), 10_000.0);
    assert!(daemon.metric("exactly_transactions_total{outcome=\"committed\"}") >= 1.0);
    assert_eq!(daemon.metric("exactly_assigned_partitions"), 4.0);
    assert_eq!(daemon.http_get("/healthz").map(|r| r.0), Some(200));
    // Lag comes from librdkafka's statistics (every 5 s): each input
    // partition gets a series, and all of them reach 0 once caught up.
    wait_until("lag series at 0 for every input partition", || {
        (0..4).all(|p| {
            let body = daemon.http_get("/metrics").map(|r| r.1).unwrap_or_default();
            body.lines().any(|l| {
                l.starts_with("exactly_consumer_lag{")
                    && l.contains(&format!("partition=\"{p}\""))
                    && l.contains(&input_topic)
                    && l.ends_with(" 0")
            })
        })
    });

    let (status, took) = daemon.terminate();
    assert!(status.success(), "exit {status}: {}", daemon.log_text());
    assert!(
        took < std::time::Duration::from_secs(10),
        "stop took {took:?}"
    );
}

#[test]
fn tombstones_and_empty_records_stay_as_they_are_without_lineage() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("tombstones", 1, 1);
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
    // With lineage switched off, records go out exactly as they came in.
    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    cfg.extra_env = vec![("EXACTLY__OUTPUT__LINEAGE".into(), "false".into())];
    let _daemon = Daemon::run_to_end(&cfg);
    assert!(read_all(&output_topic, "read_committed")
        .iter()
        .all(|o| o.lineage.is_none() && o.rec.headers.is_empty()));
    let output: Vec<Rec> = read_all(&output_topic, "read_committed")
        .into_iter()
        .map(|o| o.rec)
        .collect();
    assert_eq!(output, input);
}

#[test]
fn two_workers_in_one_process_share_the_partitions_exactly_once() {
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("workers", 6, 6);
    let input = input_records(20_000, 53);
    let (first, second) = input.split_at(10_000);
    produce(&input_topic, first);
    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    cfg.extra_env = vec![("EXACTLY__PROCESSING__WORKERS".into(), "2".into())];
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_ready();
    // The first worker to join takes all six partitions; the cooperative
    // rebalance that hands half of them to the other worker takes two rounds
    // and may end after the first half of the input is done. Wait until both
    // workers hold partitions and the process holds all six again.
    let holds = |log: &str, worker: &str| {
        log.lines().any(|l| {
            l.contains("partitions assigned")
                && l.contains(&format!("worker{{worker={worker}}}"))
                && !l.ends_with("partitions=0")
        })
    };
    wait_until("both workers to hold partitions", || {
        daemon.assert_alive();
        let log = strip_ansi(&daemon.log_text());
        holds(&log, "0") && holds(&log, "1") && daemon.metric("exactly_assigned_partitions") == 6.0
    });
    produce(&input_topic, second);
    wait_caught_up(&group, &input_topic, &mut [&mut daemon]);
    let a = audit(&input, &read_all(&output_topic, "read_committed"));
    assert!(a.is_exactly_once(), "{a:?}");
    assert_eq!(a.order_violations, 0, "{a:?}");
    // Each worker committed records of its own, under its own transactional id.
    let log = strip_ansi(&daemon.log_text());
    for worker in ["0", "1"] {
        assert!(
            log.lines().any(|l| l.contains("transaction committed")
                && l.contains(&format!("worker{{worker={worker}}}"))
                && !l.contains("records=0 ")),
            "worker {worker} committed no records"
        );
    }
    assert!(log.contains("-w1"), "worker 1 has its own transactional id");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let input_topic = unique("json-logs");
    let output_topic = unique("json-logs-out");
    create_topic(&input_topic, 1);
    create_topic(&output_topic, 1);
    let mut cfg = DaemonConfig::new(
        &unique("group"),
        &input_topic,
        &output_topic,
        &unique("txn"),
    );
    cfg.extra_env = vec![("EXACTLY__LOG__FORMAT".into(), "json".into())];
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_ready();
    let (status, _) = daemon.terminate();
    assert!(status.success());
    let text = daemon.log_text();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{l}"
        );
    }
}

#[test]
fn librdkafka_debug_contexts_set_in_the_producer_table_reach_the_log() {
    // An operator diagnosing a slow commit sets `debug = "eos"`; librdkafka
    // logs those contexts at level 7, which the client's default level drops.
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("debuglog", 2, 2);
    let input = input_records(200, 5);
    produce(&input_topic, &input);

    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    cfg.extra_toml = "[kafka.producer]\ndebug = \"eos\"\n".into();
    cfg.extra_env = vec![(
        "RUST_LOG".into(),
        "info,exactly=debug,librdkafka=debug".into(),
    )];
    let daemon = Daemon::run_to_end(&cfg);

    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("librdkafka") && l.contains("TXNAPI")),
        "no librdkafka transaction debug lines in the log:\n{log}"
    );
    let a = audit(&input, &read_all(&output_topic, "read_committed"));
    assert!(a.is_exactly_once(), "{a:?}");
}
