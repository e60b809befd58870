//! In-process recovery from a fence of the worker's own making.
//!
//! librdkafka reports two very different situations with the same words:
//! - a **rival** — another live process with the same transactional id, or
//!   a member that took the `group.instance.id` — fenced this worker: it
//!   must stop (exit 1), or the two would fence each other for ever;
//! - **nobody** did: the worker's own transaction outlived
//!   `transaction.timeout.ms` while the broker was unreachable, and the
//!   coordinator aborted it and bumped the producer epoch; or the consumer's
//!   session expired during the outage and its rejoin fenced its own earlier
//!   membership (librdkafka issue 3437).
//!
//! The worker tells them apart from what it saw itself: how long its open
//! transaction had been open when the producer was fenced, and whether the
//! consumer lost its assignment to a session timeout shortly before it was
//! fenced. Only the second kind is a [`Recoverable`] error; and recoveries
//! are bounded ([`Recoveries`]), so that a misjudged rival cannot make two
//! instances fence each other in a loop.

use std::time::{Duration, Instant};

/// At most this many recoveries ...
pub const MAX_RECOVERIES: usize = 5;
/// ... within this window; one more ends the worker.
pub const RECOVERY_WINDOW: Duration = Duration::from_secs(600);

/// Every [`Recoverable::kind`], for the metric's series to exist from the start.
pub const CAUSES: [&str; 4] = [
    "transaction_timed_out",
    "session_expired",
    "unanswered",
    "init_timed_out",
];

/// An error the worker can recover from in-process by replacing its
/// producer and consumer under the same ids.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Recoverable {
    /// A short cause for the metric label: `transaction_timed_out`,
    /// `session_expired`, `unanswered`, `init_timed_out`.
    pub kind: &'static str,
    /// What happened.
    pub message: String,
}

impl Recoverable {
    /// A recoverable error of `kind`, one of [`CAUSES`].
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(CAUSES.contains(&kind), "unlisted recovery cause {kind}");
        Recoverable {
            kind,
            message: message.into(),
        }
    }
}

/// The recoveries of one worker in the last [`RECOVERY_WINDOW`].
#[derive(Debug, Default)]
pub struct Recoveries {
    at: Vec<Instant>,
}

impl Recoveries {
    /// Counts a recovery at `now`, or refuses it when the bound is reached.
    pub fn allow(&mut self, now: Instant) -> Result<(), String> {
        self.at
            .retain(|t| now.saturating_duration_since(*t) < RECOVERY_WINDOW);
        if self.at.len() >= MAX_RECOVERIES {
            return Err(format!(
                "{} in-process recoveries within {} s: giving up (a rival instance, or a cluster that stays unreachable)",
                self.at.len(),
                RECOVERY_WINDOW.as_secs()
            ));
        }
        self.at.push(now);
        Ok(())
    }
}

/// Whether a fenced producer can have been fenced by the coordinator's own
/// clock: its transaction had been open at least the transaction timeout.
/// A rival fences a transaction of ordinary age.
pub fn outlived_timeout(began: Option<Instant>, now: Instant, timeout: Duration) -> bool {
    began.is_some_and(|b| now.saturating_duration_since(b) >= timeout)
}

/// Whether a fenced static member can have fenced itself: its assignment was
/// lost (a session timeout) shortly before. A member that took the
/// `group.instance.id` from a healthy consumer leaves no such trace.
pub fn lost_recently(lost_at: Option<Instant>, now: Instant, session_timeout: Duration) -> bool {
    // The fence follows the rejoin, which follows the broker's return: allow
    // a few session timeouts and a minute for the broker to come back.
    let window = session_timeout * 3 + Duration::from_secs(60);
    lost_at.is_some_and(|t| now.saturating_duration_since(t) <= window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recoveries_are_bounded_within_the_window() {
        let mut r = Recoveries::default();
        let t0 = Instant::now();
        for i in 0..MAX_RECOVERIES {
            assert!(r.allow(t0 + Duration::from_secs(i as u64)).is_ok());
        }
        assert!(r.allow(t0 + Duration::from_secs(10)).is_err());
        // Old ones age out of the window.
        assert!(r
            .allow(t0 + RECOVERY_WINDOW + Duration::from_secs(5))
            .is_ok());
    }

    #[test]
    fn only_a_transaction_older_than_its_timeout_can_be_fenced_by_the_clock() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        assert!(!outlived_timeout(None, t0, timeout));
        assert!(!outlived_timeout(
            Some(t0),
            t0 + Duration::from_millis(150),
            timeout
        ));
        assert!(outlived_timeout(
            Some(t0),
            t0 + Duration::from_secs(12),
            timeout
        ));
    }

    #[test]
    fn only_a_member_that_lost_its_session_can_have_fenced_itself() {
        let t0 = Instant::now();
        let session = Duration::from_secs(6);
        assert!(!lost_recently(None, t0, session));
        assert!(lost_recently(
            Some(t0),
            t0 + Duration::from_secs(30),
            session
        ));
        assert!(!lost_recently(
            Some(t0),
            t0 + Duration::from_secs(600),
            session
        ));
    }
}
