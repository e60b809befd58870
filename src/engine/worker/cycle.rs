//! The exactly-once sequence, in the order it runs:
//!
//! 1. [`Loop::run_clients`] polls, and acts on what the callbacks left
//!    ([`Loop::after_callbacks`]) before it touches the record;
//! 2. [`Loop::begin`] opens a transaction for the first record;
//! 3. the record is transformed and produced (`record.rs`);
//! 4. [`Loop::close_if_due`] decides that the transaction closes, and
//!    [`Loop::commit`] sends the consumed positions into it and commits;
//! 5. any failure goes to [`Loop::on_failure`]: [`Loop::abort`], then
//!    [`Loop::rewind`] to the committed offsets, so that the aborted records
//!    are read again;
//! 6. on a stop, [`Loop::finish`] commits what is open.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::recover::is_authorization;
use super::Loop;
use crate::engine::fatal::{fatal, FatalCause};
use crate::engine::offsets::{positions_to_commit, rewind, PositionError, Starts};
use crate::engine::rebalance::QUERY_TIMEOUT;
use crate::engine::transaction::TxnFailure;

/// Poll timeout while no transaction is open: bounds how late a stop request
/// is noticed.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Transactions aborted in a row for errors (not rebalances) before the worker
/// stops instead of looping: a failure that repeats on replay is not transient.
const MAX_CONSECUTIVE_ABORTS: u32 = 5;
/// How long a failing rewind is retried before the worker gives up.
const REWIND_RETRY_BUDGET: Duration = Duration::from_secs(60);
/// The pause between two attempts at a rewind.
const REWIND_BACKOFF: Duration = Duration::from_millis(500);

type Polled<'a> = Option<Result<BorrowedMessage<'a>, KafkaError>>;

impl Loop {
    /// Polls and processes until a stop is requested, then commits.
    pub(super) fn run_clients(&mut self) -> anyhow::Result<()> {
        // One clock read per record: the time after processing one record
        // is the time before polling the next (clock reads showed up in
        // profiles at several percent of the worker's time).
        let mut now = Instant::now();
        while !self.shutdown.is_requested() {
            let timeout = self.batch.time_left(now, IDLE_POLL);
            // A handle of its own: a record borrows it while the loop may
            // replace `self.consumer`.
            let consumer = self.consumer.clone();
            let Some(polled) = self.after_callbacks(consumer.poll(timeout))? else {
                now = Instant::now();
                continue;
            };
            // Nothing ready to consume: the open transaction may close now,
            // once the least interval between commits has passed.
            let nothing_ready = polled.is_none();
            self.take(polled)?;
            now = Instant::now();
            if self.close_if_due(now, nothing_ready)? {
                now = Instant::now();
            }
        }
        self.finish()
    }

    /// Acts on what the rebalance and error callbacks of the last poll left:
    /// a fatal error, an ended transaction (rewind), or new partitions whose
    /// starting positions must be committed before any of their records.
    /// Gives the polled record back, or `None` when the partitions were
    /// rewound: the record is then fetched again.
    fn after_callbacks<'a>(&mut self, polled: Polled<'a>) -> anyhow::Result<Option<Polled<'a>>> {
        if let Some(cause) = self.ctx().take_unreadable_offsets() {
            let error = self.error(format!("fatal Kafka error: {cause}"));
            return Err(fatal(FatalCause::OffsetsUnreadable, error));
        }
        if let Some(failure) = self.ctx().take_fatal() {
            // A callback could not end the transaction (the partitions
            // were moving): the same classes as the loop's own calls.
            let timed_out = matches!(failure, TxnFailure::TimedOut(_));
            return Err(self.producer_failed(&failure.to_string(), timed_out));
        }
        if self.ctx().take_rewind_needed() {
            // The transaction was ended by a rebalance; anything polled
            // alongside may come from a position past the aborted records,
            // so it is dropped and fetched again.
            drop(polled);
            self.forget_transaction();
            self.rewind()?;
            return Ok(None);
        }
        if self.ctx().has_starts() {
            // New partitions without a committed offset: their starting
            // positions are committed before any of their records is
            // processed, so no later owner resolves the reset policy again.
            // A record polled alongside waits in hand.
            let in_hand = match &polled {
                Some(Ok(m)) => Some((m.topic().to_owned(), m.partition(), m.offset())),
                _ => None,
            };
            if !self.commit_holding(in_hand, Self::commit_starts)? {
                // The commit failed and the partitions were rewound: the
                // record in hand is fetched again.
                return Ok(None);
            }
        }
        Ok(Some(polled))
    }

    /// Processes a polled record, or handles the consumer's error.
    fn take(&mut self, polled: Polled<'_>) -> anyhow::Result<()> {
        match polled {
            None => Ok(()),
            Some(Ok(msg)) => self.process(&msg),
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                // The consumer will never consume again (librdkafka stops
                // it); staying up would hold the replica's place doing
                // nothing. The open transaction is aborted first (its outputs
                // must not hold the last stable offset back); a restarted
                // process rejoins cleanly.
                Err(self.consumer_failed(code, "the consumer reported it"))
            }
            Some(Err(e)) if is_authorization(&e) => {
                // No retry grants a missing ACL; the open transaction is
                // aborted and the worker ends, naming what to grant.
                if self.batch.is_open() {
                    let _ = self.abort("the consumer is not authorized");
                }
                Err(self.not_authorized(&e))
            }
            Some(Err(e)) => {
                // Consumer errors (broker down, topic gone) are reported
                // here; librdkafka keeps retrying underneath.
                self.events.consumer_error(&e);
                Ok(())
            }
        }
    }

    /// Commits if a limit closes the transaction, or if it isolates a
    /// suspect input. Returns whether it committed.
    fn close_if_due(&mut self, now: Instant, nothing_ready: bool) -> anyhow::Result<bool> {
        let isolated = self.isolating.is_some() && self.batch.is_open();
        let reason = self.batch.close_reason(&self.policy, now, nothing_ready);
        if let Some(reason) = reason {
            self.events.closing(reason);
        }
        if isolated || reason.is_some() {
            self.commit()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Opens a transaction (a batch, in at_least_once mode).
    pub(super) fn begin(&mut self) -> anyhow::Result<()> {
        if let Err(f) = self.ctx().output.begin() {
            return self.on_failure(f);
        }
        let now = Instant::now();
        self.batch.open(now, &self.policy);
        self.origins.clear();
        self.txn_began = Some(now);
        Ok(())
    }

    /// Runs `commit` while `in_hand` (polled, not yet processed) waits:
    /// its partition commits its offset, not the consumer's position.
    /// Returns false if the commit failed and the partitions were rewound.
    pub(super) fn commit_holding(
        &mut self,
        in_hand: Option<super::Place>,
        commit: fn(&mut Self) -> anyhow::Result<()>,
    ) -> anyhow::Result<bool> {
        let rewinds = self.rewinds;
        self.in_hand = in_hand;
        let committed = commit(self);
        self.in_hand = None;
        committed?;
        Ok(self.rewinds == rewinds)
    }

    /// Commits the starting positions of never-committed partitions: with
    /// the open transaction, or in a transaction of their own.
    fn commit_starts(&mut self) -> anyhow::Result<()> {
        if !self.batch.is_open() {
            self.begin()?;
        }
        self.commit()
    }

    /// Commits the open transaction with the positions it consumed up to.
    pub(super) fn commit(&mut self) -> anyhow::Result<()> {
        if self.faults.abort_now() {
            return self.on_failure(TxnFailure::Abortable(
                "injected failure between produce and commit (EXACTLY_TEST_ABORT_EVERY)".into(),
            ));
        }
        // A fenced or otherwise fatal consumer has lost its group
        // membership: no commit of it can be right.
        if let Some((code, _)) = self.consumer.client().fatal_error() {
            return Err(self.consumer_failed(code, "found before a commit"));
        }
        let starts = self.ctx().starts();
        let offsets = match self.offsets_to_commit(&starts) {
            Ok(o) => o,
            Err(Failed::Consumer(code, seen)) => return Err(self.consumer_failed(code, &seen)),
            Err(Failed::Txn(f)) => return self.on_failure(f),
        };
        let commit_started = Instant::now();
        self.batch.commit_started(commit_started);
        let left = || self.ctx().time_left();
        if let Err(f) = self.ctx().output.commit(&self.consumer, &offsets, &left) {
            return self.on_failure(f);
        }
        self.txn_began = None;
        self.ctx().starts_committed(&starts);
        self.ctx().offsets_committed(&offsets);
        let commit_took = commit_started.elapsed();
        self.batch.commit_finished(commit_took);
        self.events.committed(&self.batch, commit_took);
        self.batch.reset();
        if let Some(innocent) = self.isolating.take() {
            self.quarantine.release(&innocent);
        }
        self.aborts_in_a_row = 0;
        if self.faults.redeliver_now() {
            super::faults::redeliver(&self.consumer, &offsets);
        }
        Ok(())
    }

    /// The positions the open transaction consumed up to, with the starting
    /// positions fixed for never-committed partitions (none of their
    /// records is in it), each tagged with this worker's transactional id:
    /// a later start of this replica with fewer workers finds the ids it
    /// must fence there (see `retired`).
    fn offsets_to_commit(&self, starts: &Starts) -> Result<TopicPartitionList, Failed> {
        let mut offsets = match positions_to_commit(&self.consumer, self.batch.partitions()) {
            Ok(o) => o,
            Err(e @ PositionError::Missing { .. }) => {
                if let Some((code, _)) = self.consumer.client().fatal_error() {
                    return Err(Failed::Consumer(code, e.to_string()));
                }
                return Err(Failed::Txn(TxnFailure::Interrupted(e.to_string())));
            }
            Err(e) => return Err(Failed::Txn(TxnFailure::Abortable(e.to_string()))),
        };
        if let Some((t, p, next)) = &self.in_hand {
            if let Some(mut e) = offsets.find_partition(t, *p) {
                let _ = e.set_offset(Offset::Offset(*next));
            }
        }
        for ((t, p), start) in starts {
            if offsets.find_partition(t, *p).is_none() {
                let _ = offsets.add_partition_offset(t, *p, Offset::Offset(*start));
            }
        }
        for mut e in offsets.elements() {
            e.set_metadata(&self.txn_id);
        }
        Ok(offsets)
    }

    /// Abortable failures abort and rewind; fatal ones end the worker.
    pub(super) fn on_failure(&mut self, failure: TxnFailure) -> anyhow::Result<()> {
        let counts = matches!(failure, TxnFailure::Abortable(_));
        let stop_stays_clean = failure.leaves_a_stop_clean();
        let cause = match failure {
            TxnFailure::Fatal(m) => return Err(self.producer_failed(&m, false)),
            TxnFailure::TimedOut(m) => {
                // Whatever the transaction holds is not to be trusted: end
                // it as a best effort before the clients are replaced.
                let _ = self.abort(&m);
                return Err(self.producer_failed(&m, true));
            }
            TxnFailure::MemberFenced(m) => {
                return Err(self.consumer_failed(RDKafkaErrorCode::FencedInstanceId, &m))
            }
            TxnFailure::Abortable(cause) | TxnFailure::Interrupted(cause) => cause,
        };
        self.abort(&cause)?;
        if self.shutdown.is_requested() {
            // Stopping: nothing is consumed again, so there is nothing to
            // rewind.
            if stop_stays_clean {
                // A rebalance took the partitions while the final commit
                // ran: had it come a moment earlier, the revoke would have
                // aborted the same records. Their next owner processes
                // them; the stop is clean.
                self.events.final_commit_interrupted(&cause);
                return Ok(());
            }
            // Anything else: the stop did not commit.
            let error = self.error(format!(
                "the open transaction was aborted while stopping: {cause}"
            ));
            return Err(fatal(FatalCause::FinalCommit, error));
        }
        self.quarantine_failed_outputs();
        if counts {
            self.aborts_in_a_row += 1;
            self.last_abort_cause = cause;
        }
        if self.aborts_in_a_row >= MAX_CONSECUTIVE_ABORTS && !self.faults.aborts_injected() {
            let error = self.error(format!(
                "{} transactions in a row aborted on replay of the same input; last cause: {}",
                self.aborts_in_a_row, self.last_abort_cause
            ));
            return Err(fatal(FatalCause::AbortsInARow, error));
        }
        self.rewind()
    }

    /// Aborts the open transaction.
    pub(super) fn abort(&mut self, cause: &str) -> anyhow::Result<()> {
        self.events.aborting(cause);
        let left = || self.ctx().time_left();
        let result = self.ctx().output.abort(&left);
        self.batch.reset();
        match result {
            Ok(()) => {
                self.txn_began = None;
                Ok(())
            }
            Err(f) => {
                let timed_out = matches!(f, TxnFailure::TimedOut(_));
                Err(self.producer_failed(&format!("abort failed: {f}"), timed_out))
            }
        }
    }

    /// Forgets a transaction a rebalance callback ended.
    fn forget_transaction(&mut self) {
        self.batch.reset();
        self.txn_began = None;
        // A suspect being isolated was aborted with the rest; it stays a
        // suspect and is isolated again on replay.
        self.isolating = None;
    }

    /// Seeks the assigned partitions back to their committed offsets.
    fn rewind(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let starts = self.ctx().starts();
            match rewind(&self.consumer, &starts, self.reset, QUERY_TIMEOUT) {
                Ok(targets) => {
                    self.ctx().rewound(&targets);
                    self.rewinds += 1;
                    self.events.rewound(targets.count());
                    return Ok(());
                }
                Err(e)
                    if started.elapsed() < REWIND_RETRY_BUDGET && !self.shutdown.is_requested() =>
                {
                    self.events.rewind_failed(&e);
                    // Backoff between attempts, not synchronisation.
                    std::thread::sleep(REWIND_BACKOFF);
                }
                Err(e) => {
                    let error = self.error(format!("cannot rewind to committed offsets: {e}"));
                    return Err(fatal(FatalCause::RewindFailed, error));
                }
            }
        }
    }

    /// Graceful stop: commit what is open, within the stop budget. A stop
    /// whose final commit failed is an error: the process must not exit 0
    /// as if everything consumed were committed.
    fn finish(&mut self) -> anyhow::Result<()> {
        if self.batch.is_open() {
            self.events.stopping_with_open(self.batch.records());
            // A failed commit is an error here: `on_failure` aborts without
            // rewinding once a stop is requested.
            self.commit()
                .context("the final commit on stop did not succeed")
                .map_err(|e| fatal(FatalCause::FinalCommit, e))?;
        }
        self.events
            .stopped(self.shutdown.budget_left(self.limits.budget));
        Ok(())
    }
}

/// Why the offsets of a commit could not be gathered.
enum Failed {
    /// The consumer failed fatally (its code, and how that was seen).
    Consumer(RDKafkaErrorCode, String),
    /// The transaction ends this way.
    Txn(TxnFailure),
}
