//! Unit tests of the metrics: what a scrape shows after each event.

use super::*;

#[test]
fn rendered_text_names_every_required_metric() {
    let m = Metrics::new();
    m.record_consumed();
    m.transaction_committed(&committed(0, 5, 2_000));
    m.transaction_aborted();
    m.rebalance("assigned");
    m.assignment(0, 2);
    m.consumer_lag("orders", 1, 7);
    let text = m.render();
    for name in [
        "exactly_records_consumed_total 1",
        "exactly_records_produced_total 3",
        "exactly_transactions_total{outcome=\"committed\"} 1",
        "exactly_transactions_total{outcome=\"aborted\"} 1",
        "exactly_transaction_duration_seconds_count 1",
        "exactly_commit_duration_seconds_count 1",
        "exactly_rebalances_total{event=\"assigned\"} 1",
        "exactly_assigned_partitions 2",
        "exactly_consumer_lag{partition=\"1\",topic=\"orders\"} 7",
        "exactly_transaction_input_records_count 1",
        "exactly_transaction_input_records_sum 5",
        "exactly_transaction_input_bytes_sum 2000",
        "exactly_build_info{librdkafka=\"",
        "process_resident_memory_bytes ",
    ] {
        assert!(text.contains(name), "missing `{name}` in:\n{text}");
    }
}

fn committed(worker: usize, input_records: usize, input_bytes: usize) -> Committed {
    Committed {
        worker,
        input_records,
        input_bytes,
        outputs: 3,
        took: Duration::from_millis(20),
        commit_took: Duration::from_millis(4),
    }
}

/// The value of the sample that starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
}

#[test]
fn a_forgotten_partition_has_no_lag_series() {
    let m = Metrics::new();
    m.consumer_lag("orders", 1, 7);
    m.uncommitted_records("orders", 1, 7);
    assert!(m.render().contains("exactly_consumer_lag_seconds{"));
    m.forget_partition("orders", 1);
    let text = m.render();
    assert!(!text.contains("exactly_consumer_lag{"), "{text}");
    assert!(!text.contains("exactly_consumer_lag_seconds{"), "{text}");
}

#[test]
fn record_buckets_are_powers_of_ten_up_to_a_million() {
    assert_eq!(INPUT_RECORD_BUCKETS.first(), Some(&1.0));
    assert_eq!(INPUT_RECORD_BUCKETS.last(), Some(&1_000_000.0));
    for w in INPUT_RECORD_BUCKETS.windows(2) {
        assert_eq!(w[1], w[0] * 10.0);
    }
}

#[test]
fn byte_buckets_grow_by_four_from_1_kib_to_64_mib() {
    let b = input_byte_buckets();
    assert_eq!(b.first(), Some(&1024.0));
    assert_eq!(b.last(), Some(&(64.0 * 1024.0 * 1024.0)));
    // The default max_batch_bytes (16 MiB) is a boundary.
    assert!(b.contains(&(16.0 * 1024.0 * 1024.0)));
    for w in b.windows(2) {
        assert_eq!(w[1], w[0] * 4.0);
    }
}

#[test]
fn a_transaction_falls_in_the_bucket_of_its_size() {
    let m = Metrics::new();
    m.transaction_committed(&committed(0, 150, 5_000));
    let text = m.render();
    assert_eq!(
        sample(
            &text,
            "exactly_transaction_input_records_bucket{le=\"100\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "exactly_transaction_input_records_bucket{le=\"1000\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "exactly_transaction_input_bytes_bucket{le=\"4096\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "exactly_transaction_input_bytes_bucket{le=\"16384\"}"
        ),
        1.0
    );
}

#[test]
fn assigned_partitions_is_the_sum_of_the_workers_assignments() {
    let m = Metrics::new();
    m.assignment(0, 3);
    m.assignment(1, 2);
    // A worker's new assignment replaces its old one, whatever the events.
    m.assignment(0, 1);
    assert_eq!(sample(&m.render(), "exactly_assigned_partitions "), 3.0);
}

#[test]
fn the_last_commit_starts_at_the_worker_start_and_follows_commits() {
    let m = Metrics::new();
    let before = unix_seconds();
    m.worker_started(1);
    let started = sample(
        &m.render(),
        "exactly_last_commit_timestamp_seconds{worker=\"1\"}",
    );
    assert!(started >= before && started <= unix_seconds());
    m.transaction_committed(&committed(1, 1, 1));
    let last = sample(
        &m.render(),
        "exactly_last_commit_timestamp_seconds{worker=\"1\"}",
    );
    assert!(last >= started);
}

#[test]
fn the_lag_in_seconds_is_the_age_of_the_first_uncommitted_record() {
    let m = Metrics::new();
    m.uncommitted_records("orders", 0, 5);
    let ten_s_ago = unix_millis() - 10_000;
    m.input_read("orders", 0, 42, Some(ten_s_ago));
    let age = sample(&m.render(), "exactly_consumer_lag_seconds{partition=\"0\"");
    assert!((10.0..20.0).contains(&age), "{age}");
    m.input_committed("orders", 0, 43);
    m.uncommitted_records("orders", 0, 0);
    assert_eq!(
        sample(&m.render(), "exactly_consumer_lag_seconds{partition=\"0\""),
        0.0
    );
}
