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

    /// Fails if the table has keys other than `type` and `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), String> {
        for k in self.table.keys() {
            if k != "type" && !allowed.contains(&k.as_str()) {
                return Err(format!(
                    "unknown key `{k}`; allowed: {}",
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }
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
            let step = build(&StepConfig { table, formats })
                .map_err(|e| format!("transform[{n}] ({ty}): {e}"))?;
            steps.push(step);
        }
        Ok(Chain::new(steps))
    }
}
