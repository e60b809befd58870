//! A binary with a custom transform step, registered by name next to the
//! built-in jq steps. Use it in a configuration like any other step:
//!
//! ```toml
//! [[transform]]
//! type = "uppercase"
//! ```
//!
//! Run it: `cargo run --release --example custom_step -- run --config FILE`
//! (`check` and `verify` work as with `exactly`).

use exactly::transform::{Record, Registry, Transform, TransformError};

/// Upper-cases UTF-8 values; anything else is an error of kind `decode`
/// (and goes to the dead-letter topic if one is configured).
struct Uppercase;

impl Transform for Uppercase {
    fn name(&self) -> &str {
        "uppercase"
    }

    fn apply(&mut self, mut record: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
        if let Some(v) = record.value.take() {
            let text = String::from_utf8(v)
                .map_err(|e| TransformError::new("decode", format!("value is not UTF-8: {e}")))?;
            record.value = Some(text.to_uppercase().into_bytes());
        }
        out.push(record);
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let mut registry = Registry::builtin();
    registry.register("uppercase", |config| {
        config.only(&[])?;
        Ok(Box::new(Uppercase))
    });
    exactly::cli::main_with(registry)
}
