//! The exactly-once audit: every input's outputs, duplicates, per-key order.

use std::collections::{BTreeMap, HashMap};

use super::*;

/// How output compares with input: each input exactly once, nothing else.
#[derive(Debug, Default)]
pub struct Audit {
    pub missing: usize,
    pub duplicated: usize,
    pub unexpected: usize,
    pub order_violations: usize,
}

impl Audit {
    pub fn is_exactly_once(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

/// Compares a passthrough's output with its input: counts of each record,
/// and per-key order of the `seq` header.
pub fn audit(input: &[Rec], output: &[OutRec]) -> Audit {
    let mut expected: HashMap<&Rec, usize> = HashMap::new();
    for r in input {
        *expected.entry(r).or_default() += 1;
    }
    let mut seen: HashMap<&Rec, usize> = HashMap::new();
    for o in output {
        *seen.entry(&o.rec).or_default() += 1;
    }
    let mut a = Audit::default();
    for (r, n) in &expected {
        let got = seen.get(r).copied().unwrap_or(0);
        if got == 0 {
            a.missing += n;
        } else if got > *n {
            a.duplicated += got - n;
        }
    }
    a.unexpected = seen
        .iter()
        .filter(|(r, _)| !expected.contains_key(*r))
        .map(|(_, n)| n)
        .sum();
    // Per key, in output offset order, seq must increase.
    // (output partition, key) -> [(offset, seq)]
    type ByKey = BTreeMap<(i32, Vec<u8>), Vec<(i64, u64)>>;
    let mut by_key = ByKey::new();
    for o in output {
        let seq = seq_of(&o.rec);
        by_key
            .entry((o.partition, o.rec.key.clone().unwrap_or_default()))
            .or_default()
            .push((o.offset, seq));
    }
    for (_, mut v) in by_key {
        v.sort();
        a.order_violations += v.windows(2).filter(|w| w[1].1 <= w[0].1).count();
    }
    a
}

/// Reads `output` as a read_committed consumer and asserts that it holds
/// each of `input` once, with per-key order kept; `context` is printed on
/// failure.
pub fn assert_exactly_once_in_order(input: &[Rec], output: &str, context: &str) {
    let a = audit(input, &read_all(output, "read_committed"));
    assert!(a.is_exactly_once(), "{a:?} {context}");
    assert_eq!(a.order_violations, 0, "{a:?} {context}");
}

pub fn seq_of(r: &Rec) -> u64 {
    r.headers
        .iter()
        .find(|(k, _)| k == "seq")
        .and_then(|(_, v)| v.as_ref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Runs `exactly verify --json` for `group` over `input` and `outputs`
/// (plus `extra` flags) against the test broker: (exit code, report, stderr).
pub fn verify_json(
    group: &str,
    input: &str,
    outputs: &[&str],
    extra: &[&str],
) -> (i32, serde_json::Value, String) {
    let bootstrap = &broker().bootstrap;
    let mut args = vec![
        "verify",
        "--bootstrap-servers",
        bootstrap,
        "--group",
        group,
        "--input",
        input,
        "--json",
    ];
    for o in outputs {
        args.extend(["--output", o]);
    }
    args.extend_from_slice(extra);
    let (code, out, err) = exactly(&args, &[]);
    (
        code,
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null),
        err,
    )
}
