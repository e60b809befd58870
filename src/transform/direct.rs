//! A direct evaluator for the reshaping subset of jq, next to jaq's
//! interpreter.
//!
//! Most expressions in a pipeline pick fields, compute with them and build an
//! object: `{id: .id, total: (.price * .qty), customer: .customer.id}`. jaq
//! runs them through boxed iterators and builds an object as a sum of
//! one-key objects, each sum copying the map; on small records that was
//! most of a worker's time. Expressions made only of the forms below, each
//! with exactly one result, are compiled here from jaq's own parse tree and
//! evaluated with jaq's own value operations (`index`, arithmetic,
//! comparison, truthiness), so they give the same values:
//!
//! `.`, `.a.b."c"`, `.[0]`, number and string literals, `{k: e}`, `{k}`,
//! `{$key}`, `e | e`, `-e`, `+ - * / %`, `== != < <= > >=`, `and`, `or`,
//! `//`, `$key`, `$headers`.
//!
//! When evaluation fails (a type error, say), [`Direct::eval`] answers
//! `None` and the caller runs jaq, which reports the error in its own words.
//!
//! [`Direct::root_fields`] names the top-level fields an expression can see
//! when it reads the input only through paths like `.a.b`: a JSON object is
//! then decoded into those fields alone, one slot each, without building an
//! object (see [`decode_fields`]); the rest is still checked to be JSON, so
//! a malformed record fails as before. An object expression with distinct
//! keys is written as JSON text directly ([`Direct::eval_json`]), without
//! building its map either.

use std::fmt;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use jaq_core::ValT;
use jaq_json::Val;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// An expression of the subset.
#[derive(Debug)]
enum Expr {
    /// `.`
    Id,
    /// A literal.
    Lit(Val),
    /// `$key` (0) or `$headers` (1).
    Var(usize),
    /// `base.k1.k2…` with literal indices.
    Path(Box<Expr>, Vec<Val>),
    /// `.name.k2…` read from the input's top level: `slot` is the field's
    /// place among [`Direct::root_fields`] when the input comes as
    /// [`Input::Fields`]; `name` indexes a whole input.
    Field {
        slot: usize,
        name: Val,
        rest: Vec<Val>,
    },
    /// `{k: e, …}`, in order.
    Obj(Vec<(Val, Expr)>),
    Neg(Box<Expr>),
    Math(Box<Expr>, Math, Box<Expr>),
    Cmp(Box<Expr>, Cmp, Box<Expr>),
    /// `and` (stop on false) / `or` (stop on true).
    Logic(Box<Expr>, bool, Box<Expr>),
    /// `//`
    Alt(Box<Expr>, Box<Expr>),
    /// `|`
    Pipe(Box<Expr>, Box<Expr>),
}

/// A compiled expression of the subset.
pub struct Direct {
    expr: Expr,
    root_fields: Option<Vec<String>>,
    /// For an object expression with distinct literal keys, each entry's
    /// key as JSON text followed by `:`: such an object is written as JSON
    /// directly, without building it.
    object_keys: Option<Vec<Vec<u8>>>,
}

/// The input of an expression: a whole value, or, for an expression with
/// [`Direct::root_fields`], just those fields of a JSON object, in that
/// order (null where absent), as [`decode_fields`] reads them.
pub enum Input {
    Whole(Val),
    Fields(Vec<Val>),
}

/// A borrowed [`Input`].
#[derive(Clone, Copy)]
enum In<'a> {
    Whole(&'a Val),
    Fields(&'a [Val]),
}

impl<'a> From<&'a Input> for In<'a> {
    fn from(i: &'a Input) -> Self {
        match i {
            Input::Whole(v) => In::Whole(v),
            Input::Fields(f) => In::Fields(f),
        }
    }
}

impl fmt::Debug for Direct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Direct")
            .field("root_fields", &self.root_fields)
            .finish_non_exhaustive()
    }
}

impl Direct {
    /// Compiles `code` when it lies in the subset; `None` otherwise (jaq then
    /// runs it). `code` must already have compiled with jaq.
    pub fn compile(code: &str) -> Option<Direct> {
        let term = jaq_core::load::parse(code, |p| p.term())?;
        let mut expr = lower(&term)?;
        let mut fields = Some(Vec::new());
        root_fields(&expr, true, &mut fields);
        if let Some(list) = &fields {
            expr = resolve(expr, true, list);
        }
        let object_keys = match &expr {
            Expr::Obj(entries) => {
                let keys: Vec<&Val> = entries.iter().map(|(k, _)| k).collect();
                let distinct = keys.iter().enumerate().all(|(i, k)| !keys[..i].contains(k));
                distinct.then(|| {
                    keys.iter()
                        .map(|k| {
                            let mut text = Vec::new();
                            super::format::write_json(&mut text, k);
                            text.push(b':');
                            text
                        })
                        .collect()
                })
            }
            _ => None,
        };
        Some(Direct {
            expr,
            root_fields: fields,
            object_keys,
        })
    }

    /// The one result for `input`, with `$key` and `$headers` as `vars`;
    /// `None` when jaq must decide (an error).
    pub fn eval(&self, input: &Input, vars: &[Val; 2]) -> Option<Val> {
        eval(&self.expr, input.into(), vars)
    }

    /// The one result as JSON text appended to `out` (`None`, with `out`
    /// as it was, when jaq must decide); a null result appends nothing and
    /// answers `Some(false)`, since a null value is a tombstone. The same
    /// bytes as writing [`Direct::eval`]'s result, without building an
    /// object expression's map.
    pub fn eval_json(&self, input: &Input, vars: &[Val; 2], out: &mut Vec<u8>) -> Option<bool> {
        let (Expr::Obj(entries), Some(keys)) = (&self.expr, &self.object_keys) else {
            let v = self.eval(input, vars)?;
            if matches!(v, Val::Null) {
                return Some(false);
            }
            super::format::write_json(out, &v);
            return Some(true);
        };
        let start = out.len();
        out.push(b'{');
        for (i, ((_, e), key)) in entries.iter().zip(keys).enumerate() {
            let Some(v) = eval(e, input.into(), vars) else {
                out.truncate(start);
                return None;
            };
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            super::format::write_json(out, &v);
        }
        out.push(b'}');
        Some(true)
    }

    /// The top-level fields of the input the expression can observe, when it
    /// reads the input only through paths that start with a field name.
    pub fn root_fields(&self) -> Option<&[String]> {
        self.root_fields.as_deref()
    }
}

/// A string literal without interpolation or format.
fn literal_str(term: &Term<&str>) -> Option<String> {
    let Term::Str(None, parts) = term else {
        return None;
    };
    let mut s = String::new();
    for part in parts {
        match part {
            StrPart::Str(x) => s.push_str(x),
            StrPart::Char(c) => s.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(s)
}

/// A number literal, converted as jaq's compiler does.
fn literal_num(n: &str) -> Option<Val> {
    match n.parse::<isize>() {
        Ok(i) => Some(Val::from(i)),
        Err(_) => Val::from_num(n).ok(),
    }
}

fn lower(term: &Term<&str>) -> Option<Expr> {
    let b = |t: &Term<&str>| lower(t).map(Box::new);
    Some(match term {
        Term::Id => Expr::Id,
        Term::Num(n) => Expr::Lit(literal_num(n)?),
        Term::Str(..) => Expr::Lit(Val::from(literal_str(term)?)),
        Term::Var("$key") => Expr::Var(0),
        Term::Var("$headers") => Expr::Var(1),
        Term::Neg(t) => Expr::Neg(b(t)?),
        Term::Path(base, path) => {
            let mut keys = Vec::with_capacity(path.0.len());
            for (part, opt) in &path.0 {
                match (part, opt) {
                    (Part::Index(Term::Num(n)), Opt::Essential) => keys.push(literal_num(n)?),
                    (Part::Index(k), Opt::Essential) => keys.push(Val::from(literal_str(k)?)),
                    _ => return None,
                }
            }
            Expr::Path(b(base)?, keys)
        }
        Term::Obj(entries) => {
            let mut fields = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let (key, value) = match (k, v) {
                    // `{$key}`: the variable's name without `$`.
                    (Term::Var(x), None) => (x[1..].to_owned(), lower(k)?),
                    // `{a}`: `{a: .a}`.
                    (k, None) => {
                        let name = literal_str(k)?;
                        let path = Expr::Path(Box::new(Expr::Id), vec![Val::from(name.clone())]);
                        (name, path)
                    }
                    (k, Some(v)) => (literal_str(k)?, lower(v)?),
                };
                fields.push((Val::from(key), value));
            }
            Expr::Obj(fields)
        }
        Term::BinOp(l, op, r) => match op {
            BinaryOp::Pipe(None) => Expr::Pipe(b(l)?, b(r)?),
            BinaryOp::Math(m) => Expr::Math(b(l)?, *m, b(r)?),
            BinaryOp::Cmp(c) => Expr::Cmp(b(l)?, *c, b(r)?),
            BinaryOp::And => Expr::Logic(b(l)?, false, b(r)?),
            BinaryOp::Or => Expr::Logic(b(l)?, true, b(r)?),
            BinaryOp::Alt => Expr::Alt(b(l)?, b(r)?),
            _ => return None,
        },
        _ => return None,
    })
}

/// Collects into `fields` the top-level input fields `e` reads; sets it to
/// `None` when `e` can observe the input as a whole (or by a computed key).
fn root_fields(e: &Expr, at_root: bool, fields: &mut Option<Vec<String>>) {
    match e {
        Expr::Id if at_root => *fields = None,
        Expr::Id | Expr::Lit(_) | Expr::Var(_) | Expr::Field { .. } => {}
        Expr::Path(base, keys) if at_root && matches!(**base, Expr::Id) => {
            match (keys.first(), fields.as_mut()) {
                (Some(k @ (Val::TStr(_) | Val::BStr(_))), Some(list)) => {
                    let name = super::format::text_of(k);
                    if !list.contains(&name) {
                        list.push(name);
                    }
                }
                _ => *fields = None,
            }
        }
        Expr::Path(base, _) | Expr::Neg(base) => root_fields(base, at_root, fields),
        Expr::Obj(entries) => {
            for (_, v) in entries {
                root_fields(v, at_root, fields);
            }
        }
        Expr::Math(l, _, r) | Expr::Cmp(l, _, r) | Expr::Logic(l, _, r) | Expr::Alt(l, r) => {
            root_fields(l, at_root, fields);
            root_fields(r, at_root, fields);
        }
        // `. | r` is `r`.
        Expr::Pipe(l, r) if matches!(**l, Expr::Id) => root_fields(r, at_root, fields),
        Expr::Pipe(l, r) => {
            root_fields(l, at_root, fields);
            // The right side sees the left side's result, not the input.
            root_fields(r, false, fields);
        }
    }
}

/// Turns the paths [`root_fields`] collected into [`Expr::Field`]s, walking
/// `e` as it did; `. | r` becomes `r`.
fn resolve(e: Expr, at_root: bool, fields: &[String]) -> Expr {
    let r = |x: Box<Expr>| Box::new(resolve(*x, at_root, fields));
    match e {
        Expr::Path(base, mut keys) if at_root && matches!(*base, Expr::Id) => {
            let name = keys.remove(0);
            let text = super::format::text_of(&name);
            let slot = fields
                .iter()
                .position(|f| *f == text)
                .expect("root_fields collected every top-level path");
            Expr::Field {
                slot,
                name,
                rest: keys,
            }
        }
        Expr::Path(base, keys) => Expr::Path(r(base), keys),
        Expr::Neg(x) => Expr::Neg(r(x)),
        Expr::Obj(entries) => Expr::Obj(
            entries
                .into_iter()
                .map(|(k, v)| (k, resolve(v, at_root, fields)))
                .collect(),
        ),
        Expr::Math(a, op, b) => Expr::Math(r(a), op, r(b)),
        Expr::Cmp(a, op, b) => Expr::Cmp(r(a), op, r(b)),
        Expr::Logic(a, stop, b) => Expr::Logic(r(a), stop, r(b)),
        Expr::Alt(a, b) => Expr::Alt(r(a), r(b)),
        Expr::Pipe(a, b) if matches!(*a, Expr::Id) => resolve(*b, at_root, fields),
        Expr::Pipe(a, b) => Expr::Pipe(r(a), b),
        other => other,
    }
}

/// `v.k1.k2…`
fn index_path(mut v: Val, keys: &[Val]) -> Option<Val> {
    for k in keys {
        v = v.index(k).ok()?;
    }
    Some(v)
}

fn eval(e: &Expr, input: In<'_>, vars: &[Val; 2]) -> Option<Val> {
    Some(match e {
        Expr::Id => match input {
            In::Whole(v) => v.clone(),
            // Not produced by `resolve`: an expression that sees the whole
            // input has no root fields.
            In::Fields(_) => return None,
        },
        Expr::Lit(v) => v.clone(),
        Expr::Var(i) => vars[*i].clone(),
        Expr::Path(base, keys) => index_path(eval(base, input, vars)?, keys)?,
        Expr::Field { slot, name, rest } => match input {
            In::Fields(fields) => index_path(fields.get(*slot)?.clone(), rest)?,
            In::Whole(v) => index_path(v.clone().index(name).ok()?, rest)?,
        },
        Expr::Obj(entries) => {
            let mut map =
                jaq_json::Map::with_capacity_and_hasher(entries.len(), Default::default());
            for (k, v) in entries {
                map.insert(k.clone(), eval(v, input, vars)?);
            }
            Val::obj(map)
        }
        Expr::Neg(x) => (-eval(x, input, vars)?).ok()?,
        Expr::Math(l, op, r) => op.run(eval(l, input, vars)?, eval(r, input, vars)?).ok()?,
        Expr::Cmp(l, op, r) => Val::from(op.run(&eval(l, input, vars)?, &eval(r, input, vars)?)),
        Expr::Logic(l, stop, r) => {
            if eval(l, input, vars)?.as_bool() == *stop {
                Val::from(*stop)
            } else {
                Val::from(eval(r, input, vars)?.as_bool())
            }
        }
        Expr::Alt(l, r) => {
            let v = eval(l, input, vars)?;
            if v.as_bool() {
                v
            } else {
                eval(r, input, vars)?
            }
        }
        Expr::Pipe(l, r) => eval(r, In::Whole(&eval(l, input, vars)?), vars)?,
    })
}

/// Decodes a JSON object into the named top-level fields only, in their
/// order, null for those absent; `None` when `text` is not a JSON object
/// (the caller then decodes it whole, which reports what is wrong). A
/// repeated key keeps its last value, as in a full decode.
pub fn decode_fields(text: &str, fields: &[String]) -> Option<Vec<Val>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = de.deserialize_map(Pick(fields)).ok()?;
    de.end().ok()?;
    Some(v)
}

struct Pick<'f>(&'f [String]);

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Vec<Val>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Val>, A::Error> {
        let mut slots = vec![Val::Null; self.0.len()];
        while let Some(at) = map.next_key_seed(FieldIndex(self.0))? {
            match at {
                Some(i) => slots[i] = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(slots)
    }
}

/// A key, as its position among the wanted fields (without allocating).
struct FieldIndex<'f>(&'f [String]);

impl<'de> DeserializeSeed<'de> for FieldIndex<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldIndex<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|f| f == key))
    }
}

#[cfg(test)]
mod tests;
