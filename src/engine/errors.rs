//! What to do about a librdkafka error: librdkafka's own error classes map
//! to the three actions of the exactly-once contract.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// The engine's response to a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Call again: the operation may still succeed (`is_retriable`).
    Retry,
    /// Abort the transaction, rewind, carry on (`txn_requires_abort`).
    Abort,
    /// Stop the worker; the producer cannot be trusted (`is_fatal`, or a
    /// state nobody planned for).
    Fatal,
}

/// The flags librdkafka attaches to a transactional error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorClass {
    /// `rd_kafka_error_is_fatal`
    pub fatal: bool,
    /// `rd_kafka_error_txn_requires_abort`
    pub requires_abort: bool,
    /// `rd_kafka_error_is_retriable`
    pub retriable: bool,
}

impl ErrorClass {
    /// Reads the flags of `err`. Errors that carry no flags are classified by
    /// their code: a timeout can be retried, anything else is treated as
    /// requiring an abort.
    pub fn of(err: &KafkaError) -> ErrorClass {
        match err {
            KafkaError::Transaction(e) => ErrorClass {
                fatal: e.is_fatal(),
                requires_abort: e.txn_requires_abort(),
                retriable: e.is_retriable(),
            },
            other => match other.rdkafka_error_code() {
                Some(RDKafkaErrorCode::OperationTimedOut)
                | Some(RDKafkaErrorCode::RequestTimedOut) => ErrorClass {
                    retriable: true,
                    ..ErrorClass::default()
                },
                Some(RDKafkaErrorCode::Fenced)
                | Some(RDKafkaErrorCode::ProducerFenced)
                | Some(RDKafkaErrorCode::InvalidProducerEpoch)
                | Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed)
                | Some(RDKafkaErrorCode::GroupAuthorizationFailed)
                | Some(RDKafkaErrorCode::TopicAuthorizationFailed)
                | Some(RDKafkaErrorCode::ClusterAuthorizationFailed)
                | Some(RDKafkaErrorCode::UnsupportedVersion)
                | Some(RDKafkaErrorCode::UnsupportedFeature) => ErrorClass {
                    fatal: true,
                    ..ErrorClass::default()
                },
                _ => ErrorClass {
                    requires_abort: true,
                    ..ErrorClass::default()
                },
            },
        }
    }

    /// The action for this class. Fatal wins over everything; an abortable
    /// error is aborted even if librdkafka also calls it retriable, because
    /// retrying inside a transaction that must abort cannot succeed.
    pub fn action(self) -> Action {
        if self.fatal {
            Action::Fatal
        } else if self.requires_abort {
            Action::Abort
        } else if self.retriable {
            Action::Retry
        } else {
            // Neither retriable nor abortable nor fatal: librdkafka uses this
            // for calls made in the wrong state. Going on would mean going on
            // with a producer in an unknown state.
            Action::Fatal
        }
    }
}

/// The ACL a call refused with `code` was missing, in the words of Kafka's
/// ACL tool; `None` for codes that are not about authorization. The caller
/// names the resource when it knows it.
pub fn missing_acl(code: RDKafkaErrorCode) -> Option<&'static str> {
    match code {
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed => {
            Some("WRITE on the TransactionalId (a prefixed ACL on the base transactional id covers every worker)")
        }
        RDKafkaErrorCode::GroupAuthorizationFailed => Some("READ on the consumer Group"),
        RDKafkaErrorCode::TopicAuthorizationFailed => {
            Some("READ on each input Topic and WRITE on each output and dead-letter Topic")
        }
        RDKafkaErrorCode::ClusterAuthorizationFailed => {
            Some("IDEMPOTENT_WRITE on the Cluster (only brokers older than 2.8 ask for it)")
        }
        _ => None,
    }
}

/// Shortcut: the action for `err`.
pub fn action_for(err: &KafkaError) -> Action {
    ErrorClass::of(err).action()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(fatal: bool, requires_abort: bool, retriable: bool) -> ErrorClass {
        ErrorClass {
            fatal,
            requires_abort,
            retriable,
        }
    }

    #[test]
    fn fatal_wins_over_every_other_flag() {
        assert_eq!(class(true, true, true).action(), Action::Fatal);
        assert_eq!(class(true, false, true).action(), Action::Fatal);
    }

    #[test]
    fn abortable_errors_abort_even_when_retriable() {
        assert_eq!(class(false, true, true).action(), Action::Abort);
        assert_eq!(class(false, true, false).action(), Action::Abort);
    }

    #[test]
    fn retriable_errors_are_retried() {
        assert_eq!(class(false, false, true).action(), Action::Retry);
    }

    #[test]
    fn an_unclassified_transactional_error_is_fatal() {
        assert_eq!(class(false, false, false).action(), Action::Fatal);
    }

    #[test]
    fn authorization_codes_name_the_missing_acl() {
        let acl = missing_acl(RDKafkaErrorCode::TransactionalIdAuthorizationFailed).unwrap();
        assert!(acl.contains("WRITE on the TransactionalId"), "{acl}");
        let acl = missing_acl(RDKafkaErrorCode::GroupAuthorizationFailed).unwrap();
        assert!(acl.contains("READ on the consumer Group"), "{acl}");
        assert!(missing_acl(RDKafkaErrorCode::MessageSizeTooLarge).is_none());
    }

    #[test]
    fn plain_errors_are_classified_by_code() {
        let timeout = KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut);
        assert_eq!(action_for(&timeout), Action::Retry);
        let fenced = KafkaError::ConsumerCommit(RDKafkaErrorCode::ProducerFenced);
        assert_eq!(action_for(&fenced), Action::Fatal);
        let other = KafkaError::ConsumerCommit(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(action_for(&other), Action::Abort);
    }
}
