//! The exactly-once loop and its parts.
//!
//! - [`supervisor`]: the worker threads, their outcomes, and a safe exit.
//! - [`worker`]: one consumer + one transactional producer on an OS thread;
//!   its `cycle` module holds the begin → produce → send offsets →
//!   commit / abort → rewind sequence.
//! - [`events`]: every log line and metric of the loop, one method each.
//! - [`policy`]: the bad-record policy's verdict for a failed record.
//! - [`rebalance`]: the consumer context; aborts on revoke and loss.
//! - [`transaction`]: the producer and the transaction calls of each guarantee.
//! - [`batch`]: when a transaction closes.
//! - [`dead_letter`]: the record a failed input becomes in the dead-letter topic.
//! - [`offsets`]: positions to commit, and rewinding to committed offsets.
//! - [`quarantine`]: inputs whose outputs failed for good, kept from looping.
//! - [`redelivery`]: drops a record the consumer hands over a second time
//!   without a rewind (a librdkafka pause racing a poll).
//! - [`topics`]: which routed output topics exist, on the broker's word only.
//! - [`retired`]: fencing the transactional ids of workers this replica no
//!   longer runs.
//! - [`recovery`]: telling a rival's fence from one of the worker's own
//!   making, and bounding in-process recoveries.
//! - [`errors`]: librdkafka error classes mapped to retry / abort / fatal.
//! - [`fatal`]: the cause a worker's fatal error is tagged with, for the
//!   metric of failures that end the process.

pub mod batch;
pub mod dead_letter;
pub mod errors;
pub mod events;
pub mod fatal;
pub mod offsets;
pub mod policy;
pub mod quarantine;
pub mod rebalance;
pub mod recovery;
pub mod redelivery;
pub mod retired;
pub mod supervisor;
pub mod topics;
pub mod transaction;
pub mod worker;

pub use supervisor::{exit_handlers_are_safe, run_workers};

/// Creates the metric series labelled with the engine's close reasons,
/// fatal causes and recovery causes at 0, before any worker starts.
pub fn start_metrics_at_zero(metrics: &crate::telemetry::Metrics) {
    let closes = batch::CloseReason::ALL.map(batch::CloseReason::label);
    let fatal = fatal::FatalCause::ALL.map(fatal::FatalCause::label);
    metrics.start_at_zero(&closes, &fatal, &recovery::CAUSES);
}
