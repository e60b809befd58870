//! Which failures end the worker, and which it recovers from in-process:
//! a fence of its own making (no rival holds its ids) gets new clients under
//! the same ids, a bounded number of times (see `recovery`).

use std::time::Instant;

use anyhow::anyhow;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{setup, Loop};
use crate::engine::fatal::{fatal, fatal_if, FatalCause};
use crate::engine::recovery::{lost_recently, outlived_timeout, Recoverable};

impl Loop {
    /// Runs the loop; a fence of the worker's own making (no rival) is
    /// recovered from in-process, a bounded number of times.
    pub(super) fn run(&mut self) -> anyhow::Result<()> {
        loop {
            let error = match self.run_clients() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let Some(cause) = error.downcast_ref::<Recoverable>().cloned() else {
                return Err(error);
            };
            self.may_recover(error)?;
            self.recover(&cause)?;
        }
    }

    /// `Ok` if one more recovery is allowed after `error`; the error to end
    /// the worker with otherwise.
    fn may_recover(&mut self, error: anyhow::Error) -> anyhow::Result<()> {
        if self.shutdown.is_requested() {
            // Stopping: no recovery, and what was consumed since the last
            // commit is not committed.
            return Err(fatal(FatalCause::FinalCommit, error));
        }
        if let Err(exhausted) = self.recoveries.allow(Instant::now()) {
            return Err(fatal(
                FatalCause::RecoveriesExhausted,
                error.context(exhausted),
            ));
        }
        Ok(())
    }

    /// Replaces the producer and the consumer with new ones under the same
    /// transactional id and `group.instance.id`: what a restart of the
    /// process would do, without the restart. The new producer's
    /// `init_transactions` fences the old one and aborts its transaction;
    /// the new consumer rejoins and resumes from the committed offsets.
    fn recover(&mut self, cause: &Recoverable) -> anyhow::Result<()> {
        self.events.recovering(cause);
        let health = self.spec.health.worker(self.index);
        health.set_producer_ready(false);
        health.set_joined(false);
        let mut fresh = Err(anyhow!("not built"));
        for _ in 0..3 {
            fresh = setup::build_clients(&self.spec);
            if fresh.is_ok() {
                break;
            }
        }
        let old = std::mem::replace(&mut self.consumer, fresh?);
        // The old clients must not act again: no abort, health or metric
        // from their callbacks when they close. Their cleanup may block on
        // a broken producer, so it runs on a thread of its own.
        old.context().retire();
        let _ = std::thread::Builder::new()
            .name(format!("worker-{}-retired", self.index))
            .spawn(move || drop(old));
        self.batch.reset();
        self.isolating = None;
        self.in_hand = None;
        self.txn_began = None;
        self.aborts_in_a_row = 0;
        loop {
            match self.start() {
                Ok(()) => return Ok(()),
                Err(e) if e.downcast_ref::<Recoverable>().is_some() => {
                    // The cluster is still unreachable: keep waiting, within
                    // the recovery bound.
                    let shown = format!("{e:#}");
                    self.may_recover(e)?;
                    self.events.still_cannot_init(&shown);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The error a producer failure ends the worker with: recoverable when
    /// no rival can have caused it (see `recovery`), fatal otherwise.
    pub(super) fn producer_failed(&self, cause: &str, timed_out: bool) -> anyhow::Error {
        let message = format!("worker {}: fatal Kafka error: {cause}", self.index);
        if timed_out {
            return Recoverable::new("unanswered", message).into();
        }
        let fenced = matches!(
            self.ctx().output.fatal_code(),
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::InvalidTransactionalState
            )
        );
        let timeout = self.limits.txn_timeout;
        if fenced && outlived_timeout(self.txn_began, Instant::now(), timeout) {
            return Recoverable::new(
                "transaction_timed_out",
                format!(
                    "{message} (the transaction had been open longer than transaction.timeout.ms = {} ms, \
                     so the coordinator aborted it: no other instance is involved)",
                    timeout.as_millis()
                ),
            )
            .into();
        }
        fatal_if(
            FatalCause::of_producer(self.ctx().output.fatal_code()),
            anyhow!(message),
        )
    }

    /// The consumer failed fatally (`seen` says how that was noticed): the
    /// open transaction is aborted as a best effort, so that its outputs do
    /// not hold back the last stable offset, and the worker stops.
    pub(super) fn consumer_failed(&mut self, code: RDKafkaErrorCode, seen: &str) -> anyhow::Error {
        if self.batch.is_open() && !self.ctx().output.is_fatal() {
            let _ = self.abort("the consumer failed fatally");
        }
        let error = consumer_fatal(self.index, code, seen);
        if code == RDKafkaErrorCode::FencedInstanceId
            && lost_recently(
                self.ctx().lost_at(),
                Instant::now(),
                self.limits.session_timeout,
            )
        {
            // The assignment was lost to a session timeout just before: the
            // rejoin under the same group.instance.id fenced the member's
            // own earlier membership.
            return Recoverable::new(
                "session_expired",
                format!("{error:#} (after this member's own session expired)"),
            )
            .into();
        }
        error
    }

    /// The error a worker stops with when its consumer was refused: it names
    /// the principal, the resource and the ACL to grant.
    pub(super) fn not_authorized(&self, e: &KafkaError) -> anyhow::Error {
        let settings = &self.spec.settings;
        let who = crate::kafka::principal(settings);
        let grant = match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::GroupAuthorizationFailed) => {
                format!("READ on Group:{}", settings.kafka.group_id)
            }
            _ => format!(
                "READ on Topic:{} (each input topic)",
                settings.input.topics.join(", Topic:")
            ),
        };
        let error = self.error(format!(
            "{who} is not authorized: grant {grant} (consumer error: {e}; docs/security.md)"
        ));
        fatal(FatalCause::NotAuthorized, error)
    }
}

/// A consumer error that only an ACL can fix.
pub(super) fn is_authorization(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::GroupAuthorizationFailed | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

/// The error a worker stops with when its consumer failed fatally, naming
/// the likely cause for the one fatal consumer error librdkafka has.
fn consumer_fatal(index: usize, code: RDKafkaErrorCode, seen: &str) -> anyhow::Error {
    let hint = if code == RDKafkaErrorCode::FencedInstanceId {
        "; another member joined the group with this replica's group.instance.id (its \
         transactional_id) while this one was a healthy member: two replicas share a \
         transactional_id, or another client uses it. (A fence that follows this member's own \
         session expiry is recovered from in-process, not reported here)"
    } else {
        ""
    };
    let cause = if code == RDKafkaErrorCode::FencedInstanceId {
        FatalCause::FencedInstance
    } else {
        FatalCause::ConsumerFatal
    };
    fatal(
        cause,
        anyhow!("worker {index}: the consumer failed fatally ({code:?}: {code}; {seen}){hint}"),
    )
}
