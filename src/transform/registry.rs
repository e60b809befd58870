//! Steps by name: the built-in jq steps, and any custom step a program
//! registers. The `[[transform]]` tables of the configuration are built
//! into a [`Chain`] here, once, at start-up; an error names the step by its
//! number and says what is wrong.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::format::Format;
use super::jq::Program;
use super::steps::{Explode, Filter, Formats, Headers, Key, Map, Route};
use super::{Chain, Passthrough, Transform};

/// What a step constructor gets: its table from the configuration and the
/// value formats.
pub struct StepConfig<'a> {
    /// The step's `[[transform]]` table, `type` included.
    pub table: &'a serde_json::Map<String, Value>,
    /// `input.format` / `output.format`.
    pub formats: Formats,
}

impl StepConfig<'_> {
    /// A required string field.
    pub fn string(&self, field: &str) -> Result<String, String> {
        match self.table.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("`{field}` must be a string, got {other}")),
            None => Err(format!("`{field}` is required")),
        }
    }

    /// Fails if the table has keys other than `type`, `name` and `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), String> {
        for k in self.table.keys() {
            if k != "type" && k != "name" && !allowed.contains(&k.as_str()) {
                return Err(format!(
                    "unknown key `{k}`; allowed: {}",
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// The optional `name` of a step's table: what metrics, logs and
/// dead-letter headers call the step instead of `N (type)`.
pub fn step_name(table: &serde_json::Map<String, Value>) -> Result<Option<String>, String> {
    match table.get("name") {
        None => Ok(None),
        Some(Value::String(s)) if s == "produce" => {
            Err("`name` cannot be `produce`: that names failures of the producer".into())
        }
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err("`name` must not be empty".into()),
        Some(other) => Err(format!("`name` must be a string, got {other}")),
    }
}

/// The first step name used twice in `tables`: (its name, the two
/// positions counting from 1). Unnamed steps never clash.
pub fn duplicate_step_name(tables: &[Value]) -> Option<(String, usize, usize)> {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            return Some((name.to_owned(), *first, i + 1));
        }
        seen.push((name, i + 1));
    }
    None
}

/// Builds one step from its configuration.
pub type StepBuilder =
    Arc<dyn Fn(&StepConfig<'_>) -> Result<Box<dyn Transform>, String> + Send + Sync>;

/// Step types by name.
#[derive(Clone)]
pub struct Registry {
    builders: BTreeMap<String, StepBuilder>,
}

fn expr(c: &StepConfig<'_>, default: Option<&str>) -> Result<Program, String> {
    let code = match (c.table.get("expr"), default) {
        (None, Some(d)) => d.to_owned(),
        _ => c.string("expr")?,
    };
    Program::compile(&code).map_err(|e| format!("`expr`: {e}"))
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The built-in steps: passthrough, filter, map, key, route, headers, explode.
    pub fn builtin() -> Registry {
        let mut r = Registry {
            builders: BTreeMap::new(),
        };
        r.register("passthrough", |c| {
            c.only(&[])?;
            Ok(Box::new(Passthrough))
        });
        r.register("filter", |c| {
            c.only(&["expr"])?;
            Ok(Box::new(Filter {
                program: expr(c, None)?,
                formats: c.formats,
            }))
        });
        r.register("map", |c| {
            c.only(&["expr"])?;
            Ok(Box::new(Map {
                program: expr(c, None)?,
                formats: c.formats,
            }))
        });
        r.register("key", |c| {
            c.only(&["expr"])?;
            Ok(Box::new(Key {
                program: expr(c, None)?,
                formats: c.formats,
            }))
        });
        r.register("route", |c| {
            c.only(&["expr"])?;
            Ok(Box::new(Route {
                program: expr(c, None)?,
                formats: c.formats,
            }))
        });
        r.register("explode", |c| {
            c.only(&["expr"])?;
            Ok(Box::new(Explode {
                program: expr(c, Some("."))?,
                formats: c.formats,
            }))
        });
        r.register("headers", |c| {
            c.only(&["set", "remove"])?;
            let mut set = BTreeMap::new();
            match c.table.get("set") {
                None => {}
                Some(Value::Object(m)) => {
                    for (name, v) in m {
                        let code = v.as_str().ok_or_else(|| {
                            format!("`set.{name}` must be a jq expression string")
                        })?;
                        let p = Program::compile(code).map_err(|e| format!("`set.{name}`: {e}"))?;
                        set.insert(name.clone(), p);
                    }
                }
                Some(_) => return Err("`set` must be a table of header = \"expression\"".into()),
            }
            let remove = match c.table.get("remove") {
                None => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or("`remove` must list header names")
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("`remove` must be a list of header names".into()),
            };
            if set.is_empty() && remove.is_empty() {
                return Err("give `set` or `remove`".into());
            }
            Ok(Box::new(Headers {
                set,
                remove,
                formats: c.formats,
            }))
        });
        r
    }

    /// Registers (or replaces) the step type `name`.
    pub fn register(
        &mut self,
        name: &str,
        build: impl Fn(&StepConfig<'_>) -> Result<Box<dyn Transform>, String> + Send + Sync + 'static,
    ) {
        self.builders.insert(name.to_owned(), Arc::new(build));
    }

    /// The registered type names.
    pub fn names(&self) -> Vec<&str> {
        self.builders.keys().map(String::as_str).collect()
    }

    /// Builds the chain of `tables` (an empty list is a passthrough). An
    /// error reads `transform[N] (TYPE): what is wrong`, N counting from 1.
    pub fn build(&self, tables: &[Value], input: Format, output: Format) -> Result<Chain, String> {
        if tables.is_empty() {
            return Ok(Chain::default());
        }
        let formats = Formats { input, output };
        let mut steps = Vec::with_capacity(tables.len());
        for (i, t) in tables.iter().enumerate() {
            let n = i + 1;
            let table = t
                .as_object()
                .ok_or_else(|| format!("transform[{n}]: must be a table"))?;
            let ty = match table.get("type") {
                Some(Value::String(s)) => s.as_str(),
                _ => {
                    return Err(format!(
                        "transform[{n}]: `type` is required; one of {}",
                        self.names().join(", ")
                    ))
                }
            };
            let build = self.builders.get(ty).ok_or_else(|| {
                format!(
                    "transform[{n}]: unknown type `{ty}`; one of {}",
                    self.names().join(", ")
                )
            })?;
            let name = step_name(table).map_err(|e| format!("transform[{n}] ({ty}): {e}"))?;
            let step = build(&StepConfig { table, formats })
                .map_err(|e| format!("transform[{n}] ({ty}): {e}"))?;
            steps.push((name, step));
        }
        Ok(Chain::named(steps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_step_name_is_optional_and_must_be_a_non_empty_string() {
        assert_eq!(step_name(&table(json!({"type": "map"}))), Ok(None));
        assert_eq!(
            step_name(&table(json!({"type": "map", "name": "cents"}))),
            Ok(Some("cents".into()))
        );
        assert!(step_name(&table(json!({"name": " "}))).is_err());
        assert!(step_name(&table(json!({"name": 3}))).is_err());
        let e = step_name(&table(json!({"name": "produce"}))).unwrap_err();
        assert!(e.contains("produce"), "{e}");
    }

    #[test]
    fn a_duplicate_step_name_is_found_with_both_positions() {
        let tables = vec![
            json!({"type": "filter", "name": "a"}),
            json!({"type": "map"}),
            json!({"type": "map", "name": "b"}),
            json!({"type": "key", "name": "a"}),
        ];
        assert_eq!(duplicate_step_name(&tables), Some(("a".into(), 1, 4)));
        let unique = vec![json!({"type": "map"}), json!({"type": "map"})];
        assert_eq!(duplicate_step_name(&unique), None);
    }

    #[test]
    fn a_named_step_builds_and_is_called_by_its_name() {
        let tables = vec![json!({"type": "filter", "name": "only-big", "expr": "error(\"no\")"})];
        let mut chain = Registry::default()
            .build(&tables, Format::Json, Format::Json)
            .unwrap();
        let record = crate::transform::Record {
            value: Some(b"{}".to_vec()),
            ..Default::default()
        };
        let err = chain.apply(record, &mut Vec::new()).unwrap_err();
        assert_eq!(err.step, "only-big");
    }
}
