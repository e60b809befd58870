//! One input record: through the transform chain, checked, and produced
//! into the open transaction — or, if it fails, handed to the bad-record
//! policy, whose verdict is carried out here.

use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;

use super::Loop;
use crate::engine::dead_letter;
use crate::engine::fatal::{fatal, FatalCause};
use crate::engine::policy::{self, RecordFailure, Verdict};
use crate::engine::quarantine::{Culprit, DEAD_LETTER_FLAG};
use crate::engine::topics::TopicState;
use crate::engine::transaction::TxnFailure;
use crate::lineage;
use crate::transform::{Header, Record};

/// Why a record's outputs cannot be sent.
enum Refusal {
    /// The record itself: its failure policy decides.
    Record(RecordFailure),
    /// Nothing to do with the record: the transaction ends this way.
    Txn(TxnFailure),
    /// The principal may not write where the record goes: the worker ends.
    NotAuthorized(String),
}

/// A refusal of the record itself, by the producer's rules.
fn refused(kind: &'static str, message: String) -> Refusal {
    Refusal::Record(RecordFailure {
        step: "produce".into(),
        kind,
        message,
        dead_letter_failed: false,
    })
}

impl Loop {
    /// Processes one input record inside the open transaction.
    pub(super) fn process(&mut self, msg: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        if !self.ctx().admit(topic, partition, offset) {
            // Handed over before, after a pause raced the poll that took it
            // (see `redelivery`): processing it again would duplicate it.
            self.events.redelivered(topic, partition, offset);
            return Ok(());
        }
        self.events.consumed();
        let suspect = self.quarantine.get(topic, partition, offset);
        if let Some(culprit) = &suspect {
            self.events
                .suspect_read(topic, partition, offset, culprit.confirmed);
            if !culprit.confirmed && self.batch.records() > 0 {
                // A suspect gets a transaction of its own: commit what is
                // open first. This record is polled already: the consumer's
                // position is past it, but it is not part of what commits
                // now. If that commit fails, the rewind brings this record
                // back, still a suspect.
                let here = Some((topic.to_owned(), partition, offset));
                if !self.commit_holding(here, Self::commit)? {
                    return Ok(());
                }
            }
        }
        if !self.batch.is_open() {
            self.begin()?;
        }
        if !self.batch.has_partition(topic, partition) {
            // The first record of its partition in this transaction: the
            // oldest input of the partition not yet committed.
            let at = msg.timestamp().to_millis();
            self.events.input_read(topic, partition, offset, at);
        }
        let record = to_record(msg);
        let bytes = record.payload_len();
        if let Some(culprit) = suspect {
            if culprit.confirmed {
                let failure = RecordFailure {
                    step: "produce".into(),
                    kind: "delivery",
                    message: culprit.cause,
                    dead_letter_failed: culprit.dead_letter_failed,
                };
                return self.record_failed(msg, record, bytes, failure);
            }
            self.isolating = Some((topic.to_owned(), partition, offset));
        }
        self.outputs.clear();
        if let Err(e) = self.chain.apply(record, &mut self.outputs) {
            let failure = RecordFailure {
                step: e.step,
                kind: e.error.kind,
                message: e.error.message,
                dead_letter_failed: false,
            };
            return self.record_failed(msg, to_record(msg), bytes, failure);
        }
        if self.outputs.is_empty() {
            self.batch.tally.filtered += 1;
        }
        if self.lineage {
            let count = self.outputs.len() as u32;
            for (i, out) in self.outputs.iter_mut().enumerate() {
                lineage::stamp(out, topic, partition, offset, i as u32, count);
            }
        }
        // After lineage: its headers count against message.max.bytes too.
        match self.check_outputs() {
            Ok(()) => {}
            Err(Refusal::Record(failure)) => {
                return self.record_failed(msg, to_record(msg), bytes, failure)
            }
            Err(Refusal::Txn(f)) => return self.on_failure(f),
            Err(Refusal::NotAuthorized(m)) => {
                // A missing ACL, not a failed producer: nothing to recover.
                let error = self.error(format!("fatal Kafka error: {m}"));
                return Err(fatal(FatalCause::NotAuthorized, error));
            }
        }
        self.produce(topic, partition, offset, bytes)
    }

    /// Sends the record's outputs into the open transaction.
    fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        bytes: usize,
    ) -> anyhow::Result<()> {
        let tag = self.origins.tag(topic, partition, offset);
        let output = &self.consumer.context().output;
        for i in 0..self.outputs.len() {
            if let Err(f) = output.send(&self.outputs[i], tag) {
                return self.on_failure(f);
            }
            let t = self.outputs[i]
                .topic
                .as_deref()
                .unwrap_or(output.default_topic());
            self.batch.count_output(t);
        }
        self.batch.add(topic, partition, bytes, self.outputs.len());
        Ok(())
    }

    /// Checks what a broker or librdkafka would refuse for good, before any
    /// output of the record is sent: all of a record's outputs go, or none.
    fn check_outputs(&mut self) -> Result<(), Refusal> {
        let max = self.limits.max_message_bytes;
        for i in 0..self.outputs.len() {
            let size = self.outputs[i].wire_len();
            if size > max {
                let message = format!("output {i} is {size} bytes, over message.max.bytes = {max}");
                return Err(refused("too_large", message));
            }
            let Some(t) = self.outputs[i].topic.as_deref() else {
                continue;
            };
            if t == self.ctx().output.default_topic() {
                continue;
            }
            let settings = &self.spec.settings;
            if !settings.output.allow_routes_to_input
                && settings.input.topics.iter().any(|i| i == t)
            {
                let message = format!(
                    "routed to `{t}`, an input topic (set output.allow_routes_to_input = true if that is meant)"
                );
                return Err(refused("routes_to_input", message));
            }
            match self.topics.state(self.consumer.client(), t) {
                Ok(TopicState::Exists) => {}
                Ok(TopicState::Missing) => {
                    let message = format!("output topic `{t}` does not exist");
                    return Err(refused("unknown_topic", message));
                }
                Ok(TopicState::NotAuthorized) => {
                    return Err(Refusal::NotAuthorized(format!(
                        "not authorized to write to output topic `{t}` (a route step chose it); \
                         grant this principal WRITE and DESCRIBE on it"
                    )))
                }
                // No authoritative answer: say nothing about the record.
                Err(e) => return Err(Refusal::Txn(TxnFailure::Interrupted(e))),
            }
        }
        Ok(())
    }

    /// Carries out the bad-record policy's verdict on a record the chain or
    /// the producer cannot handle. `original` is the input as it was read.
    fn record_failed(
        &mut self,
        msg: &BorrowedMessage<'_>,
        original: Record,
        bytes: usize,
        failure: RecordFailure,
    ) -> anyhow::Result<()> {
        let source = (msg.topic(), msg.partition(), msg.offset());
        let (topic, partition, _) = source;
        self.batch.tally.error(&failure.step, failure.kind);
        let cause = policy::cause(source, &failure);
        let dead_letter_topic = self.dead_letter_topic.as_deref();
        match policy::decide(self.on_failure, dead_letter_topic, source, &failure) {
            Verdict::Fail { error } => {
                self.events.transform_error(&failure.step, failure.kind);
                let _ = self.abort(&cause);
                Err(fatal(FatalCause::RecordFailed, self.error(error)))
            }
            Verdict::Skip => {
                self.events.skipping(&cause);
                self.batch.tally.skipped += 1;
                self.batch.add(topic, partition, bytes, 0);
                Ok(())
            }
            Verdict::DeadLetter { topic: dlq } => {
                self.events.dead_lettering(&cause, &dlq);
                let record = dead_letter::record(original, &dlq, source, &failure);
                let max = self.limits.max_message_bytes;
                if record.wire_len() > max {
                    let _ = self.abort(&cause);
                    let error = self.error(format!(
                        "{cause}; its dead-letter record ({} bytes) exceeds message.max.bytes = {max} as well",
                        record.wire_len(),
                    ));
                    return Err(fatal(FatalCause::RecordFailed, error));
                }
                let tag = self.origins.tag(topic, partition, source.2) | DEAD_LETTER_FLAG;
                if let Err(f) = self.ctx().output.send(&record, tag) {
                    return self.on_failure(f);
                }
                self.batch.tally.dead_lettered += 1;
                self.batch.count_output(&dlq);
                self.batch.add(topic, partition, bytes, 1);
                Ok(())
            }
        }
    }

    /// Quarantines the inputs whose outputs failed for good in the aborted
    /// transaction, so that their replay is isolated or dead-lettered.
    pub(super) fn quarantine_failed_outputs(&mut self) {
        let isolating = self.isolating.take();
        for (tag, error) in self.ctx().output.take_permanent_failures() {
            let Some((input, dead_letter_failed)) = self.origins.input(tag) else {
                continue;
            };
            let confirmed = isolating.as_ref() == Some(&input);
            self.events.quarantining(&input, &error);
            let culprit = Culprit {
                cause: error,
                dead_letter_failed,
                confirmed,
            };
            self.quarantine.insert(input, culprit);
        }
    }
}

/// Copies an input record into the chain's owned form.
fn to_record(msg: &BorrowedMessage<'_>) -> Record {
    let headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: None,
        key: msg.key().map(<[u8]>::to_vec),
        value: msg.payload().map(<[u8]>::to_vec),
        headers,
        timestamp: msg.timestamp().to_millis(),
    }
}
