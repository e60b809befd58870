//! `EXACTLY__SECTION__KEY` environment overrides, parsed by the type of
//! the key they set: a string key takes the value exactly as given (`0042`,
//! `1e5`, `TRUE` and long digit strings stay as they are), an integer or
//! boolean key must hold one, and a list key (`input.topics`) takes a
//! comma-separated list of strings. The passthrough tables
//! (`EXACTLY__KAFKA__CLIENT__*` and friends) are librdkafka strings and are
//! handled by the caller.

use std::collections::BTreeMap;

use super::{invalid, ConfigError, Settings, ENV_PREFIX_SEP};

/// The kind of value a settings key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Integer,
    Boolean,
    List,
}

/// One override: where it came from and the value it sets.
#[derive(Debug, Clone)]
pub(super) struct Override {
    /// The variable's name, as the user wrote it.
    pub var: String,
}

/// The key paths (`processing.commit_interval_ms`) that the environment
/// sets, with their variables.
pub(super) type Overrides = BTreeMap<String, Override>;

/// `EXACTLY__PROCESSING__COMMIT_INTERVAL_MS` → `processing.commit_interval_ms`.
pub(super) fn key_of(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX_SEP)?;
    let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    (!parts.iter().any(String::is_empty)).then(|| parts.join("."))
}

/// Collects the overrides and checks each value against its key's kind.
pub(super) fn collect(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Overrides, Vec<(String, config::Value)>), ConfigError> {
    let kinds = kinds();
    let mut overrides = Overrides::new();
    let mut values = Vec::new();
    for (var, raw) in vars {
        let Some(key) = key_of(&var) else {
            return Err(invalid(
                var.as_str(),
                "an environment override needs the form EXACTLY__SECTION__KEY",
            ));
        };
        let secret = super::is_secret_key(&key);
        let shown = |expected: &str| {
            format!(
                "environment variable {var} = `{}` is not {expected}",
                if secret {
                    crate::secrets::MASK
                } else {
                    raw.as_str()
                }
            )
        };
        let value: config::Value = match kinds.get(&key).copied().unwrap_or(Kind::Text) {
            Kind::Text => raw.clone().into(),
            Kind::Integer => match raw.trim().parse::<i64>() {
                Ok(n) => n.into(),
                Err(_) => return Err(invalid(key, shown("an integer"))),
            },
            Kind::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
                "true" => true.into(),
                "false" => false.into(),
                _ => return Err(invalid(key, shown("`true` or `false`"))),
            },
            Kind::List => raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<String>>()
                .into(),
        };
        values.push((key.clone(), value));
        overrides.insert(key, Override { var });
    }
    Ok((overrides, values))
}

/// The kind of every key the environment can set, read off a complete
/// example of the settings (every optional key filled in), so that a new
/// key is typed as soon as it exists. A key missing here is set as a
/// string and checked by deserialisation.
pub(super) fn kinds() -> BTreeMap<String, Kind> {
    let example: Settings = toml::from_str(EXAMPLE).expect("the example settings parse");
    let value = serde_json::to_value(&example).expect("settings serialise");
    let mut kinds = BTreeMap::new();
    walk("", &value, &mut kinds);
    // Steps are tables; the environment cannot write them.
    kinds.remove("transform");
    kinds
}

const EXAMPLE: &str = r#"
[kafka]
bootstrap_servers = "b:9092"
group_id = "g"
transactional_id = "t"
[input]
topics = ["i"]
[output]
topic = "o"
[dead_letter]
topic = "d"
policy = "skip"
"#;

fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, Kind>) {
    use serde_json::Value as J;
    let kind = match value {
        J::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out);
            }
            return;
        }
        J::Bool(_) => Kind::Boolean,
        J::Number(_) => Kind::Integer,
        J::Array(_) => Kind::List,
        J::String(_) | J::Null => Kind::Text,
    };
    out.insert(prefix.to_owned(), kind);
}
