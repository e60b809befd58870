//! A transactional call that never returns ends the process.
//!
//! librdkafka (2.12, still open upstream as issues 5456 and 5511) can block
//! `send_offsets_to_transaction` for good, whatever its timeout: when the
//! group coordinator's broker left the cluster metadata (a rolling restart
//! shuts it down), the producer keeps the departed broker as coordinator and
//! never looks it up again, and the call's own timeout is never checked.
//! Seen here in a rolling restart of three brokers: a replica stopped
//! committing for good, with no error. No other thread can unblock the
//! call, and the worker's clients cannot be dropped while it runs.
//!
//! So every transactional call is armed: if it has not returned
//! [`GRACE`] after its own timeout, the process logs which call and exits
//! with code 1 without running exit handlers. Its restart under the same
//! transactional id fences the stuck producer and aborts its open
//! transaction, whose input is then read again: nothing is lost or
//! duplicated, and the replica's outage is one restart instead of forever.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long past its own timeout a call may still return before it is
/// taken for stuck.
pub const GRACE: Duration = Duration::from_secs(30);
/// How often the watchdog looks.
const TICK: Duration = Duration::from_secs(1);

struct Armed {
    call: String,
    deadline: Instant,
    since: Instant,
}

fn calls() -> &'static Mutex<HashMap<u64, Armed>> {
    static CALLS: OnceLock<Mutex<HashMap<u64, Armed>>> = OnceLock::new();
    CALLS.get_or_init(|| {
        std::thread::Builder::new()
            .name("txn-watchdog".into())
            .spawn(watch)
            .expect("start the transactional-call watchdog");
        Mutex::new(HashMap::new())
    })
}

/// Disarms its call when dropped (the call returned).
pub struct Guard(u64);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut c) = calls().lock() {
            c.remove(&self.0);
        }
    }
}

/// Arms the watchdog for `call`, which librdkafka was asked to finish
/// within `timeout`.
pub fn arm(call: &str, timeout: Duration) -> Guard {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let armed = Armed {
        call: call.to_owned(),
        deadline: now + timeout + GRACE,
        since: now,
    };
    if let Ok(mut c) = calls().lock() {
        c.insert(id, armed);
    }
    Guard(id)
}

/// The first armed call past its deadline at `now`, with how long it has run.
fn overdue(calls: &HashMap<u64, Armed>, now: Instant) -> Option<(String, Duration)> {
    calls
        .values()
        .find(|a| now >= a.deadline)
        .map(|a| (a.call.clone(), now - a.since))
}

fn watch() {
    loop {
        std::thread::sleep(TICK);
        let stuck = calls()
            .lock()
            .ok()
            .and_then(|c| overdue(&c, Instant::now()));
        if let Some((call, running)) = stuck {
            tracing::error!(
                call,
                running_secs = running.as_secs(),
                "{call} has not returned after {} s, {} s past its timeout: the Kafka client is stuck \
                 (librdkafka issues 5456 and 5511: a coordinator whose broker left the cluster is \
                 never looked up again). Exiting with code 1: a restart under the same \
                 transactional id fences this producer, aborts its open transaction and reads \
                 that input again",
                running.as_secs(),
                GRACE.as_secs()
            );
            crate::app::exit_now(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_overdue_only_past_its_timeout_and_the_grace() {
        let start = Instant::now();
        let mut calls = HashMap::new();
        calls.insert(
            1,
            Armed {
                call: "send_offsets_to_transaction".into(),
                deadline: start + Duration::from_secs(10) + GRACE,
                since: start,
            },
        );
        assert_eq!(overdue(&calls, start + Duration::from_secs(39)), None);
        let (call, running) = overdue(&calls, start + Duration::from_secs(40)).unwrap();
        assert_eq!(call, "send_offsets_to_transaction");
        assert_eq!(running, Duration::from_secs(40));
    }

    #[test]
    fn a_call_that_returned_is_disarmed() {
        let g = arm("commit_transaction", Duration::from_secs(10));
        let id = g.0;
        assert!(calls().lock().unwrap().contains_key(&id));
        drop(g);
        assert!(!calls().lock().unwrap().contains_key(&id));
    }
}
