//! How a transaction call ended when it did not succeed, from librdkafka's
//! error class: abort and go on, stop, or replace the clients.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::engine::errors::{action_for, missing_acl, Action};

/// How a transaction call ended when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TxnFailure {
    /// The transaction must be aborted; the worker rewinds and carries on.
    /// Counts toward the guard against replaying the same failure forever.
    #[error("{0}")]
    Abortable(String),
    /// Something that says nothing about the input interrupted the
    /// transaction: a rebalance raced the commit (`ILLEGAL_GENERATION`,
    /// `UNKNOWN_MEMBER_ID`, `REBALANCE_IN_PROGRESS`), a position vanished
    /// with the assignment, a metadata request got no answer. Abort and
    /// rewind like [`Self::Abortable`], without counting toward the guard.
    #[error("{0}")]
    Interrupted(String),
    /// The group coordinator gave this replica's `group.instance.id` to
    /// another member (`FENCED_INSTANCE_ID`): no later commit can succeed.
    /// Abort as a best effort, then stop.
    #[error("{0}")]
    MemberFenced(String),
    /// A retriable call kept failing for the whole retry budget (the
    /// cluster did not answer). The producer is not known to be broken,
    /// but its transaction has outlived any timeout: the worker replaces
    /// its clients or stops.
    #[error("{0}")]
    TimedOut(String),
    /// The producer is fenced or in an unknown state; the worker must stop
    /// (or replace its clients, when no other instance can be the cause).
    #[error("{0}")]
    Fatal(String),
}

impl TxnFailure {
    /// The failure of `call` that ended with `err`, once retrying is over.
    pub fn of(call: &str, err: &KafkaError) -> TxnFailure {
        let code = err.rdkafka_error_code();
        let text = match code.and_then(missing_acl) {
            Some(acl) => format!("{call}: {err}; not authorized: grant {acl}"),
            None => format!("{call}: {err}"),
        };
        match (action_for(err), code) {
            (_, Some(RDKafkaErrorCode::FencedInstanceId)) => TxnFailure::MemberFenced(text),
            (Action::Fatal, _) => TxnFailure::Fatal(text),
            (
                _,
                Some(
                    RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::RebalanceInProgress,
                ),
            ) => TxnFailure::Interrupted(text),
            _ => TxnFailure::Abortable(text),
        }
    }

    /// Whether the worker can abort, rewind and go on.
    pub fn is_abortable(&self) -> bool {
        matches!(self, TxnFailure::Abortable(_) | TxnFailure::Interrupted(_))
    }

    /// Whether a graceful stop whose final commit ended this way, once
    /// aborted, is still clean (exit 0). Only a rebalance racing the commit
    /// is: the revoke would have aborted the same records a moment earlier,
    /// and their next owner processes them. Any other failure means the
    /// stop did not do what it was asked to.
    pub fn leaves_a_stop_clean(&self) -> bool {
        matches!(self, TxnFailure::Interrupted(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_static_member_is_its_own_failure() {
        let e = KafkaError::ConsumerCommit(RDKafkaErrorCode::FencedInstanceId);
        assert!(matches!(
            TxnFailure::of("send_offsets_to_transaction", &e),
            TxnFailure::MemberFenced(_)
        ));
    }

    #[test]
    fn a_rebalance_racing_the_commit_interrupts_without_blaming_the_input() {
        for code in [
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::UnknownMemberId,
            RDKafkaErrorCode::RebalanceInProgress,
        ] {
            let f = TxnFailure::of(
                "send_offsets_to_transaction",
                &KafkaError::ConsumerCommit(code),
            );
            assert!(matches!(f, TxnFailure::Interrupted(_)), "{code:?}: {f:?}");
            assert!(f.is_abortable());
        }
        let other = KafkaError::ConsumerCommit(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(
            TxnFailure::of("commit_transaction", &other),
            TxnFailure::Abortable(_)
        ));
    }

    #[test]
    fn only_a_rebalance_racing_the_final_commit_leaves_a_stop_clean() {
        let rebalance = TxnFailure::of(
            "send_offsets_to_transaction",
            &KafkaError::ConsumerCommit(RDKafkaErrorCode::IllegalGeneration),
        );
        assert!(rebalance.leaves_a_stop_clean());
        for other in [
            TxnFailure::Abortable("delivery failed".into()),
            TxnFailure::TimedOut("no answer".into()),
            TxnFailure::Fatal("fenced".into()),
            TxnFailure::MemberFenced("rival".into()),
        ] {
            assert!(!other.leaves_a_stop_clean(), "{other:?}");
        }
    }
}
