//! The producer's delivery reports: failed deliveries, which at_least_once
//! mode must see before it commits, and outputs that failed for good.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

/// Counts failed deliveries, which at_least_once mode must see before it
/// commits offsets (in exactly_once mode `commit_transaction` fails on them).
#[derive(Default)]
pub struct DeliveryContext {
    failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
    /// Tags of outputs that failed for good, with the error.
    permanent: Mutex<Vec<(usize, String)>>,
}

/// Delivery errors that a retry cannot fix: the same record fails again.
fn is_permanent(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    /// The input record's tag (see `quarantine::Origins`).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        if let Err((err, msg)) = result {
            use rdkafka::Message;
            if is_permanent(err) {
                self.permanent
                    .lock()
                    .expect("permanent failure lock")
                    .push((tag, format!("{err} (to {})", msg.topic())));
            }
            if self.failures.fetch_add(1, Ordering::AcqRel) == 0 {
                let text = format!(
                    "delivery to {}[{}] failed: {err}",
                    msg.topic(),
                    msg.partition()
                );
                *self.first_failure.lock().expect("delivery failure lock") = Some(text);
            }
        }
    }
}

impl DeliveryContext {
    /// Tags and errors of outputs that failed for good since the last call.
    pub(super) fn take_permanent(&self) -> Vec<(usize, String)> {
        std::mem::take(&mut *self.permanent.lock().expect("permanent failure lock"))
    }

    /// Failed deliveries since the last call, with the first one's message.
    pub(super) fn take_failures(&self) -> Option<(u64, String)> {
        let n = self.failures.swap(0, Ordering::AcqRel);
        let first = self
            .first_failure
            .lock()
            .expect("delivery failure lock")
            .take();
        (n > 0).then(|| (n, first.unwrap_or_default()))
    }
}
