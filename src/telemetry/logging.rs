//! Logging set-up: human-readable lines or JSON, filtered by `log.level`
//! unless `RUST_LOG` is set.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Logs go to standard error so that
/// standard output stays free for command output (`exactly check`), with
/// every registered secret redacted.
pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Every line passes the redactor: no secret reaches the log, even
        // when librdkafka or an error echoes one.
        .with_writer(crate::secrets::RedactingStderr);
    let result = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second initialisation (tests running the daemon in-process) keeps the first.
    let _ = result;
}
