//! Retrying a transactional call while librdkafka says it may succeed,
//! within the retry budget and what is left of a stop's budget.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

use super::TxnFailure;
use crate::engine::errors::{action_for, Action};

/// How long the transactional calls may still take: unbounded (each call
/// still has [`CALL_TIMEOUT`] and retries for [`RETRY_BUDGET`]) until a stop
/// is requested, then what is left of the stop budget. Zero means give up.
pub type TimeLeft<'a> = &'a dyn Fn() -> Option<Duration>;

/// The timeout of the next call: [`CALL_TIMEOUT`], or less when the time
/// left is shorter. `None` when no time is left.
pub(super) fn call_timeout(left: TimeLeft<'_>) -> Option<Duration> {
    match left() {
        None => Some(CALL_TIMEOUT),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d.min(CALL_TIMEOUT)),
    }
}

/// How long one librdkafka call may block before it is retried.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a retriable call keeps being retried before the worker gives up.
const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// Calls `f` with a timeout until it succeeds, retrying while the error is
/// retriable and the retry budget and the time left last. Each call's
/// timeout is cut to the time left, so that a stop's budget bounds the
/// whole sequence, not only the gaps between calls.
pub(super) fn retry(
    call: &str,
    left: TimeLeft<'_>,
    mut f: impl FnMut(Duration) -> Result<(), KafkaError>,
) -> Result<(), TxnFailure> {
    let started = Instant::now();
    loop {
        let Some(timeout) = call_timeout(left) else {
            return Err(TxnFailure::Fatal(format!(
                "{call} was not attempted: the stop budget is spent"
            )));
        };
        // A call stuck in librdkafka past its own timeout ends the process
        // (see `watchdog`).
        let guard = super::watchdog::arm(call, timeout);
        let result = f(timeout);
        drop(guard);
        let err = match result {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match action_for(&err) {
            Action::Retry if started.elapsed() < RETRY_BUDGET && call_timeout(left).is_some() => {
                tracing::warn!(call, error = %err, "retrying");
            }
            Action::Retry => {
                return Err(TxnFailure::TimedOut(format!(
                    "{call} did not succeed within {} s: {err}",
                    started.elapsed().as_secs()
                )))
            }
            _ => return Err(TxnFailure::of(call, &err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_timeouts_shrink_to_the_time_left() {
        assert_eq!(call_timeout(&|| None), Some(CALL_TIMEOUT));
        let short = Duration::from_millis(300);
        assert_eq!(call_timeout(&|| Some(short)), Some(short));
        assert_eq!(
            call_timeout(&|| Some(Duration::from_secs(60))),
            Some(CALL_TIMEOUT)
        );
        assert_eq!(call_timeout(&|| Some(Duration::ZERO)), None);
    }
}
