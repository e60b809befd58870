//! Retrying a query within a time budget (a coordinator that moves or loads
//! answers NOT_COORDINATOR or times out for a while).

use std::time::{Duration, Instant};

/// Calls `attempt` (with its number, from 1) until it succeeds, `stop()`
/// says to give up, or the next try would start after `budget`; sleeps
/// `backoff` between tries. The last error is returned.
pub(super) fn retry_within<T, E>(
    budget: Duration,
    backoff: Duration,
    mut stop: impl FnMut() -> bool,
    mut attempt: impl FnMut(u32) -> Result<T, E>,
) -> Result<T, E> {
    let start = Instant::now();
    let mut n = 1;
    loop {
        let result = attempt(n);
        if result.is_ok() || stop() || start.elapsed() + backoff > budget {
            return result;
        }
        std::thread::sleep(backoff);
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::retry_within;

    #[test]
    fn a_refusal_is_retried_until_an_answer_comes() {
        let mut calls = 0;
        let r: Result<u32, &str> = retry_within(
            Duration::from_secs(60),
            Duration::ZERO,
            || false,
            |n| {
                calls += 1;
                if n < 5 {
                    Err("NOT_COORDINATOR")
                } else {
                    Ok(n)
                }
            },
        );
        assert_eq!(r, Ok(5));
        assert_eq!(calls, 5);
    }

    #[test]
    fn retries_end_with_the_last_error_when_the_budget_is_spent_or_a_stop_comes() {
        let spent: Result<(), String> = retry_within(
            Duration::from_millis(30),
            Duration::from_millis(10),
            || false,
            |n| Err(format!("refusal {n}")),
        );
        let last = spent.unwrap_err();
        assert!(last.starts_with("refusal "), "{last}");
        assert_ne!(last, "refusal 1", "the budget allowed more than one try");

        let mut calls = 0;
        let stopped: Result<(), &str> = retry_within(
            Duration::from_secs(60),
            Duration::from_secs(60),
            || true,
            |_| {
                calls += 1;
                Err("NOT_COORDINATOR")
            },
        );
        assert_eq!(stopped, Err("NOT_COORDINATOR"));
        assert_eq!(calls, 1, "a stop request ends the retries at once");
    }
}
