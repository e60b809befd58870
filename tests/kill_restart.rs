//! `kill -9` in the middle of the stream, then a restart with the same
//! configuration: every input exactly once. The same schedule in
//! at_least_once mode duplicates — so these audits can see duplicates.

mod support;

use std::time::Instant;

use support::*;

struct Run {
    input: Vec<Rec>,
    output: Vec<OutRec>,
    uncommitted_len: usize,
}

/// Streams records while a daemon is killed with SIGKILL in the middle of a
/// transaction — once at least `open` consumed records are not committed
/// yet — then restarted under the same transactional id.
/// Kills the daemon once `open` consumed records wait for their commit. `open`
/// must stay below `max_batch` so that the kill lands inside a transaction,
/// not at its (quick) commit.
fn kill_and_restart(
    guarantee: &'static str,
    commit_interval_ms: u64,
    max_batch: usize,
    open: f64,
) -> Run {
    assert!(open < max_batch as f64);
    let Pipeline {
        input: input_topic,
        output: output_topic,
        group,
    } = Pipeline::create("kill", 4, 4);
    let input = input_records(40_000, 101);
    let writer = produce_paced(&input_topic, input.clone(), 10_000);

    let mut cfg = DaemonConfig::new(&group, &input_topic, &output_topic, &unique("txn"));
    cfg.guarantee = guarantee;
    cfg.fixed_cadence(commit_interval_ms);
    cfg.max_batch_records = max_batch;
    let mut first = Daemon::start(&cfg);
    first.wait_ready();
    first.wait_produced(5_000.0);
    wait_until("an open transaction holding records", || {
        first.assert_alive();
        first.metric("exactly_records_consumed_total")
            - first.metric("exactly_records_produced_total")
            >= open
    });
    first.kill9();

    let restarted_at = Instant::now();
    let mut second = Daemon::start(&cfg);
    let start = Instant::now();
    while second.metric("exactly_transactions_total{outcome=\"committed\"}") < 1.0 {
        assert!(
            start.elapsed() < WAIT,
            "no commit after restart:\n{}",
            second.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    eprintln!(
        "{guarantee}: restart to first committed transaction: {:?}",
        restarted_at.elapsed()
    );
    writer.join().unwrap();
    wait_caught_up(&group, &input_topic, &mut [&mut second]);
    let output = read_all(&output_topic, "read_committed");
    let uncommitted_len = read_all(&output_topic, "read_uncommitted").len();
    Run {
        input,
        output,
        uncommitted_len,
    }
}

#[test]
fn kill_9_mid_stream_then_restart_loses_and_duplicates_nothing() {
    let run = kill_and_restart("exactly_once", 100, 2_000, 300.0);
    let a = audit(&run.input, &run.output);
    eprintln!(
        "exactly_once: {a:?}; read_uncommitted sees {} records, read_committed {}",
        run.uncommitted_len,
        run.output.len()
    );
    assert!(a.is_exactly_once(), "{a:?}");
    assert_eq!(a.order_violations, 0, "{a:?}");
}

#[test]
fn kill_9_in_at_least_once_mode_duplicates_records() {
    // Longer batches: the kill lands among acknowledged outputs whose offsets
    // are not committed yet.
    let run = kill_and_restart("at_least_once", 1_000, 20_000, 2_000.0);
    let a = audit(&run.input, &run.output);
    eprintln!("at_least_once: {a:?}");
    assert_eq!(a.missing, 0, "at_least_once must not lose records: {a:?}");
    assert!(
        a.duplicated > 0,
        "expected duplicates after kill -9 in at_least_once mode: {a:?}"
    );
}
