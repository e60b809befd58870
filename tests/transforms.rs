//! The jq transform chain on the real broker: filter, map, key, route to
//! several topics, headers and explode — all outputs of an input in the same
//! transaction as its offset, audited by `exactly verify`.

mod support;

use serde_json::{json, Value};
use support::*;

fn json_rec(key: &str, v: Value) -> Rec {
    Rec {
        key: Some(key.as_bytes().to_vec()),
        value: Some(v.to_string().into_bytes()),
        headers: vec![
            ("trace".into(), Some(b"t1".to_vec())),
            ("drop-me".into(), Some(b"x".to_vec())),
        ],
    }
}

fn value_of(o: &OutRec) -> Value {
    serde_json::from_slice(o.rec.value.as_ref().unwrap()).unwrap()
}

fn verify_clean(group: &str, input: &str, outputs: &[&str], allow_missing: bool) -> Value {
    let extra: &[&str] = if allow_missing {
        &["--allow-missing"]
    } else {
        &[]
    };
    let (code, v, err) = verify_json(group, input, outputs, extra);
    assert_eq!(code, 0, "verify: {v:#} {err}");
    v
}

#[test]
fn filter_map_key_and_headers_reshape_each_record_once() {
    let p = Pipeline::create("reshape", 3, 3);
    let input: Vec<Rec> = (0..2_000)
        .map(|i| {
            json_rec(
                &format!("o{i}"),
                json!({"id": i, "amount": i % 250, "price": 2.5, "qty": i % 4, "customer": {"id": format!("c{}", i % 17)}}),
            )
        })
        .collect();
    produce(&p.input, &input);
    let mut cfg = DaemonConfig::new(&p.group, &p.input, &p.output, &unique("txn"));
    cfg.extra_toml = r#"
[[transform]]
type = "filter"
expr = '.amount > 100'

[[transform]]
type = "map"
expr = '{id: .id, total: (.price * .qty), customer: .customer.id}'

[[transform]]
type = "key"
expr = '.customer'

[[transform]]
type = "headers"
set = { source = '"exactly"', total = '.total | tostring' }
remove = ["drop-me"]
"#
    .into();
    let d = Daemon::run_to_end(&cfg);
    let out = read_all(&p.output, "read_committed");
    let kept: Vec<i64> = (0..2_000).filter(|i| i % 250 > 100).collect();
    assert_eq!(out.len(), kept.len());
    for o in &out {
        let v = value_of(o);
        let id = v["id"].as_i64().unwrap();
        assert!(id % 250 > 100, "filtered record {id} came out");
        assert_eq!(v["total"].as_f64().unwrap(), 2.5 * (id % 4) as f64);
        let customer = format!("c{}", id % 17);
        assert_eq!(v["customer"], json!(customer));
        assert_eq!(
            o.rec.key.as_deref(),
            Some(customer.as_bytes()),
            "key from .customer"
        );
        let h = |name: &str| {
            o.rec
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(h("trace").as_deref(), Some(&b"t1"[..]));
        assert_eq!(h("source").as_deref(), Some(&b"exactly"[..]));
        assert!(h("drop-me").is_none());
        assert_eq!(
            h("total")
                .map(|b| String::from_utf8(b).unwrap())
                .unwrap()
                .parse::<f64>()
                .unwrap(),
            2.5 * (id % 4) as f64
        );
    }
    assert_eq!(
        d.metric("exactly_records_filtered_total"),
        (2_000 - kept.len()) as f64
    );
    let r = verify_clean(&p.group, &p.input, &[&p.output], true);
    assert_eq!(r["report"]["duplicates"], 0);
    assert_eq!(
        r["report"]["missing"].as_u64(),
        Some((2_000 - kept.len()) as u64)
    );
}

#[test]
fn route_sends_records_to_several_topics_in_one_transaction() {
    let p = Pipeline::create("route", 2, 2);
    let eu = unique("route-eu");
    let us = unique("route-us");
    create_topic(&eu, 2);
    create_topic(&us, 2);
    let input: Vec<Rec> = (0..1_000)
        .map(|i| {
            json_rec(
                &format!("k{i}"),
                json!({"id": i, "region": if i % 3 == 0 { "eu" } else { "us" }}),
            )
        })
        .collect();
    produce(&p.input, &input);
    let mut cfg = DaemonConfig::new(&p.group, &p.input, &p.output, &unique("txn"));
    // Every record to its region's topic; eu records also to the default output.
    cfg.extra_toml = format!(
        r#"
[[transform]]
type = "route"
expr = 'if .region == "eu" then ["{eu}", null] else "{us}" end'
"#
    );
    let d = Daemon::run_to_end(&cfg);
    let eu_out = read_all(&eu, "read_committed");
    let us_out = read_all(&us, "read_committed");
    let default_out = read_all(&p.output, "read_committed");
    assert_eq!(eu_out.len(), 334);
    assert_eq!(us_out.len(), 666);
    assert_eq!(default_out.len(), 334);
    assert!(eu_out.iter().all(|o| value_of(o)["region"] == "eu"));
    // Two outputs of one input carry indexes 0 and 1.
    assert!(default_out
        .iter()
        .all(|o| o.lineage.as_ref().unwrap().index == 1));
    assert_eq!(
        d.metric(&format!("exactly_output_records_total{{topic=\"{eu}\"}}")),
        334.0
    );
    let r = verify_clean(&p.group, &p.input, &[&eu, &us, &p.output], false);
    assert_eq!(r["report"]["outputs_read"], 1_334);
}

#[test]
fn explode_turns_one_input_into_ten_thousand_outputs_atomically() {
    let p = Pipeline::create("explode", 1, 3);
    let mut input = vec![json_rec(
        "big",
        json!({"items": (0..10_000).collect::<Vec<_>>()}),
    )];
    input.extend((0..50).map(|i| json_rec(&format!("s{i}"), json!({"items": [i, i + 1]}))));
    produce(&p.input, &input);
    let mut cfg = DaemonConfig::new(&p.group, &p.input, &p.output, &unique("txn"));
    cfg.extra_toml = "[[transform]]\ntype = \"explode\"\nexpr = '.items'\n".into();
    let _d = Daemon::run_to_end(&cfg);
    let out = read_all(&p.output, "read_committed");
    assert_eq!(out.len(), 10_000 + 100);
    let r = verify_clean(&p.group, &p.input, &[&p.output], false);
    assert_eq!(r["report"]["duplicates"], 0);
    assert_eq!(r["report"]["outputs_read"], 10_100);
}
