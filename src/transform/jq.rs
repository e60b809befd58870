//! jq expressions (through the jaq crates): compiled once at start-up, run
//! per record with `$key` (string or null) and `$headers` (an object of the
//! record's UTF-8 headers). Expressions of the reshaping subset run on
//! [`super::direct`] first, and jaq only when that cannot decide.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Native, Vars};
use jaq_json::Val;

use super::direct::{decode_fields, Direct, Input};
use super::format::{text_of, Format};
use super::{Record, TransformError};

type Filter = jaq_core::compile::Filter<Native<data::JustLut<Val>>>;

/// A compiled expression.
pub struct Program {
    filter: Filter,
    source: String,
    /// Whether the expression mentions `$key` / `$headers`: building them
    /// per record costs more than most expressions themselves.
    uses_key: bool,
    uses_headers: bool,
    /// The same expression for the direct evaluator, when it lies in its
    /// subset.
    direct: Option<Direct>,
}

/// Variables every expression may use.
pub const GLOBALS: [&str; 2] = ["$key", "$headers"];

/// Byte position of `part` inside `code`, when it is a slice of it.
fn position(code: &str, part: &str) -> Option<usize> {
    let start = code.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    (at >= start && at <= start + code.len()).then(|| at - start)
}

impl Program {
    /// Compiles `code`; an error says what is wrong and at which position.
    pub fn compile(code: &str) -> Result<Program, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errs| {
                let mut msgs = Vec::new();
                for (_, e) in errs {
                    match e {
                        jaq_core::load::Error::Lex(v) => {
                            for (expected, found) in v {
                                msgs.push(at(
                                    code,
                                    found,
                                    &format!("expected {}", expected.as_str()),
                                ));
                            }
                        }
                        jaq_core::load::Error::Parse(v) => {
                            for (expected, found) in v {
                                msgs.push(at(
                                    code,
                                    found,
                                    &format!("expected {}", expected.as_str()),
                                ));
                            }
                        }
                        other => msgs.push(format!("{other:?}")),
                    }
                }
                format!("syntax error: {}", msgs.join("; "))
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(GLOBALS)
            .compile(modules)
            .map_err(|errs| {
                let mut msgs = Vec::new();
                for (_, v) in errs {
                    for (name, undefined) in v {
                        msgs.push(at(code, name, &format!("undefined {undefined:?} `{name}`")));
                    }
                }
                format!("compile error: {}", msgs.join("; "))
            })?;
        Ok(Program {
            filter,
            source: code.to_owned(),
            uses_key: code.contains("$key"),
            uses_headers: code.contains("$headers"),
            direct: Direct::compile(code),
        })
    }

    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The same program without the direct evaluator: jaq alone.
    #[cfg(test)]
    pub(crate) fn jaq_only(mut self) -> Self {
        self.direct = None;
        self
    }

    /// Whether the expression runs on the direct evaluator.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The record's value as this expression sees it: for a JSON object and
    /// an expression that reads only some top-level fields, those fields
    /// alone (the rest is checked to be JSON, not decoded).
    pub fn decode(&self, format: Format, value: Option<&[u8]>) -> Result<Input, TransformError> {
        let fields = self.direct.as_ref().and_then(Direct::root_fields);
        if let (Format::Json, Some(fields), Some(bytes)) = (format, fields, value) {
            if let Some(v) = std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| decode_fields(text, fields))
            {
                return Ok(Input::Fields(v));
            }
        }
        format.decode(value).map(Input::Whole)
    }

    /// `$key` and `$headers` for `record`, built only when the expression
    /// uses them.
    fn vars(&self, record: &Record) -> [Val; 2] {
        let key = match record.key.as_deref() {
            Some(k) if self.uses_key => match std::str::from_utf8(k) {
                Ok(s) => Val::from(s.to_owned()),
                Err(_) => Val::Null,
            },
            _ => Val::Null,
        };
        let headers = if self.uses_headers {
            headers_val(record)
        } else {
            Val::Null
        };
        [key, headers]
    }

    /// The record's new JSON value, when the direct evaluator decides it:
    /// `Some(None)` for a null result (a tombstone). `None` leaves the
    /// record to [`Program::run`].
    pub fn run_to_json(&self, input: &Input, record: &Record) -> Option<Option<Vec<u8>>> {
        let direct = self.direct.as_ref()?;
        let mut out = Vec::with_capacity(record.value.as_ref().map_or(64, |v| v.len()));
        let written = direct.eval_json(input, &self.vars(record), &mut out)?;
        Some(written.then_some(out))
    }

    /// Runs the expression on `input` for `record`, collecting its outputs.
    pub fn run(&self, input: Input, record: &Record) -> Result<Vec<Val>, TransformError> {
        let vars = self.vars(record);
        if let Some(v) = self.direct.as_ref().and_then(|n| n.eval(&input, &vars)) {
            return Ok(vec![v]);
        }
        // jaq sees the whole value: fields decoded alone came from JSON.
        let input = match input {
            Input::Whole(v) => v,
            Input::Fields(_) => Format::Json.decode(record.value.as_deref())?,
        };
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new(vars));
        self.filter
            .id
            .run((ctx, input))
            .map(unwrap_valr)
            .map(|r| r.map_err(|e| TransformError::new("eval", e.to_string())))
            .collect()
    }
}

/// The record's headers as an object of strings (null for null or non-UTF-8
/// values).
fn headers_val(record: &Record) -> Val {
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|h| {
            let v = h
                .value
                .as_deref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(|s| serde_json::Value::String(s.to_owned()))
                .unwrap_or(serde_json::Value::Null);
            (h.key.clone(), v)
        })
        .collect();
    jaq_json::read::parse_single(serde_json::Value::Object(headers).to_string().as_bytes())
        .unwrap_or(Val::Null)
}

fn at(code: &str, found: &str, what: &str) -> String {
    match position(code, found) {
        Some(p) => format!("{what} at position {p}"),
        None => what.to_owned(),
    }
}

/// The text of a string result, or an error naming what came instead.
pub fn expect_string(v: &Val, what: &str) -> Result<String, TransformError> {
    match v {
        Val::TStr(..) | Val::BStr(..) => Ok(text_of(v)),
        other => Err(TransformError::new(
            "type",
            format!(
                "{what} must be a string, got {}",
                super::format::kind_of(other)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &str, input: &str) -> Result<Vec<String>, TransformError> {
        let p = Program::compile(code).unwrap();
        let rec = Record {
            key: Some(b"k1".to_vec()),
            headers: vec![super::super::Header {
                key: "h".into(),
                value: Some(b"v".to_vec()),
            }],
            ..Record::default()
        };
        let input = jaq_json::read::parse_single(input.as_bytes()).unwrap();
        p.run(Input::Whole(input), &rec)
            .map(|v| v.iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn expressions_see_the_value_the_key_and_the_headers() {
        assert_eq!(
            run(
                "{id: .id, total: (.price * .qty), k: $key, h: $headers.h}",
                r#"{"id":1,"price":2,"qty":3}"#
            )
            .unwrap(),
            vec![r#"{"id":1,"total":6,"k":"k1","h":"v"}"#]
        );
    }

    #[test]
    fn runtime_type_errors_are_eval_errors() {
        let e = run(".a + 1", r#"{"a":{}}"#).unwrap_err();
        assert_eq!(e.kind, "eval");
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let e = Program::compile(".amount > ").err().unwrap();
        assert!(
            e.contains("syntax error") && e.contains("position 10"),
            "{e}"
        );
        let e = Program::compile(".a | nosuchfn(1)").err().unwrap();
        assert!(e.contains("nosuchfn") && e.contains("position 5"), "{e}");
    }
}
