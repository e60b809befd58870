//! Why a worker ended the process: the cause of a fatal error, for the
//! `exactly_fatal_errors_total{cause}` metric.
//!
//! The place that decides a worker must stop knows why; it tags the error
//! with a [`FatalCause`] ([`fatal`]). The tag changes nothing in how the
//! error reads: its message and chain stay those of the error it wraps.
//! [`FatalCause::of`] reads the tag back where the worker's error ends the
//! process.

use std::fmt;

use rdkafka::error::RDKafkaErrorCode;

/// The cause of a worker failure that ends the process (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalCause {
    /// A rival initialised the same transactional id.
    FencedProducer,
    /// A rival joined the group with the same `group.instance.id`.
    FencedInstance,
    /// Transactions kept aborting on replay of the same input.
    AbortsInARow,
    /// In-process recoveries reached their bound.
    RecoveriesExhausted,
    /// A missing ACL.
    NotAuthorized,
    /// A bad record under the `fail` policy.
    RecordFailed,
    /// The assigned partitions could not be rewound to their committed offsets.
    RewindFailed,
    /// The committed offsets of a new assignment could not be read.
    OffsetsUnreadable,
    /// The consumer failed fatally (other than a fenced instance).
    ConsumerFatal,
    /// A stop that could not commit what was consumed within the budget.
    FinalCommit,
    /// The worker thread panicked.
    Panic,
    /// Anything else.
    Other,
}

impl FatalCause {
    /// Every cause, in the order METRICS.md lists them.
    pub const ALL: [FatalCause; 12] = [
        FatalCause::FencedProducer,
        FatalCause::FencedInstance,
        FatalCause::AbortsInARow,
        FatalCause::RecoveriesExhausted,
        FatalCause::NotAuthorized,
        FatalCause::RecordFailed,
        FatalCause::RewindFailed,
        FatalCause::OffsetsUnreadable,
        FatalCause::ConsumerFatal,
        FatalCause::FinalCommit,
        FatalCause::Panic,
        FatalCause::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FatalCause::FencedProducer => "fenced_producer",
            FatalCause::FencedInstance => "fenced_instance",
            FatalCause::AbortsInARow => "aborts_in_a_row",
            FatalCause::RecoveriesExhausted => "recoveries_exhausted",
            FatalCause::NotAuthorized => "not_authorized",
            FatalCause::RecordFailed => "record_failed",
            FatalCause::RewindFailed => "rewind_failed",
            FatalCause::OffsetsUnreadable => "offsets_unreadable",
            FatalCause::ConsumerFatal => "consumer_fatal",
            FatalCause::FinalCommit => "final_commit",
            FatalCause::Panic => "panic",
            FatalCause::Other => "other",
        }
    }

    /// The cause a worker's error was tagged with; `other` when untagged.
    /// The tag closest to the top of the chain wins (there is at most one:
    /// [`fatal`] keeps an existing tag).
    pub fn of(error: &anyhow::Error) -> FatalCause {
        error
            .chain()
            .find_map(|e| e.downcast_ref::<Tagged>())
            .map_or(FatalCause::Other, |t| t.cause)
    }

    /// The cause of a producer failure that no recovery applies to, when
    /// the producer's fatal error code names one; `None` leaves the cause to
    /// the caller (a stop that ran out of budget is a `final_commit`).
    pub fn of_producer(code: Option<RDKafkaErrorCode>) -> Option<FatalCause> {
        match code? {
            RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch => Some(FatalCause::FencedProducer),
            c if super::errors::missing_acl(c).is_some() => Some(FatalCause::NotAuthorized),
            _ => None,
        }
    }
}

/// `error`, tagged with `cause` unless it already carries a cause: the
/// place closest to the failure knows best.
///
/// Never tag a [`super::recovery::Recoverable`] error that may still be
/// recovered from: the worker looks for it at the top of the error.
pub fn fatal(cause: FatalCause, error: impl Into<anyhow::Error>) -> anyhow::Error {
    let error = error.into();
    if error.chain().any(|e| e.is::<Tagged>()) {
        return error;
    }
    Tagged {
        cause,
        inner: error,
    }
    .into()
}

/// `error`, tagged with `cause` when there is one.
pub fn fatal_if(cause: Option<FatalCause>, error: anyhow::Error) -> anyhow::Error {
    match cause {
        Some(c) => fatal(c, error),
        None => error,
    }
}

/// An error with its cause; reads exactly as the error it wraps.
struct Tagged {
    cause: FatalCause,
    inner: anyhow::Error,
}

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The top message only: `{:#}` walks `source` for the rest.
        fmt::Display::fmt(self.inner.chain().next().expect("a chain has a top"), f)
    }
}

impl fmt::Debug for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl std::error::Error for Tagged {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.chain().nth(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::{anyhow, Context};

    #[test]
    fn an_untagged_error_is_other() {
        assert_eq!(FatalCause::of(&anyhow!("boom")), FatalCause::Other);
    }

    #[test]
    fn a_tag_is_found_under_added_context() {
        let e = fatal(FatalCause::RewindFailed, anyhow!("cannot rewind"));
        let e = Err::<(), _>(e).context("while stopping").unwrap_err();
        assert_eq!(FatalCause::of(&e), FatalCause::RewindFailed);
    }

    #[test]
    fn the_first_tag_stays() {
        let inner = fatal(FatalCause::FencedProducer, anyhow!("fenced"));
        let outer = fatal(
            FatalCause::FinalCommit,
            Err::<(), _>(inner).context("final commit").unwrap_err(),
        );
        assert_eq!(FatalCause::of(&outer), FatalCause::FencedProducer);
        let untagged = fatal(FatalCause::FinalCommit, anyhow!("aborted while stopping"));
        assert_eq!(FatalCause::of(&untagged), FatalCause::FinalCommit);
    }

    #[test]
    fn a_tag_changes_nothing_in_the_message() {
        let plain = Err::<(), _>(anyhow!("root")).context("middle").unwrap_err();
        let expected = format!("{plain:#}");
        let tagged = fatal(FatalCause::Other, plain);
        assert_eq!(format!("{tagged:#}"), expected);
        assert_eq!(format!("{tagged}"), "middle");
    }

    #[test]
    fn producer_codes_name_a_rival_or_a_missing_acl() {
        for code in [
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::Fenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
        ] {
            assert_eq!(
                FatalCause::of_producer(Some(code)),
                Some(FatalCause::FencedProducer)
            );
        }
        assert_eq!(
            FatalCause::of_producer(Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed)),
            Some(FatalCause::NotAuthorized)
        );
        assert_eq!(
            FatalCause::of_producer(Some(RDKafkaErrorCode::UnsupportedVersion)),
            None
        );
        assert_eq!(FatalCause::of_producer(None), None);
    }

    #[test]
    fn every_cause_has_a_distinct_label() {
        let mut labels: Vec<_> = FatalCause::ALL.iter().map(|c| c.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), FatalCause::ALL.len());
    }
}
