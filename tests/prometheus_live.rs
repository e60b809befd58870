//! The shipped alert rules and dashboard against a real Prometheus server
//! scraping running daemons: a healthy flow fires nothing; a replica frozen
//! with SIGSTOP is reported down; a replica that keeps reading but never
//! commits while records wait fires ExactlyNoCommitWhileLagging; poison
//! records under a dead-letter topic fire ExactlyDeadLettersRising; and every
//! query of `deploy/grafana/exactly-dashboard.json` runs on the result.
//!
//! Prometheus scrapes every second and evaluates every second. The rules are
//! `deploy/prometheus/exactly-rules.yaml` with each non-zero `for:` shortened
//! to 10 s in a generated copy (see `rules_with_short_for`): the expressions
//! and thresholds are the shipped ones, so e.g. the 120 s without a commit
//! of ExactlyNoCommitWhileLagging is waited for in full. Each deployment
//! (one consumer group) is its own scrape job, as in production; every job
//! name contains `exactly`, which the rules' `job=~".*exactly.*"` selects.
//!
//! Measured times are printed with `eprintln!` (run with `--nocapture`).

#[path = "support/prometheus.rs"]
mod prometheus;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{rules_with_short_for, wait_for, Job, Prometheus};
use serde_json::Value;
use support::*;

/// The `for:` every alert of the test copy of the rules gets.
const SHORT_FOR: &str = "10s";

/// Upper bound for one alert to go pending or firing; exceeded only by a bug
/// (the longest wait, ExactlyNoCommitWhileLagging, needs 120 s + 10 s).
const ALERT_WAIT: Duration = Duration::from_secs(300);

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn json_orders(range: std::ops::Range<usize>) -> Vec<Rec> {
    range
        .map(|i| Rec {
            key: Some(format!("k{}", i % 5).into_bytes()),
            value: Some(format!("{{\"id\": {i}}}").into_bytes()),
            headers: vec![("seq".into(), Some(i.to_string().into_bytes()))],
        })
        .collect()
}

fn start(cfg: &DaemonConfig) -> Daemon {
    let mut d = Daemon::start(cfg);
    d.wait_ready();
    d.wait_assigned();
    d
}

/// Every PromQL expression of the dashboard, with what it belongs to:
/// panel targets, the alert annotation, and the variables' `label_values`
/// selectors.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_path("deploy/grafana/exactly-dashboard.json"))
        .expect("read the dashboard");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let what = format!(
                    "panel {} \"{}\" {}",
                    p["id"],
                    p["title"].as_str().unwrap_or_default(),
                    t["refId"].as_str().unwrap_or_default()
                );
                out.push((what, expr.to_owned()));
            }
        }
    }
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            out.push((format!("annotation \"{}\"", a["name"]), expr.to_owned()));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        if let Some(inner) = q
            .and_then(|q| q.strip_prefix("label_values("))
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _)| selector)
        {
            out.push((format!("variable {}", v["name"]), inner.to_owned()));
        }
    }
    out
}

/// Grafana's variables as Grafana would substitute them with "All" selected
/// and a dashboard range longer than this test.
fn grafana_substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("\"$job\"", "\".+\"")
        .replace("\"$instance\"", "\".+\"")
}

#[test]
fn shipped_alerts_fire_on_a_frozen_a_stuck_and_a_poisoned_daemon_and_not_on_a_healthy_one() {
    // --- three deployments, each its own consumer group and scrape job
    let healthy = Pipeline::create("prom-healthy", 3, 1);
    let stuck = Pipeline::create("prom-stuck", 1, 1);
    let poisoned = Pipeline::create("prom-dlq", 1, 1);
    let dlq = unique("prom-dlq-dead");
    create_topic(&dlq, 1);

    // A replica that reads and never commits: every transaction aborts after
    // producing its records (the test hook EXACTLY_TEST_ABORT_EVERY=1, which
    // also keeps "five aborts in a row" from ending the process), and each
    // abort rewinds to the committed offset. With 5 records per transaction
    // its position never gets far past the committed offset while 500
    // records wait behind it.
    //
    // First a normal replica under the same identity commits 100 records,
    // as a replica that worked before it got stuck: its partition then has
    // a committed offset, which librdkafka fetches at assignment and the
    // lag gauge counts from while a rewind has reset the position. (Without
    // one, and without a commit of its own, a replica reports lag only when
    // librdkafka's statistics happen to fall between a read and the next
    // rewind: one run of this test saw no `exactly_consumer_lag` series in
    // 5 minutes.)
    let stuck_txid = unique("t");
    produce(&stuck.input, &input_records(100, 5));
    let mut before = Daemon::run_to_end(&DaemonConfig::new(
        &stuck.group,
        &stuck.input,
        &stuck.output,
        &stuck_txid,
    ));
    assert!(before.terminate().0.success());
    drop(before);
    produce(&stuck.input, &input_records(500, 5));
    let mut stuck_cfg = DaemonConfig::new(&stuck.group, &stuck.input, &stuck.output, &stuck_txid);
    stuck_cfg.max_batch_records = 5;
    stuck_cfg.extra_env = vec![("EXACTLY_TEST_ABORT_EVERY".into(), "1".into())];
    let stuck_started = unix_seconds();
    let mut stuck_d = start(&stuck_cfg);

    let healthy_cfg = DaemonConfig::new(
        &healthy.group,
        &healthy.input,
        &healthy.output,
        &unique("t"),
    );
    let mut healthy_d = start(&healthy_cfg);

    // JSON input (the default input.format) through one map step: a value
    // that is not JSON fails to decode and goes to the dead-letter topic.
    let mut dlq_cfg = DaemonConfig::new(
        &poisoned.group,
        &poisoned.input,
        &poisoned.output,
        &unique("t"),
    );
    dlq_cfg.extra_toml = format!(
        "[dead_letter]\ntopic = \"{dlq}\"\n\n[[transform]]\ntype = \"map\"\nname = \"parse\"\nexpr = \".\"\n"
    );
    let mut dlq_d = start(&dlq_cfg);

    // --- Prometheus with the shipped rules, `for:` shortened
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("exactly-rules.yaml");
    let shortened = rules_with_short_for(
        &repo_path("deploy/prometheus/exactly-rules.yaml"),
        &rules,
        SHORT_FOR,
    );
    assert!(shortened > 0, "no `for:` found to shorten");
    let target = |d: &Daemon| vec![format!("127.0.0.1:{}", d.http_port)];
    let prom = Prometheus::start(
        &[
            Job {
                name: "exactly".into(),
                targets: target(&healthy_d),
            },
            Job {
                name: "exactly-stuck".into(),
                targets: target(&stuck_d),
            },
            Job {
                name: "exactly-dead-letters".into(),
                targets: target(&dlq_d),
            },
        ],
        &rules,
    );
    let prom_ready = unix_seconds();
    let t = Instant::now();
    wait_for("every job scraped", t, ALERT_WAIT, || {
        prom.value(r#"count(up{job=~".*exactly.*"} == 1)"#) == Some(3.0)
    });
    // The rules load and evaluate: a recorded series appears for each job.
    wait_for("the recording rules evaluated", t, ALERT_WAIT, || {
        prom.value("count(instance:exactly_assigned_partitions:sum)") == Some(3.0)
    });

    // --- healthy flow: input flows and is committed; nothing of job
    // `exactly` fires (pending is reported, not failed).
    let input = input_records(1_500, 7);
    let feeder = produce_paced(&healthy.input, input.clone(), 100);
    let mut pending_seen = BTreeSet::new();
    let check_healthy = |pending_seen: &mut BTreeSet<String>| {
        for a in prom.alerts() {
            // ExactlyAbsent carries no job label: it counts here too.
            if a.label("job").is_some_and(|j| j != "exactly") {
                continue;
            }
            assert_ne!(a.state, "firing", "alert fired on a healthy flow: {a:?}");
            pending_seen.insert(a.name.clone());
        }
    };
    let healthy_start = Instant::now();
    wait_for(
        "Prometheus to see every healthy input committed",
        healthy_start,
        ALERT_WAIT,
        || {
            check_healthy(&mut pending_seen);
            prom.value(r#"sum(exactly_records_produced_total{job="exactly"})"#)
                == Some(input.len() as f64)
        },
    );
    feeder.join().unwrap();
    wait_caught_up(&healthy.group, &healthy.input, &mut [&mut healthy_d]);
    // One rule evaluation later than the last scrape checked above: the
    // recorded series' sample is newer than now.
    let seen_at = unix_seconds();
    wait_for(
        "a rule evaluation after the flow",
        healthy_start,
        ALERT_WAIT,
        || {
            check_healthy(&mut pending_seen);
            prom.value(r#"timestamp(instance:exactly_assigned_partitions:sum{job="exactly"})"#)
                .is_some_and(|ts| ts > seen_at)
        },
    );
    check_healthy(&mut pending_seen);
    eprintln!(
        "healthy flow: {} records committed in {:.1?}, no alert fired; pending meanwhile: {:?}",
        input.len(),
        healthy_start.elapsed(),
        pending_seen
    );

    // --- frozen: SIGSTOP while input waits
    healthy_d.signal("STOP");
    let stopped = Instant::now();
    let waiting = input_records(300, 3);
    produce(&healthy.input, &waiting);
    let state = |name: &str| prom.alert_state(name, "exactly");
    let down_pending = wait_for("ExactlyDown pending", stopped, ALERT_WAIT, || {
        state("ExactlyDown").is_some()
    });
    let all_down_pending = wait_for(
        "ExactlyAllReplicasDown pending",
        stopped,
        ALERT_WAIT,
        || state("ExactlyAllReplicasDown").is_some(),
    );
    let down_firing = wait_for("ExactlyDown firing", stopped, ALERT_WAIT, || {
        state("ExactlyDown").as_deref() == Some("firing")
    });
    let all_down_firing = wait_for("ExactlyAllReplicasDown firing", stopped, ALERT_WAIT, || {
        state("ExactlyAllReplicasDown").as_deref() == Some("firing")
    });
    // A failed scrape marks every series of the target stale: the inputs of
    // ExactlyNoCommitWhileLagging (last commit, lag) are gone while the
    // replica is frozen, so that alert cannot fire for it; ExactlyDown and
    // ExactlyAllReplicasDown are the alerts for a replica that hangs whole.
    assert_eq!(
        prom.query(r#"instance:exactly_last_commit_age_seconds:min{job="exactly"}"#),
        Ok(vec![]),
        "a frozen replica's last-commit age should be stale"
    );
    assert_eq!(state("ExactlyNoCommitWhileLagging"), None);
    eprintln!(
        "SIGSTOP: ExactlyDown pending after {down_pending:.1?}, firing after {down_firing:.1?}; \
         ExactlyAllReplicasDown pending after {all_down_pending:.1?}, firing after {all_down_firing:.1?} \
         (for: {SHORT_FOR}); ExactlyNoCommitWhileLagging inactive (its series are stale)"
    );
    healthy_d.signal("CONT");
    let resumed = Instant::now();
    wait_caught_up(&healthy.group, &healthy.input, &mut [&mut healthy_d]);
    let resolved = wait_for("ExactlyDown to resolve", resumed, ALERT_WAIT, || {
        state("ExactlyDown").is_none() && state("ExactlyAllReplicasDown").is_none()
    });
    eprintln!("SIGCONT: the waiting input committed and both alerts resolved after {resolved:.1?}");

    // --- poison records under a dead-letter topic
    let good = json_orders(0..200);
    produce(&poisoned.input, &good);
    wait_for(
        "Prometheus to see the good records committed",
        Instant::now(),
        ALERT_WAIT,
        || {
            prom.value(r#"sum(exactly_records_produced_total{job="exactly-dead-letters"})"#)
                == Some(good.len() as f64)
        },
    );
    assert_eq!(
        prom.alert_state("ExactlyDeadLettersRising", "exactly-dead-letters"),
        None,
        "no dead letter yet"
    );
    let poison: Vec<Rec> = (0..10)
        .map(|i| Rec {
            key: Some(format!("poison{i}").into_bytes()),
            value: Some(b"not json".to_vec()),
            headers: Vec::new(),
        })
        .collect();
    let poisoned_at = Instant::now();
    produce(&poisoned.input, &poison);
    let dl_state = || prom.alert_state("ExactlyDeadLettersRising", "exactly-dead-letters");
    let dl_pending = wait_for(
        "ExactlyDeadLettersRising pending",
        poisoned_at,
        ALERT_WAIT,
        || dl_state().is_some(),
    );
    let dl_firing = wait_for(
        "ExactlyDeadLettersRising firing",
        poisoned_at,
        ALERT_WAIT,
        || dl_state().as_deref() == Some("firing"),
    );
    assert_eq!(
        prom.value(r#"sum(exactly_dead_letter_records_total{job="exactly-dead-letters"})"#),
        Some(poison.len() as f64)
    );
    assert_eq!(
        read_all(&dlq, "read_committed").len(),
        poison.len(),
        "one dead letter per poison record"
    );
    dlq_d.assert_alive();
    eprintln!(
        "poison: ExactlyDeadLettersRising pending after {dl_pending:.1?}, firing after {dl_firing:.1?} \
         (for: {SHORT_FOR}; {} poison among {} records)",
        poison.len(),
        good.len() + poison.len()
    );

    // --- stuck: alive and scraped, reading, never committing, lag waiting
    let nc_state = || prom.alert_state("ExactlyNoCommitWhileLagging", "exactly-stuck");
    let t = Instant::now();
    wait_for("ExactlyNoCommitWhileLagging pending", t, ALERT_WAIT, || {
        stuck_d.assert_alive();
        nc_state().is_some()
    });
    let nc_pending = unix_seconds() - stuck_started;
    let last_commit = prom
        .value(r#"max(exactly_last_commit_timestamp_seconds{job="exactly-stuck"})"#)
        .expect("the stuck replica's last-commit series");
    let pending_after_commit = unix_seconds() - last_commit;
    wait_for("ExactlyNoCommitWhileLagging firing", t, ALERT_WAIT, || {
        stuck_d.assert_alive();
        nc_state().as_deref() == Some("firing")
    });
    let nc_firing = unix_seconds() - stuck_started;
    let firing_after_commit = unix_seconds() - last_commit;
    let (committed, end) = committed_and_end(&stuck.group, &stuck.input);
    assert_eq!(committed, 100, "the stuck replica committed input");
    assert_eq!(end, 600);
    let lag = prom
        .value(r#"sum(exactly_consumer_lag{job="exactly-stuck"})"#)
        .expect("the stuck replica's lag");
    assert!(lag > 0.0, "lag {lag}");
    eprintln!(
        "stuck (every transaction aborts, lag {lag}): ExactlyNoCommitWhileLagging pending \
         {pending_after_commit:.1} s after the last commit ({nc_pending:.1} s after the daemon \
         started), firing {firing_after_commit:.1} s after it ({nc_firing:.1} s after the start)"
    );
    // The same replica aborts one transaction a second from before the
    // first scrape: ExactlyAbortRateHigh needs more than 10 aborts in its
    // window, then its `for`. When it went pending and firing, read from
    // Prometheus' own ALERTS series, counted from Prometheus' start.
    let first = |state: &str| {
        prom.value(&format!(
            "min_over_time(timestamp(ALERTS{{alertname=\"ExactlyAbortRateHigh\", \
             job=\"exactly-stuck\", alertstate=\"{state}\"}})[30m:1s])"
        ))
        .map(|ts| ts - prom_ready)
        .unwrap_or_else(|| panic!("ExactlyAbortRateHigh never {state} for exactly-stuck"))
    };
    let (abort_pending, abort_firing) = (first("pending"), first("firing"));
    assert!(abort_pending < abort_firing);
    eprintln!(
        "stuck: ExactlyAbortRateHigh pending {abort_pending:.1} s, firing {abort_firing:.1} s \
         after Prometheus started (for: {SHORT_FOR})"
    );

    // --- every query of the dashboard runs on this Prometheus
    let mut failed = Vec::new();
    let mut empty = Vec::new();
    let queries = dashboard_queries();
    assert!(queries.len() > 30, "only {} queries found", queries.len());
    for (what, expr) in &queries {
        let q = grafana_substitute(expr);
        assert!(
            !q.contains('$'),
            "unknown Grafana variable in {what}: {expr}"
        );
        match prom.query(&q) {
            Err(e) => failed.push(format!("{what}: {e}")),
            Ok(r) if r.is_empty() => empty.push(what.clone()),
            Ok(_) => {}
        }
    }
    eprintln!(
        "dashboard: {} queries, {} failed, {} returned nothing: {empty:#?}",
        queries.len(),
        failed.len(),
        empty.len()
    );
    assert!(failed.is_empty(), "queries failed: {failed:#?}");
    // Every series a panel reads exists after this run (the dead-letter
    // daemon fails records, the stuck one aborts, the firing alerts feed the
    // annotation), so every query returns data.
    assert!(empty.is_empty(), "queries returned nothing: {empty:#?}");

    healthy_d.assert_alive();
    stuck_d.assert_alive();
    dlq_d.assert_alive();
}
