//! The bad-record policy: what happens to an input the chain or the producer
//! cannot handle. [`decide`] only decides; the loop carries the verdict out
//! (abort and stop, count and skip, or write a dead letter in the same
//! transaction).

use crate::config::FailurePolicy;

/// A record the chain or the producer could not handle.
pub struct RecordFailure {
    /// The failing step: its configured name or `N (type)`, or `produce`.
    pub step: String,
    /// A short class: decode, eval, type, too_large, unknown_topic, ...
    pub kind: &'static str,
    /// What went wrong.
    pub message: String,
    /// The record already failed on its way to the dead-letter topic.
    pub dead_letter_failed: bool,
}

/// What becomes of a failed record.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The open transaction is aborted and the worker stops with `error`;
    /// the record's offset is never committed.
    Fail { error: String },
    /// The record counts as consumed and produces nothing.
    Skip,
    /// The original record goes to `topic` with error headers, in the same
    /// transaction, as the input's one output.
    DeadLetter { topic: String },
}

/// The verdict for `failure`, read at `topic[partition]@offset`, under
/// `policy`. A record whose dead letter already failed is not sent again:
/// it stops the worker whatever the policy.
pub fn decide(
    policy: FailurePolicy,
    dead_letter_topic: Option<&str>,
    source: (&str, i32, i64),
    failure: &RecordFailure,
) -> Verdict {
    let policy = if failure.dead_letter_failed {
        FailurePolicy::Fail
    } else {
        policy
    };
    match (policy, dead_letter_topic) {
        (FailurePolicy::Skip, _) => Verdict::Skip,
        (FailurePolicy::DeadLetter, Some(topic)) => Verdict::DeadLetter {
            topic: topic.to_owned(),
        },
        // Configuration checks make a dead-letter policy name its topic; a
        // record is never dropped because one is missing.
        (FailurePolicy::Fail | FailurePolicy::DeadLetter, _) => {
            let hint = if failure.dead_letter_failed {
                " (and its dead-letter record could not be written either)"
            } else {
                ""
            };
            Verdict::Fail {
                error: format!("{}{hint}", cause(source, failure)),
            }
        }
    }
}

/// The failure in one line: where the record was read, the step, the class
/// and the message.
pub fn cause((topic, partition, offset): (&str, i32, i64), failure: &RecordFailure) -> String {
    format!(
        "record {topic}[{partition}]@{offset}: step {}: {}: {}",
        failure.step, failure.kind, failure.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(dead_letter_failed: bool) -> RecordFailure {
        RecordFailure {
            step: "1 (map)".into(),
            kind: "eval",
            message: "cannot index number".into(),
            dead_letter_failed,
        }
    }

    const AT: (&str, i32, i64) = ("in", 2, 41);

    #[test]
    fn each_policy_has_its_verdict() {
        let f = failure(false);
        assert_eq!(decide(FailurePolicy::Skip, None, AT, &f), Verdict::Skip);
        assert_eq!(
            decide(FailurePolicy::DeadLetter, Some("dlq"), AT, &f),
            Verdict::DeadLetter {
                topic: "dlq".into()
            }
        );
        assert_eq!(
            decide(FailurePolicy::Fail, Some("dlq"), AT, &f),
            Verdict::Fail {
                error: "record in[2]@41: step 1 (map): eval: cannot index number".into()
            }
        );
    }

    #[test]
    fn a_failed_dead_letter_stops_the_worker_whatever_the_policy() {
        for policy in [
            FailurePolicy::Skip,
            FailurePolicy::DeadLetter,
            FailurePolicy::Fail,
        ] {
            let Verdict::Fail { error } = decide(policy, Some("dlq"), AT, &failure(true)) else {
                panic!("{policy:?}: not a failure");
            };
            assert!(error.ends_with("could not be written either)"), "{error}");
        }
    }

    #[test]
    fn a_dead_letter_policy_without_a_topic_fails_rather_than_drops() {
        assert!(matches!(
            decide(FailurePolicy::DeadLetter, None, AT, &failure(false)),
            Verdict::Fail { .. }
        ));
    }
}
