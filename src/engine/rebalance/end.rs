//! Ending the open transaction from a rebalance callback, while the
//! partitions are still this worker's.

use std::sync::atomic::Ordering;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::WorkerContext;
use crate::config::Guarantee;
use crate::engine::transaction::TxnFailure;

impl WorkerContext {
    /// Aborts the open transaction (at_least_once: commits what was
    /// delivered, unless the partitions were `lost`) and asks the loop to
    /// rewind before it uses the next record.
    pub(super) fn end_open_transaction(&self, consumer: &BaseConsumer<Self>, lost: bool) {
        if !self.output.take_open() {
            return;
        }
        if self.output.is_fatal() {
            // The worker is on its way out; a fatal producer is not called
            // again, and its transaction dies with it (fenced or timed out).
            return;
        }
        let left = || self.time_left();
        let result = match self.output.guarantee() {
            Guarantee::ExactlyOnce => self.output.abort(&left),
            // at_least_once: what was produced is delivered first, then its
            // positions are committed, unless the partitions were lost.
            Guarantee::AtLeastOnce if !lost => consumer
                .position()
                .map_err(|e| TxnFailure::Abortable(e.to_string()))
                .and_then(|positions| {
                    let mut valid = TopicPartitionList::new();
                    for e in positions.elements() {
                        if let Offset::Offset(_) = e.offset() {
                            let _ =
                                valid.add_partition_offset(e.topic(), e.partition(), e.offset());
                        }
                    }
                    self.output.commit(consumer, &valid, &left)
                }),
            Guarantee::AtLeastOnce => self.output.abort(&left),
        };
        match result {
            Ok(()) => {
                if self.output.guarantee() == Guarantee::AtLeastOnce && !lost {
                    self.metrics.offsets_committed(self.index);
                }
                if self.output.guarantee() == Guarantee::ExactlyOnce || lost {
                    self.metrics.transaction_aborted();
                    tracing::info!("aborted the open transaction before the partitions moved");
                }
            }
            Err(f) if f.is_abortable() => {
                self.metrics.transaction_aborted();
                tracing::warn!(error = %f, "could not commit the open batch before the partitions moved");
                let _ = self.output.abort(&left);
            }
            Err(f) => {
                *self.fatal.lock().expect("fatal lock") = Some(f);
            }
        }
        self.rewind_needed.store(true, Ordering::Release);
    }
}
