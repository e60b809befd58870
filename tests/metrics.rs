//! What `/metrics` shows a monitoring system, scraped from a running daemon:
//! identity and process series, the last commit per worker, transaction
//! sizes, fatal-error causes, the assignment and the lag in seconds — the
//! series `deploy/prometheus/` rules and dashboard read.

mod support;

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
