//! Dead-letter records: the original input — key, value, headers — bound
//! for the dead-letter topic, with headers that say what failed, where and
//! when, and lineage headers naming the input (so `exactly verify` counts a
//! dead letter as the input's one output).

use std::time::{SystemTime, UNIX_EPOCH};

use super::policy::RecordFailure;
use crate::lineage;
use crate::transform::{Header, Record};

/// The error message.
pub const ERROR_MESSAGE: &str = "exactly.error.message";
/// The failing step: its configured name or `N (type)`, or `produce`.
pub const ERROR_STEP: &str = "exactly.error.step";
/// The error's class.
pub const ERROR_KIND: &str = "exactly.error.kind";
/// When it failed, in milliseconds since the epoch.
pub const ERROR_TIME: &str = "exactly.error.time";

/// The dead-letter record for `original`, read at `source`.
pub fn record(
    mut original: Record,
    topic: &str,
    source: (&str, i32, i64),
    failure: &RecordFailure,
) -> Record {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    original.topic = Some(topic.to_owned());
    for (k, v) in [
        (ERROR_MESSAGE, failure.message.clone()),
        (ERROR_STEP, failure.step.clone()),
        (ERROR_KIND, failure.kind.to_owned()),
        (ERROR_TIME, now.to_string()),
    ] {
        original.headers.retain(|h| h.key != k);
        original.headers.push(Header {
            key: k.to_owned(),
            value: Some(v.into_bytes()),
        });
    }
    lineage::stamp(&mut original, source.0, source.1, source.2, 0, 1);
    original
}
