//! The passthrough tables checked offline, the way librdkafka itself
//! checks them when a client is made: every property name must be one it
//! knows and every value one it accepts. A misspelt `sesion.timeout.ms` is
//! an error at `check` (with the nearest valid name), not a start-up
//! failure, and never a setting silently ignored.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::sync::OnceLock;

use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;
use rdkafka::ClientConfig;

use super::{invalid, is_secret_key, ConfigError, Settings};

/// Checks `[kafka.client]`, `[kafka.consumer]` and `[kafka.producer]` (with
/// their references read) against librdkafka, without connecting.
pub(super) fn check(settings: &Settings) -> Result<(), ConfigError> {
    let r = &settings.kafka.resolved;
    for (table, map) in [
        ("client", &r.client),
        ("consumer", &r.consumer),
        ("producer", &r.producer),
    ] {
        for (key, value) in map {
            let mut one = ClientConfig::new();
            one.set(key, value);
            let Err(e) = one.create_native_config() else {
                continue;
            };
            let at = format!("kafka.{table}.\"{key}\"");
            return Err(match e {
                KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..) => {
                    let hint = super::origin::nearest(key, known().iter().map(String::as_str))
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    invalid(at, format!("librdkafka has no property `{key}`{hint}"))
                }
                KafkaError::ClientConfig(_, description, ..) => {
                    let description = if is_secret_key(key) {
                        description.replace(value.as_str(), crate::secrets::MASK)
                    } else {
                        description
                    };
                    invalid(at, format!("librdkafka refuses it: {description}"))
                }
                other => invalid(at, other.to_string()),
            });
        }
    }
    Ok(())
}

/// Every property name librdkafka knows, from the table of properties it
/// prints itself (`rd_kafka_conf_properties_show`, the same table as its
/// CONFIGURATION.md): the candidates for a suggestion.
fn known() -> &'static BTreeSet<String> {
    static KNOWN: OnceLock<BTreeSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut buf: *mut libc::c_char = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: open_memstream gives a FILE that writes into a buffer it
        // allocates; after fclose, `buf` holds `len` bytes plus a NUL, and
        // is ours to free.
        let table = unsafe {
            let fp = libc::open_memstream(&mut buf, &mut len);
            if fp.is_null() {
                return BTreeSet::new();
            }
            rd::rd_kafka_conf_properties_show(fp);
            libc::fclose(fp);
            let text = CStr::from_ptr(buf).to_string_lossy().into_owned();
            libc::free(buf.cast());
            text
        };
        table
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(name, _)| name.trim())
            .filter(|n| n.contains('.') || n.contains('_'))
            .filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_'))
            })
            .map(str::to_owned)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_knows_its_common_properties() {
        for name in ["session.timeout.ms", "security.protocol", "linger.ms"] {
            assert!(known().contains(name), "{name}");
        }
    }
}
