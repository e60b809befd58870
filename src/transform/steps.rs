//! The built-in jq steps: `filter`, `map`, `key`, `route`, `headers`,
//! `explode`. Every step with an expression decodes the value (per
//! `input.format`; `bytes` never decodes); passthrough and a `headers` step
//! that only removes do not. A tombstone (no value) passes `filter`, `map`,
//! `explode` and `key` unchanged; `route` and `headers` run on it with `.`
//! null, so a tombstone can still be routed by `$key`.

use std::collections::BTreeMap;

use jaq_json::Val;

use super::direct::Input;
use super::format::Format;
use super::jq::{expect_string, Program};
use super::{Header, Record, Transform, TransformError};

/// Value formats a step reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct Formats {
    /// `input.format`
    pub input: Format,
    /// `output.format`
    pub output: Format,
}

fn input_of(f: &Formats, r: &Record) -> Result<Val, TransformError> {
    f.input.decode(r.value.as_deref())
}

/// Runs `program` on the record's value, decoded as far as it needs.
fn run_on(program: &Program, f: &Formats, r: &Record) -> Result<Vec<Val>, TransformError> {
    program.run(program.decode(f.input, r.value.as_deref())?, r)
}

fn truthy(v: &Val) -> bool {
    !matches!(v, Val::Null | Val::Bool(false))
}

/// Keeps records for which the expression's first result is true (neither
/// false nor null). Tombstones pass.
pub struct Filter {
    pub program: Program,
    pub formats: Formats,
}

impl Transform for Filter {
    fn name(&self) -> &str {
        "filter"
    }
    fn apply(&mut self, r: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
        if r.value.is_none() {
            out.push(r);
            return Ok(());
        }
        let results = run_on(&self.program, &self.formats, &r)?;
        if results.first().is_some_and(truthy) {
            out.push(r);
        }
        Ok(())
    }
}

/// Replaces the value by the expression's result; several results make
/// several records, none drops the record. Tombstones pass.
pub struct Map {
    pub program: Program,
    pub formats: Formats,
}

impl Transform for Map {
    fn name(&self) -> &str {
        "map"
    }
    fn apply(&mut self, r: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
        if r.value.is_none() {
            out.push(r);
            return Ok(());
        }
        let input = self
            .program
            .decode(self.formats.input, r.value.as_deref())?;
        if self.formats.output == Format::Json {
            if let Some(value) = self.program.run_to_json(&input, &r) {
                let mut r = r;
                r.value = value;
                out.push(r);
                return Ok(());
            }
        }
        let results = self.program.run(input, &r)?;
        emit_values(r, results, self.formats.output, out)
    }
}

fn emit_values(
    r: Record,
    values: Vec<Val>,
    format: Format,
    out: &mut Vec<Record>,
) -> Result<(), TransformError> {
    let n = values.len();
    let mut template = Some(r);
    for (i, v) in values.iter().enumerate() {
        let mut rec = if i + 1 == n {
            template.take().expect("one template per record")
        } else {
            template.clone().expect("template kept until the last")
        };
        rec.value = format.encode(v)?;
        out.push(rec);
    }
    Ok(())
}

/// One output per element of the array the expression yields
/// (default `.`). Tombstones pass.
pub struct Explode {
    pub program: Program,
    pub formats: Formats,
}

impl Transform for Explode {
    fn name(&self) -> &str {
        "explode"
    }
    fn apply(&mut self, r: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
        if r.value.is_none() {
            out.push(r);
            return Ok(());
        }
        let results = run_on(&self.program, &self.formats, &r)?;
        let mut elements = Vec::new();
        for v in results {
            match v {
                Val::Arr(items) => elements.extend(items.iter().cloned()),
                other => {
                    return Err(TransformError::new(
                        "type",
                        format!(
                            "explode needs an array, got {}",
                            super::format::kind_of(&other)
                        ),
                    ))
                }
            }
        }
        emit_values(r, elements, self.formats.output, out)
    }
}

/// Sets the key from the expression: a string is used as is, null removes
/// the key, anything else is written as JSON text.
pub struct Key {
    pub program: Program,
    pub formats: Formats,
}

impl Transform for Key {
    fn name(&self) -> &str {
        "key"
    }
    fn apply(&mut self, mut r: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
        if r.value.is_none() {
            // A tombstone deletes its key in a compacted topic: keep the key.
            out.push(r);
            return Ok(());
        }
        let results = run_on(&self.program, &self.formats, &r)?;
        r.key = match results.first() {
            None | Some(Val::Null) => None,
            Some(v @ (Val::TStr(..) | Val::BStr(..))) => {
                Some(expect_string(v, "key")?.into_bytes())
            }
            Some(v) => Some(v.to_string().into_bytes()),
        };
        out.push(r);
        Ok(())
    }
}

/// Chooses the output topic: a string, or an array (one copy per element).
/// Null, alone or in the array, means the default output topic.
pub struct Route {
    pub program: Program,
    pub formats: Formats,
}

impl Transform for Route {
    fn name(&self) -> &str {
        "route"
    }
    fn apply(&mut self, r: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
        let results = run_on(&self.program, &self.formats, &r)?;
        let mut topics: Vec<Option<String>> = Vec::new();
        for v in &results {
            match v {
                Val::Null => topics.push(None),
                Val::Arr(items) => {
                    for t in items.iter() {
                        topics.push(match t {
                            Val::Null => None,
                            t => Some(expect_string(t, "a route")?),
                        });
                    }
                }
                other => topics.push(Some(expect_string(other, "a route")?)),
            }
        }
        if topics.is_empty() {
            topics.push(None);
        }
        for name in topics.iter().flatten() {
            check_topic(name)?;
        }
        let last = topics.len() - 1;
        let mut r = Some(r);
        for (i, t) in topics.into_iter().enumerate() {
            let mut rec = if i == last {
                r.take().expect("last")
            } else {
                r.clone().expect("kept")
            };
            if t.is_some() {
                rec.topic = t;
            }
            out.push(rec);
        }
        Ok(())
    }
}

fn check_topic(name: &str) -> Result<(), TransformError> {
    if super::is_legal_topic_name(name) {
        Ok(())
    } else {
        Err(TransformError::new(
            "route",
            format!("`{name}` is not a legal topic name"),
        ))
    }
}

/// Sets headers from expressions (a string value, or null for a null
/// header) and removes headers by name.
pub struct Headers {
    pub set: BTreeMap<String, Program>,
    pub remove: Vec<String>,
    pub formats: Formats,
}

impl Transform for Headers {
    fn name(&self) -> &str {
        "headers"
    }
    fn apply(&mut self, mut r: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
        r.headers.retain(|h| !self.remove.contains(&h.key));
        if !self.set.is_empty() {
            let input = input_of(&self.formats, &r)?;
            let mut values = Vec::with_capacity(self.set.len());
            for (name, p) in &self.set {
                let v = p.run(Input::Whole(input.clone()), &r)?;
                let value = match v.first() {
                    None | Some(Val::Null) => None,
                    Some(s @ (Val::TStr(..) | Val::BStr(..))) => {
                        Some(expect_string(s, "a header")?.into_bytes())
                    }
                    Some(other) => Some(other.to_string().into_bytes()),
                };
                values.push((name.clone(), value));
            }
            for (name, value) in values {
                r.headers.retain(|h| h.key != name);
                r.headers.push(Header { key: name, value });
            }
        }
        out.push(r);
        Ok(())
    }
}
