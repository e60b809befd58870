//! The default step: every record goes out unchanged.

use super::{Record, Transform, TransformError};

/// Copies each record to the output as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Passthrough;

impl Transform for Passthrough {
    fn name(&self) -> &str {
        "passthrough"
    }

    fn apply(&mut self, record: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
        out.push(record);
        Ok(())
    }
}
