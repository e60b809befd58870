//! The [`Transform`] trait: one step that turns an input record into zero,
//! one or many output records, possibly bound for several topics.
//!
//! Steps run in a [`Chain`], built from the `[[transform]]` tables by a
//! [`Registry`] (the jq steps of [`steps`], and any custom step a program
//! registers). A step that fails for a record returns a [`TransformError`];
//! the engine's dead-letter policy decides what happens to that record.
//!
//! - [`format`]: json / string / bytes values, decoded only when needed.
//! - [`jq`]: compiled jq expressions with `$key` and `$headers`.
//! - [`direct`]: the direct evaluator for jq's reshaping subset, and decoding
//!   of only the fields an expression reads.
//! - [`steps`]: filter, map, key, route, headers, explode.
//! - [`registry`]: step types by name; the chain from configuration.

mod chain;
pub mod direct;
pub mod format;
pub mod jq;
mod passthrough;
mod record;
pub mod registry;
pub mod steps;

pub use chain::{Chain, ChainError};
pub use format::Format;
pub use passthrough::Passthrough;
pub use record::{is_legal_topic_name, Header, Record};
pub use registry::{Registry, StepConfig};

/// Why a step could not handle a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TransformError {
    /// A short, stable class for metrics (`decode`, `type`, `eval`, ...).
    pub kind: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

impl TransformError {
    /// Builds an error of class `kind`.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        TransformError {
            kind,
            message: message.into(),
        }
    }
}

/// One processing step.
///
/// `apply` receives a record by value and pushes its outputs into `out`:
/// push nothing to drop it, push it back (changed or not) to keep it, push
/// several to fan out. Setting [`Record::topic`] routes an output to another
/// topic than the configured default. A step must be deterministic for the
/// exactly-once guarantee to mean "the same outputs": a replayed input (after
/// an abort) runs through the chain again.
pub trait Transform: Send {
    /// The step's name, used in metrics and error messages.
    fn name(&self) -> &str;

    /// Handles one record.
    fn apply(&mut self, record: Record, out: &mut Vec<Record>) -> Result<(), TransformError>;
}
