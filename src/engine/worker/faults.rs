//! Fault injection for the tests, compiled in only with the cargo feature
//! `test-faults` (scripts/test.sh enables it; release builds and the image
//! do not):
//!
//! - `EXACTLY_TEST_ABORT_EVERY=N` aborts every Nth transaction after its
//!   records were produced, exactly where a crash before the commit would
//!   leave it;
//! - `EXACTLY_TEST_REDELIVER_EVERY=N` seeks, after every Nth commit, each
//!   partition it committed back by one record, so that the consumer hands
//!   the last committed record over again without a rewind — what a
//!   librdkafka pause racing a poll does (see `redelivery`).
//!
//! A build without the feature refuses to start when either is set, rather
//! than run a test that would pass without its fault.

/// The variables this module reads.
const VARIABLES: [&str; 2] = ["EXACTLY_TEST_ABORT_EVERY", "EXACTLY_TEST_REDELIVER_EVERY"];

#[cfg(feature = "test-faults")]
pub use enabled::{redeliver, Faults};

#[cfg(not(feature = "test-faults"))]
pub use disabled::{redeliver, Faults};

#[cfg(feature = "test-faults")]
mod enabled {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Offset, TopicPartitionList};

    use super::VARIABLES;
    use crate::engine::rebalance::QUERY_TIMEOUT;
    use crate::engine::worker::Clients;

    /// The faults asked for, and the transactions counted so far.
    #[derive(Default)]
    pub struct Faults {
        abort_every: Option<u64>,
        redeliver_every: Option<u64>,
        transactions: u64,
    }

    fn every(variable: &str) -> Option<u64> {
        std::env::var(variable)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
    }

    impl Faults {
        /// The faults the environment asks for.
        pub fn from_env() -> anyhow::Result<Faults> {
            Ok(Faults {
                abort_every: every(VARIABLES[0]),
                redeliver_every: every(VARIABLES[1]),
                transactions: 0,
            })
        }

        /// Counts a commit about to start; true if it is to be aborted.
        pub fn abort_now(&mut self) -> bool {
            self.transactions += 1;
            self.abort_every
                .is_some_and(|n| self.transactions.is_multiple_of(n))
        }

        /// Whether the commit that just succeeded is to be handed over again.
        pub fn redeliver_now(&self) -> bool {
            self.redeliver_every
                .is_some_and(|n| self.transactions.is_multiple_of(n))
        }

        /// Whether aborts are injected (they do not count as a failure that
        /// repeats on replay).
        pub fn aborts_injected(&self) -> bool {
            self.abort_every.is_some()
        }
    }

    /// Seeks each partition of `committed` one record back, without a
    /// rewind, as a librdkafka pause racing a poll leaves it.
    pub fn redeliver(consumer: &Clients, committed: &TopicPartitionList) {
        let mut back = TopicPartitionList::new();
        for e in committed.elements() {
            if let Offset::Offset(o) = e.offset() {
                if o > 0 {
                    let _ =
                        back.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o - 1));
                }
            }
        }
        if let Err(e) = consumer.seek_partitions(back, QUERY_TIMEOUT) {
            tracing::warn!(error = %e, "injected redelivery: seek failed");
        }
    }
}

#[cfg(not(feature = "test-faults"))]
mod disabled {
    use anyhow::bail;
    use rdkafka::TopicPartitionList;

    use super::VARIABLES;
    use crate::engine::worker::Clients;

    /// No fault injection in this build.
    pub struct Faults;

    impl Faults {
        /// Refuses a fault the environment asks for: this build cannot
        /// inject it.
        pub fn from_env() -> anyhow::Result<Faults> {
            Self::from_lookup(|v| std::env::var_os(v).is_some())
        }

        /// As [`Faults::from_env`], with `is_set` telling which variables
        /// are set.
        pub fn from_lookup(is_set: impl Fn(&str) -> bool) -> anyhow::Result<Faults> {
            for variable in VARIABLES {
                if is_set(variable) {
                    bail!("{variable} is set, but this build has no fault injection (build with the cargo feature test-faults, as scripts/test.sh does)");
                }
            }
            Ok(Faults)
        }

        #[inline(always)]
        pub fn abort_now(&mut self) -> bool {
            false
        }

        #[inline(always)]
        pub fn redeliver_now(&self) -> bool {
            false
        }

        #[inline(always)]
        pub fn aborts_injected(&self) -> bool {
            false
        }
    }

    /// Never called: `redeliver_now` is always false.
    pub fn redeliver(_: &Clients, _: &TopicPartitionList) {}

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_fault_asked_of_a_build_without_injection_is_refused_by_name() {
            assert!(Faults::from_lookup(|_| false).is_ok());
            for variable in VARIABLES {
                let Err(e) = Faults::from_lookup(|v| v == variable) else {
                    panic!("{variable} accepted by a build without fault injection");
                };
                assert!(e.to_string().starts_with(variable), "{e}");
            }
        }
    }
}
