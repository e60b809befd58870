//! Bad input never stops the stream and never loses a record: each kind of
//! bad record reaches the dead-letter topic inside the transaction (or is
//! counted by `skip`, or stops the worker under `fail`), and every input is
//! accounted for — audited by `exactly verify` over output + dead-letter.

mod support;

use serde_json::{json, Value};
use support::*;

/// Good orders with one bad record of each kind between them. Returns the
/// records and the number of bad ones.
fn orders(missing_topic: &str, input_topic: &str) -> (Vec<Rec>, usize) {
    let rec = |key: &str, value: Option<Vec<u8>>| Rec {
        key: Some(key.as_bytes().to_vec()),
        value,
        headers: vec![("h".into(), Some(b"1".to_vec()))],
    };
    let good = |i: usize| {
        rec(
            &format!("g{i}"),
            Some(
                json!({"id": i, "price": 10, "customer": {"id": "c"}})
                    .to_string()
                    .into_bytes(),
            ),
        )
    };
    let bad = vec![
        rec("invalid-json", Some(b"{\"id\": 1, nope".to_vec())),
        rec("not-utf8", Some(vec![0xff, 0xfe, 0xfd])),
        rec(
            "type-error",
            Some(json!({"id": 2, "price": {"x": 1}}).to_string().into_bytes()),
        ),
        rec(
            "too-large-for-client",
            Some(
                json!({"id": 3, "price": 1, "pad": 4000})
                    .to_string()
                    .into_bytes(),
            ),
        ),
        rec(
            "too-large-for-topic",
            Some(
                json!({"id": 4, "price": 1, "pad": 2500})
                    .to_string()
                    .into_bytes(),
            ),
        ),
        rec(
            "missing-topic",
            Some(
                json!({"id": 5, "price": 1, "to": missing_topic})
                    .to_string()
                    .into_bytes(),
            ),
        ),
        // Routed back into the input: it would be consumed again.
        rec(
            "routes-to-input",
            Some(
                json!({"id": 7, "price": 1, "to": input_topic})
                    .to_string()
                    .into_bytes(),
            ),
        ),
    ];
    let handled = vec![
        rec("tombstone", None),
        rec(
            "missing-field",
            Some(json!({"id": 6}).to_string().into_bytes()),
        ),
    ];
    let n_bad = bad.len();
    let mut all = Vec::new();
    for (i, r) in bad.into_iter().chain(handled).enumerate() {
        all.extend((0..20).map(|j| good(i * 100 + j)));
        all.push(r);
    }
    all.extend((0..20).map(|j| good(10_000 + j)));
    (all, n_bad)
}

const CHAIN: &str = r#"
[kafka.producer]
"message.max.bytes" = "3000"
# A topic's max.message.bytes limits whole record batches: keep batches under it.
"batch.size" = "1500"

[[transform]]
type = "map"
expr = '{id: .id, total: (.price + 1), customer: .customer.id, to: .to} + (if .pad then {pad: ("x" * .pad)} else {} end)'

[[transform]]
type = "route"
expr = '.to // null'
"#;

fn pipeline() -> (Pipeline, String) {
    let p = Pipeline::create("dlq", 1, 1);
    // The output topic refuses records over 2,000 bytes: only the broker
    // knows, after the produce (the client allows 3,000).
    let out = unique("dlq-out-small");
    create_topic_with(&out, 1, &[("max.message.bytes", "2000")]);
    (Pipeline { output: out, ..p }, unique("no-such-topic"))
}

fn with_policy(p: &Pipeline, extra: &str) -> DaemonConfig {
    let mut cfg = DaemonConfig::new(&p.group, &p.input, &p.output, &unique("txn"));
    // The producer table must come before [[transform]]; the harness config
    // has no [kafka.producer] of its own.
    cfg.extra_toml = format!("{extra}\n{CHAIN}");
    cfg
}

fn header<'a>(o: &'a OutRec, name: &str) -> Option<&'a [u8]> {
    o.rec
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

#[test]
fn every_kind_of_bad_record_reaches_the_dead_letter_topic_and_the_stream_flows_on() {
    let (p, missing_topic) = pipeline();
    let dlq = unique("dlq");
    create_topic(&dlq, 1);
    let (input, n_bad) = orders(&missing_topic, &p.input);
    produce(&p.input, &input);
    let d = Daemon::run_to_end(&with_policy(
        &p,
        &format!("[dead_letter]\ntopic = \"{dlq}\""),
    ));

    let out = read_all(&p.output, "read_committed");
    let dead = read_all(&dlq, "read_committed");
    let keys: Vec<String> = dead
        .iter()
        .map(|o| String::from_utf8_lossy(o.rec.key.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(
        dead.len(),
        n_bad,
        "one dead letter per bad record; got {keys:?}"
    );
    assert_eq!(
        out.len() + dead.len(),
        input.len(),
        "every input accounted for"
    );
    let mut kinds: Vec<String> = dead
        .iter()
        .map(|o| String::from_utf8(header(o, "exactly.error.kind").unwrap().to_vec()).unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "decode",
            "decode",
            "delivery",
            "eval",
            "routes_to_input",
            "too_large",
            "unknown_topic"
        ]
    );
    for o in &dead {
        // The original record, untouched, with its own headers.
        let original = input.iter().find(|r| r.key == o.rec.key).unwrap();
        assert_eq!(o.rec.value, original.value);
        assert_eq!(header(o, "h"), Some(&b"1"[..]));
        assert!(header(o, "exactly.error.message").is_some_and(|m| !m.is_empty()));
        assert!(header(o, "exactly.error.step").is_some());
        assert!(header(o, "exactly.error.time").is_some());
        assert_eq!(o.lineage.as_ref().unwrap().topic, p.input);
    }
    // The tombstone stays a tombstone; a missing field is not an error.
    assert!(out
        .iter()
        .any(|o| o.rec.key.as_deref() == Some(b"tombstone") && o.rec.value.is_none()));
    let missing = out
        .iter()
        .find(|o| o.rec.key.as_deref() == Some(b"missing-field"))
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(missing.rec.value.as_ref().unwrap()).unwrap()["customer"],
        Value::Null
    );

    assert_eq!(d.metric("exactly_dead_letter_records_total"), n_bad as f64);
    assert_eq!(
        d.metric("exactly_transform_errors_total{kind=\"decode\",step=\"1 (map)\"}"),
        2.0
    );
    let (code, json, err) = verify_json(&p.group, &p.input, &[&p.output, &dlq], &[]);
    assert_eq!(code, 0, "{json} {err}");
}

#[test]
fn skip_counts_bad_records_and_moves_on() {
    let (p, missing_topic) = pipeline();
    let (input, n_bad) = orders(&missing_topic, &p.input);
    produce(&p.input, &input);
    let d = Daemon::run_to_end(&with_policy(&p, "[dead_letter]\npolicy = \"skip\""));
    assert_eq!(
        read_all(&p.output, "read_committed").len(),
        input.len() - n_bad
    );
    assert_eq!(d.metric("exactly_records_skipped_total"), n_bad as f64);
}

#[test]
fn fail_stops_the_worker_naming_the_record_and_commits_nothing_past_it() {
    let (p, missing_topic) = pipeline();
    let (input, _) = orders(&missing_topic, &p.input);
    produce(&p.input, &input);
    let mut d = Daemon::start(&with_policy(&p, "[dead_letter]\npolicy = \"fail\""));
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    // The first bad record is at offset 20: 20 good ones come before it.
    assert!(log.contains("@20: step 1 (map): decode"), "{log}");
    let (committed, _) = committed_and_end(&p.group, &p.input);
    assert!(
        committed <= 20,
        "committed {committed}, past the bad record"
    );
    assert_eq!(
        read_all(&p.output, "read_committed").len() as i64,
        committed
    );
}
