//! What `/metrics` shows a monitoring system, scraped from a running daemon:
//! identity and process series, the last commit per worker, transaction
//! sizes, fatal-error causes, the assignment and the lag in seconds — the
//! series `deploy/prometheus/` rules and dashboard read.

mod support;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use support::*;

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The value of the one sample whose name and labels are exactly `sample`.
fn value(body: &str, sample: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn scrape(d: &Daemon) -> String {
    d.http_get("/metrics").expect("the daemon answers").1
}

/// key + value bytes, as `max_batch_bytes` and the bytes histogram count them.
fn payload_bytes(records: &[Rec]) -> usize {
    records
        .iter()
        .map(|r| r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len))
        .sum()
}

#[test]
fn a_running_daemon_serves_identity_commit_times_sizes_causes_and_assignment() {
    let p = Pipeline::create("metrics", 3, 1);
    let first = input_records(600, 7);
    produce(&p.input, &first);
    let started = unix_seconds();
    let cfg = DaemonConfig::new(&p.group, &p.input, &p.output, &unique("txn"));
    let mut d = Daemon::run_to_end(&cfg);

    let body = scrape(&d);
    let build = body
        .lines()
        .find(|l| l.starts_with("exactly_build_info{"))
        .unwrap_or_else(|| panic!("no build info in:\n{body}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && !build.contains("librdkafka=\"\"")
            && build.ends_with(" 1"),
        "{build}"
    );
    let rss = value(&body, "process_resident_memory_bytes").expect("process collector");
    assert!(rss > 0.0, "{rss}");
    for cause in [
        "fenced_producer",
        "fenced_instance",
        "aborts_in_a_row",
        "recoveries_exhausted",
        "not_authorized",
        "record_failed",
        "rewind_failed",
        "offsets_unreadable",
        "consumer_fatal",
        "final_commit",
        "panic",
        "other",
    ] {
        let s = format!("exactly_fatal_errors_total{{cause=\"{cause}\"}}");
        assert_eq!(value(&body, &s), Some(0.0), "{s} in:\n{body}");
    }
    for cause in [
        "transaction_timed_out",
        "session_expired",
        "unanswered",
        "init_timed_out",
    ] {
        let s = format!("exactly_worker_recoveries_total{{cause=\"{cause}\"}}");
        assert_eq!(value(&body, &s), Some(0.0), "{s} in:\n{body}");
    }
    assert_eq!(value(&body, "exactly_assigned_partitions"), Some(3.0));

    let last_commit = |d: &Daemon| {
        value(
            &scrape(d),
            "exactly_last_commit_timestamp_seconds{worker=\"0\"}",
        )
        .expect("a last-commit series for worker 0")
    };
    let t1 = last_commit(&d);
    assert!(
        t1 >= started && t1 <= unix_seconds(),
        "last commit {t1} outside [{started}, now]"
    );

    // More input: the next commit moves the timestamp forward.
    let second = input_records(300, 5);
    produce(&p.input, &second);
    wait_caught_up(&p.group, &p.input, &mut [&mut d]);
    wait_until("a later commit timestamp", || last_commit(&d) > t1);
    assert!(last_commit(&d) <= unix_seconds());

    // Every committed transaction is observed once in each size histogram,
    // and together they hold every input once: aborted transactions (if
    // any) are not observed.
    let all = first.len() + second.len();
    let bytes = payload_bytes(&first) + payload_bytes(&second);
    wait_until("the size histograms to match the commits", || {
        let body = scrape(&d);
        let committed = value(&body, "exactly_transactions_total{outcome=\"committed\"}");
        committed.is_some_and(|c| c > 0.0)
            && value(&body, "exactly_transaction_input_records_count") == committed
            && value(&body, "exactly_transaction_input_bytes_count") == committed
            && value(&body, "exactly_transaction_input_records_sum") == Some(all as f64)
            && value(&body, "exactly_transaction_input_bytes_sum") == Some(bytes as f64)
    });

    // Everything is committed: once librdkafka's statistics say so, every
    // held partition's oldest uncommitted input is 0 s old.
    wait_until("a zero lag in seconds on every partition", || {
        let body = scrape(&d);
        (0..3).all(|n| {
            let s = format!(
                "exactly_consumer_lag_seconds{{partition=\"{n}\",topic=\"{}\"}}",
                p.input
            );
            value(&body, &s) == Some(0.0)
        })
    });
    d.assert_alive();
}

#[test]
fn a_failing_named_step_is_named_and_the_failure_is_classified() {
    let p = Pipeline::create("metrics-fail", 1, 1);
    let mut input = input_records(5, 1);
    for r in &mut input {
        r.value = Some(br#"{"ok": true}"#.to_vec());
    }
    input.push(Rec {
        key: Some(b"bad".to_vec()),
        // input.format is json by default: this fails to decode.
        value: Some(b"not json".to_vec()),
        headers: Vec::new(),
    });
    produce(&p.input, &input);
    let mut cfg = DaemonConfig::new(&p.group, &p.input, &p.output, &unique("txn"));
    cfg.extra_toml = r#"
[dead_letter]
policy = "fail"

[[transform]]
type = "map"
name = "parse-orders"
expr = "."
"#
    .into();
    let mut d = Daemon::start(&cfg);
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    assert!(log.contains("@5: step parse-orders: decode"), "{log}");
    let failed = log
        .lines()
        .find(|l| l.contains("worker failed; stopping the others"))
        .unwrap_or_else(|| panic!("no worker failure in:\n{log}"));
    assert!(failed.contains("record_failed"), "{failed}");
}

/// The partitions whose `exactly_consumer_lag` series `body` holds.
fn lag_partitions(body: &str, topic: &str) -> BTreeSet<i32> {
    let prefix = "exactly_consumer_lag{partition=\"".to_string();
    let topic_label = format!("topic=\"{topic}\"");
    body.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&topic_label))
        .filter_map(|l| l[prefix.len()..].split('"').next()?.parse().ok())
        .collect()
}

/// How many statistics reports the daemon has logged.
fn statistics_reports(d: &Daemon) -> usize {
    d.log_text()
        .matches("statistics: lag reported for the held partitions")
        .count()
}

/// librdkafka's statistics go on listing a partition after it moved to
/// another member; the old owner must not report it (its lag would freeze
/// there, and the lag-in-seconds alert would fire on a healthy group).
#[test]
fn a_partition_that_moved_is_reported_by_its_new_owner_only() {
    let p = Pipeline::create("metrics-moved", 4, 1);
    let feeder = produce_paced(&p.input, input_records(6_000, 16), 200);
    let mut a = Daemon::start(&DaemonConfig::new(
        &p.group,
        &p.input,
        &p.output,
        &unique("txn-a"),
    ));
    a.wait_ready();
    wait_until("replica a reports the lag of all four partitions", || {
        a.assert_alive();
        lag_partitions(&scrape(&a), &p.input).len() == 4
    });

    let mut b = Daemon::start(&DaemonConfig::new(
        &p.group,
        &p.input,
        &p.output,
        &unique("txn-b"),
    ));
    b.wait_ready();
    let held = |d: &Daemon| value(&scrape(d), "exactly_assigned_partitions");
    wait_until("the group splits the four partitions two and two", || {
        a.assert_alive();
        b.assert_alive();
        held(&a) == Some(2.0) && held(&b) == Some(2.0)
    });
    // Two statistics reports of each replica after the split: any stale
    // series would be back by then.
    let (from_a, from_b) = (statistics_reports(&a), statistics_reports(&b));
    wait_until("two more statistics reports from each replica", || {
        statistics_reports(&a) >= from_a + 2 && statistics_reports(&b) >= from_b + 2
    });
    let (of_a, of_b) = (
        lag_partitions(&scrape(&a), &p.input),
        lag_partitions(&scrape(&b), &p.input),
    );
    assert!(
        of_a.len() == 2 && of_b.len() == 2 && of_a.is_disjoint(&of_b),
        "replica a reports {of_a:?}, b {of_b:?}"
    );
    assert_eq!(held(&a), Some(2.0), "the split held");
    feeder.join().unwrap();
}
