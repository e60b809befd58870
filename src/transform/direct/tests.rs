//! The direct evaluator must agree with jaq: same outputs, same errors, for
//! every expression of its subset on every kind of input, including inputs
//! where it has to hand over to jaq.

use super::*;
use crate::transform::jq::Program;
use crate::transform::{Format, Header, Record};

const SUBSET: &[&str] = &[
    "{id: .id, ts: .ts, total: (.price * .qty), customer: .customer.id}",
    ".",
    ".id",
    ".customer.id",
    r#"."customer"."id""#,
    ".items[0]",
    ".a.b.c",
    "{id, ts}",
    "{k: $key, h: $headers.h, $key}",
    "$key",
    "{a: 1, b: \"x\\ty\", c: 2.50, d: 1e3, e: 12345678901234567890, f: -.price}",
    "{a: .x, a: .y, b: .z}",
    ".price * .qty > 10",
    ".price > 3 and .qty < 3",
    ".price > 3 or .missing",
    ".missing // .id // \"none\"",
    ".price + .qty - 1 / 4 % 3",
    ".note + \"!\"",
    ".customer | .id",
    ". | .customer.id",
    "(.customer | .id) == \"c-42\"",
    ".qty != 2",
    "{x: {y: .customer, z: .items[0]}}",
];

const OUTSIDE: &[&str] = &[
    ".[]",
    ".a, .b",
    "map(.)",
    "keys",
    "{(.k): 1}",
    "\"\\(.a)\"",
    ".a?",
    ".[1:]",
    "[.a]",
    "if .a then 1 else 2 end",
    ".a |= 1",
    ".[-1]",
    "tostring",
];

const INPUTS: &[&str] = &[
    r#"{"ts":1700000000000,"id":7,"price":2.5,"qty":3,"customer":{"id":"c-42"},"pad":"xxxx"}"#,
    r#"{"id":1,"price":19.99,"qty":3,"customer":{"id":"c-1","name":"A"},"items":[{"sku":"s"}],"note":"héllo \"q\" \u00e9"}"#,
    r#"{"id":1,"id":2,"x":1,"y":2,"z":null,"price":4,"qty":1}"#,
    r#"{"price":"2","qty":3}"#,
    r#"{"price":null,"qty":null,"customer":null}"#,
    r#"{"customer":"not an object","a":{"b":5}}"#,
    r#"{"customer":{"id":[1,2]},"items":{"0":1},"a":{"b":{"c":true}}}"#,
    r#"{"price":1e308,"qty":10,"id":18446744073709551615}"#,
    r#"{"price":-0.0,"qty":1.0,"note":""}"#,
    r#"{}"#,
    r#"[1,2,3]"#,
    r#""a string""#,
    r#"42"#,
    r#"null"#,
    r#"{"a":1} trailing"#,
    r#"{"a":1,"skipped":{"deep":[1,2,{"x":"\u12"}]}}"#,
    r#"{"a":1,"skipped":[1,2,}"#,
    "{\"a\":1,\"skipped\":\"\x01\"}",
];

fn record(value: &str) -> Record {
    Record {
        key: Some(b"k-1".to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![Header {
            key: "h".into(),
            value: Some(b"v".to_vec()),
        }],
        ..Record::default()
    }
}

/// What a program makes of a record: its outputs as JSON text, or its error.
fn outcome(p: &Program, r: &Record) -> Result<Vec<String>, String> {
    let input = p
        .decode(Format::Json, r.value.as_deref())
        .map_err(|e| e.to_string())?;
    p.run(input, r)
        .map(|vs| vs.iter().map(|v| v.to_string()).collect())
        .map_err(|e| e.to_string())
}

#[test]
fn the_subset_runs_directly_and_the_rest_on_jaq() {
    for code in SUBSET {
        assert!(Program::compile(code).unwrap().is_direct(), "{code}");
    }
    for code in OUTSIDE {
        let p = Program::compile(code).unwrap();
        assert!(!p.is_direct(), "{code} should run on jaq");
    }
}

#[test]
fn the_subset_is_decided_without_jaq_on_well_formed_input() {
    let whole = Format::Json.decode(Some(INPUTS[0].as_bytes())).unwrap();
    let vars = [Val::from("k-1".to_owned()), Val::Null];
    for code in SUBSET {
        let direct = Direct::compile(code).unwrap();
        let fields = direct
            .root_fields()
            .map(|f| Input::Fields(decode_fields(INPUTS[0], f).unwrap()));
        for input in fields.into_iter().chain([Input::Whole(whole.clone())]) {
            assert!(direct.eval(&input, &vars).is_some(), "{code}");
            let mut out = Vec::new();
            assert!(
                direct.eval_json(&input, &vars, &mut out).is_some(),
                "{code}"
            );
        }
    }
}

/// The same, given the whole value (as the `headers` step gives it).
fn outcome_on_whole(p: &Program, r: &Record) -> Result<Vec<String>, String> {
    let input = Format::Json
        .decode(r.value.as_deref())
        .map_err(|e| e.to_string())?;
    p.run(Input::Whole(input), r)
        .map(|vs| vs.iter().map(|v| v.to_string()).collect())
        .map_err(|e| e.to_string())
}

#[test]
fn direct_results_and_errors_equal_jaqs() {
    for code in SUBSET.iter().chain(OUTSIDE) {
        let fast = Program::compile(code).unwrap();
        let slow = Program::compile(code).unwrap().jaq_only();
        for input in INPUTS {
            let r = record(input);
            let expected = outcome(&slow, &r);
            assert_eq!(outcome(&fast, &r), expected, "expression {code} on {input}");
            assert_eq!(
                outcome_on_whole(&fast, &r),
                expected,
                "expression {code} on the whole of {input}"
            );
        }
    }
}

#[test]
fn json_written_directly_equals_jaqs_result_encoded() {
    let mut decided = 0;
    for code in SUBSET {
        let fast = Program::compile(code).unwrap();
        let slow = Program::compile(code).unwrap().jaq_only();
        for input in INPUTS {
            let r = record(input);
            let Ok(decoded) = fast.decode(Format::Json, r.value.as_deref()) else {
                continue;
            };
            let Some(direct) = fast.run_to_json(&decoded, &r) else {
                continue;
            };
            decided += 1;
            let slow_input = slow.decode(Format::Json, r.value.as_deref()).unwrap();
            let results = slow.run(slow_input, &r).unwrap();
            assert_eq!(results.len(), 1, "expression {code} on {input}");
            assert_eq!(
                direct,
                Format::Json.encode(&results[0]).unwrap(),
                "expression {code} on {input}"
            );
        }
    }
    // Most pairs are decided directly; the rest are errors left to jaq.
    assert!(decided > SUBSET.len() * INPUTS.len() / 2, "{decided}");
}

#[test]
fn only_the_fields_an_expression_reads_are_decoded() {
    let fields = |code: &str| {
        Direct::compile(code)
            .unwrap()
            .root_fields()
            .map(<[String]>::to_vec)
    };
    assert_eq!(
        fields("{id: .id, ts: .ts, total: (.price * .qty), customer: .customer.id}").unwrap(),
        ["id", "ts", "price", "qty", "customer"]
    );
    assert_eq!(fields(".a | .b").unwrap(), ["a"]);
    assert_eq!(fields(". | .a").unwrap(), ["a"]);
    assert_eq!(fields("{$key}").unwrap(), Vec::<String>::new());
    assert_eq!(fields("."), None);
    assert_eq!(fields("{a: .}"), None);
    assert_eq!(fields(".[0]"), None);

    let v = decode_fields(
        r#"{"a":1,"b":{"c":[1,2]},"a":3,"d":"x"}"#,
        &["a".into(), "d".into(), "absent".into()],
    )
    .unwrap();
    let v: Vec<String> = v.iter().map(Val::to_string).collect();
    assert_eq!(v, ["3", "\"x\"", "null"]);
    // Skipped values are still checked: not JSON, no value.
    assert!(decode_fields(r#"{"a":1,"b":[1,}"#, &["a".into()]).is_none());
    assert!(decode_fields(r#"[1]"#, &["a".into()]).is_none());
}
