//! The passthrough tables' security rules and their `${file:…}` /
//! `${env:…}` references.

use std::collections::BTreeMap;

use super::{invalid, ConfigError, KafkaSettings, ResolvedTables};
use crate::secrets;

/// SASL mechanisms this build of librdkafka has (docs/security.md).
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

impl KafkaSettings {
    /// Reads every reference of the three tables and registers each secret
    /// value with the redactor. An unreadable file or unset variable is a
    /// configuration error naming the property and the source.
    pub(super) fn resolve(&self) -> Result<ResolvedTables, ConfigError> {
        let table = |name: &str, map: &BTreeMap<String, String>| {
            let mut out = BTreeMap::new();
            for (key, raw) in map {
                let r = secrets::resolve(key, raw)
                    .map_err(|m| invalid(format!("kafka.{name}.\"{key}\""), m))?;
                if r.secret {
                    secrets::register(&r.value);
                }
                out.insert(key.clone(), r.value);
            }
            Ok::<_, ConfigError>(out)
        };
        Ok(ResolvedTables {
            client: table("client", &self.client)?,
            consumer: table("consumer", &self.consumer)?,
            producer: table("producer", &self.producer)?,
        })
    }

    /// Refuses security settings that librdkafka would accept and then fail
    /// on at run time: SASL without a mechanism (librdkafka defaults to
    /// GSSAPI, which is not built in), GSSAPI itself, and PLAIN or SCRAM
    /// without a user name. It judges the values with their references read.
    pub(super) fn check_security(&self) -> Result<(), ConfigError> {
        let r = &self.resolved;
        for (role, own) in [("consumer", &r.consumer), ("producer", &r.producer)] {
            // The table a key came from, for the error message.
            let key_of = |k: &str| {
                let table = if own.contains_key(k) { role } else { "client" };
                format!("kafka.{table}.\"{k}\"")
            };
            let get = |k: &str| own.get(k).or(r.client.get(k)).map(|v| v.trim());
            let Some(protocol) = get("security.protocol") else {
                continue;
            };
            if !protocol.to_ascii_uppercase().starts_with("SASL_") {
                continue;
            }
            let mechanism_key = if get("sasl.mechanism").is_some() {
                "sasl.mechanism"
            } else {
                "sasl.mechanisms"
            };
            let Some(mechanism) = get(mechanism_key) else {
                return Err(invalid(
                    key_of("security.protocol"),
                    format!(
                        "`{protocol}` needs \"sasl.mechanism\": one of {} \
                         (without it librdkafka would use GSSAPI, Kerberos, which this build does not include)",
                        MECHANISMS.join(", ")
                    ),
                ));
            };
            let upper = mechanism.to_ascii_uppercase();
            if !MECHANISMS.contains(&upper.as_str()) {
                let why = if upper == "GSSAPI" {
                    "GSSAPI (Kerberos) is not built into exactly (docs/security.md says why and what to do)"
                        .to_owned()
                } else {
                    format!("`{mechanism}` is not a SASL mechanism exactly supports")
                };
                return Err(invalid(
                    key_of(mechanism_key),
                    format!("{why}; use one of {}", MECHANISMS.join(", ")),
                ));
            }
            if upper != "OAUTHBEARER" && get("sasl.username").is_none() {
                return Err(invalid(
                    key_of(mechanism_key),
                    format!("{mechanism} needs \"sasl.username\" and \"sasl.password\""),
                ));
            }
        }
        Ok(())
    }
}
