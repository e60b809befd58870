use super::*;

/// A fixed cadence: no early close.
fn policy() -> BatchPolicy {
    BatchPolicy {
        max_records: 3,
        max_bytes: 100,
        interval: Duration::from_millis(100),
        min_interval: Duration::from_millis(100),
    }
}

fn eager(min_ms: u64) -> BatchPolicy {
    BatchPolicy {
        min_interval: Duration::from_millis(min_ms),
        ..policy()
    }
}

#[test]
fn the_close_reason_names_the_first_limit_reached() {
    let now = Instant::now();
    let mut b = Batch::default();
    assert_eq!(b.close_reason(&eager(0), now, true), None);
    b.open(now, &eager(0));
    assert_eq!(b.close_reason(&eager(0), now, false), None);
    assert_eq!(
        b.close_reason(&eager(0), now, true),
        Some(CloseReason::Drained)
    );
    let later = now + Duration::from_millis(100);
    assert_eq!(
        b.close_reason(&eager(0), later, true),
        Some(CloseReason::Interval)
    );
    b.add("t", 0, 100, 1);
    assert_eq!(
        b.close_reason(&eager(0), later, true),
        Some(CloseReason::Bytes)
    );
    b.add("t", 0, 1, 1);
    b.add("t", 0, 1, 1);
    assert_eq!(
        b.close_reason(&eager(0), now, false),
        Some(CloseReason::Records)
    );
}

#[test]
fn with_no_minimum_an_open_transaction_may_close_at_once() {
    let now = Instant::now();
    let mut b = Batch::default();
    assert!(!b.may_close_early(now));
    b.open(now, &eager(0));
    assert!(b.may_close_early(now));
    assert_eq!(b.time_left(now, Duration::from_secs(1)), Duration::ZERO);
    // Not due, though: a poll that finds a record goes on.
    assert!(!b.is_due(&eager(0), now));
}

#[test]
fn the_minimum_counts_from_the_last_commit_start() {
    let t0 = Instant::now();
    let mut b = Batch::default();
    b.open(t0, &eager(10));
    b.commit_started(t0 + Duration::from_millis(50));
    b.reset();
    let opened = t0 + Duration::from_millis(52);
    b.open(opened, &eager(10));
    assert!(!b.may_close_early(t0 + Duration::from_millis(59)));
    assert_eq!(
        b.time_left(opened, Duration::from_secs(1)),
        Duration::from_millis(8)
    );
    assert!(b.may_close_early(t0 + Duration::from_millis(60)));
}

#[test]
fn a_slow_commit_spaces_the_next_early_close() {
    let t0 = Instant::now();
    let mut b = Batch::default();
    b.open(t0, &eager(10));
    b.commit_started(t0);
    b.commit_finished(Duration::from_millis(20));
    b.reset();
    let opened = t0 + Duration::from_millis(21);
    b.open(opened, &eager(10));
    // 3 x 20 ms after the commit started, not 10 ms.
    assert!(!b.may_close_early(t0 + Duration::from_millis(59)));
    assert!(b.may_close_early(t0 + Duration::from_millis(60)));
    // Never past the interval.
    b.commit_finished(Duration::from_millis(500));
    b.reset();
    b.open(opened, &eager(10));
    assert!(b.may_close_early(t0 + Duration::from_millis(100)));
}

#[test]
fn a_fixed_cadence_closes_early_only_at_the_deadline() {
    let now = Instant::now();
    let mut b = Batch::default();
    b.open(now, &policy());
    assert!(!b.may_close_early(now + Duration::from_millis(99)));
    assert!(b.may_close_early(now + Duration::from_millis(100)));
}

#[test]
fn a_minimum_above_the_interval_is_the_interval() {
    let now = Instant::now();
    let mut b = Batch::default();
    b.open(now, &eager(500));
    assert!(b.may_close_early(now + Duration::from_millis(100)));
}

#[test]
fn a_closed_batch_is_never_due() {
    let b = Batch::default();
    assert!(!b.is_due(&policy(), Instant::now() + Duration::from_secs(10)));
}

#[test]
fn closes_on_record_count() {
    let now = Instant::now();
    let mut b = Batch::default();
    b.open(now, &policy());
    b.add("t", 0, 1, 1);
    b.add("t", 0, 1, 1);
    assert!(!b.is_due(&policy(), now));
    b.add("t", 1, 1, 1);
    assert!(b.is_due(&policy(), now));
}

#[test]
fn closes_on_bytes() {
    let now = Instant::now();
    let mut b = Batch::default();
    b.open(now, &policy());
    b.add("t", 0, 99, 1);
    assert!(!b.is_due(&policy(), now));
    b.add("t", 0, 1, 1);
    assert!(b.is_due(&policy(), now));
}

#[test]
fn closes_on_age() {
    let now = Instant::now();
    let mut b = Batch::default();
    b.open(now, &policy());
    assert!(!b.is_due(&policy(), now + Duration::from_millis(99)));
    assert!(b.is_due(&policy(), now + Duration::from_millis(100)));
}

#[test]
fn the_deadline_counts_from_the_last_commit_start() {
    let t0 = Instant::now();
    let mut b = Batch::default();
    b.open(t0, &policy());
    b.commit_started(t0 + Duration::from_millis(100));
    b.reset();
    // Opened 10 ms into the commit's cadence: due 90 ms later.
    let opened = t0 + Duration::from_millis(110);
    b.open(opened, &policy());
    assert!(!b.is_due(&policy(), t0 + Duration::from_millis(199)));
    assert!(b.is_due(&policy(), t0 + Duration::from_millis(200)));
}

#[test]
fn after_an_idle_spell_a_transaction_is_due_at_once() {
    let t0 = Instant::now();
    let mut b = Batch::default();
    b.open(t0, &policy());
    b.commit_started(t0);
    b.reset();
    let later = t0 + Duration::from_secs(5);
    b.open(later, &policy());
    assert!(b.is_due(&policy(), later));
}

#[test]
fn time_left_counts_down_from_the_interval() {
    let now = Instant::now();
    let idle = Duration::from_millis(500);
    let mut b = Batch::default();
    assert_eq!(b.time_left(now, idle), idle);
    b.open(now, &policy());
    assert_eq!(
        b.time_left(now + Duration::from_millis(30), idle),
        Duration::from_millis(70)
    );
    assert_eq!(
        b.time_left(now + Duration::from_secs(1), idle),
        Duration::ZERO
    );
}

#[test]
fn partitions_are_listed_once_each() {
    let mut b = Batch::default();
    b.open(Instant::now(), &policy());
    b.add("a", 0, 1, 1);
    b.add("a", 0, 1, 2);
    b.add("a", 1, 1, 0);
    b.add("b", 0, 1, 1);
    assert_eq!(b.partitions().len(), 3);
    assert_eq!(b.outputs(), 4);
    b.reset();
    assert!(!b.is_open());
    assert!(b.partitions().is_empty());
}
