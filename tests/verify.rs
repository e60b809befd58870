//! `exactly verify` on the real broker: clean on what the daemon wrote (also
//! when its input is itself a transactional topic written by exactly), and
//! each planted fault — a duplicate, a gap, a reordering — is reported with
//! exit code 1. Unauditable output is a clear error (exit 2).

mod support;

use serde_json::Value;
use support::*;

fn verify(args: &[&str]) -> (i32, Value, String) {
    let mut all = vec![
        "verify",
        "--bootstrap-servers",
        &broker().bootstrap,
        "--json",
        "--wait-secs",
        "30",
    ];
    all.extend_from_slice(args);
    let (code, out, err) = exactly(&all, &[]);
    let json = serde_json::from_str(&out).unwrap_or(Value::Null);
    (code, json, err)
}

#[test]
fn a_two_hop_chain_of_daemons_verifies_clean_at_each_hop() {
    let first = Pipeline::create("hop1", 3, 3);
    let mid = first.output.clone();
    let last = unique("hop2-out");
    create_topic(&last, 2);
    let group2 = unique("hop2-group");
    let input = input_records(3_000, 17);
    produce(&first.input, &input);

    let _a = Daemon::run_to_end(&DaemonConfig::new(
        &first.group,
        &first.input,
        &mid,
        &unique("txn"),
    ));
    // The second hop reads a transactional topic: offsets have gaps (markers).
    let _b = Daemon::run_to_end(&DaemonConfig::new(&group2, &mid, &last, &unique("txn")));

    for (group, inp, out) in [(&first.group, &first.input, &mid), (&group2, &mid, &last)] {
        let (code, r, err) = verify(&["--group", group, "--input", inp, "--output", out]);
        assert_eq!(code, 0, "{inp} -> {out}: {r:#} {err}");
        assert_eq!(r["clean"], true);
        assert_eq!(r["report"]["inputs"], 3_000);
        assert_eq!(r["report"]["missing"], 0);
        assert_eq!(r["report"]["duplicates"], 0);
    }
}

fn lineage_headers(
    topic: &str,
    partition: i32,
    offset: i64,
    index: u32,
) -> Vec<(String, Option<Vec<u8>>)> {
    lineage_headers_of(topic, partition, offset, index, 1)
}

/// Lineage of output `index` of the `count` outputs of an input.
fn lineage_headers_of(
    topic: &str,
    partition: i32,
    offset: i64,
    index: u32,
    count: u32,
) -> Vec<(String, Option<Vec<u8>>)> {
    [
        ("exactly.source.topic", topic.to_owned()),
        ("exactly.source.partition", partition.to_string()),
        ("exactly.source.offset", offset.to_string()),
        ("exactly.output.index", index.to_string()),
        ("exactly.output.count", count.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Some(v.into_bytes())))
    .collect()
}

#[test]
fn planted_duplicates_gaps_and_reorderings_are_each_reported() {
    let p = Pipeline::create("planted", 2, 1);
    produce(&p.input, &input_records(40, 5));
    let mut inputs = read_all(&p.input, "read_committed");
    inputs.sort_by_key(|o| (o.partition, o.offset));
    let p0: Vec<i64> = inputs
        .iter()
        .filter(|o| o.partition == 0)
        .map(|o| o.offset)
        .collect();
    let p1: Vec<i64> = inputs
        .iter()
        .filter(|o| o.partition == 1)
        .map(|o| o.offset)
        .collect();
    assert!(p0.len() > 5 && p1.len() > 5, "both partitions hold records");

    // Outputs for every input, once, in order — then the faults.
    let mut plan: Vec<(i32, i64)> = inputs.iter().map(|o| (o.partition, o.offset)).collect();
    let gap = (1, p1[2]);
    plan.retain(|x| *x != gap);
    let dup = (0, p0[1]);
    plan.push(dup);
    let a = plan.iter().position(|x| *x == (0, p0[3])).unwrap();
    let b = plan.iter().position(|x| *x == (0, p0[4])).unwrap();
    plan.swap(a, b);
    let outputs: Vec<Rec> = plan
        .iter()
        .map(|(part, off)| Rec {
            key: None,
            value: Some(b"x".to_vec()),
            headers: lineage_headers(&p.input, *part, *off, 0),
        })
        .collect();
    produce(&p.output, &outputs);

    let (code, r, err) = verify(&["--until", "end", "--input", &p.input, "--output", &p.output]);
    assert_eq!(code, 1, "{r:#} {err}");
    assert_eq!(r["clean"], false);
    let rep = &r["report"];
    assert_eq!(
        (
            rep["missing"].as_u64(),
            rep["duplicates"].as_u64(),
            rep["order_violations"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{rep:#}"
    );
    let parts = rep["partitions"].as_array().unwrap();
    assert_eq!(parts[0]["duplicates"], 1);
    // Both copies are named by where they were read: one idempotent
    // producer wrote the plan in order into the one output partition.
    let copy = |i: usize| format!("{}[0]@{i}", p.output);
    let first = plan.iter().position(|x| *x == dup).unwrap();
    assert_eq!(
        parts[0]["first_duplicates"],
        serde_json::json!([{
            "offset": dup.1,
            "index": 0,
            "first": copy(first),
            "repeat": copy(plan.len() - 1),
        }]),
        "{rep:#}"
    );
    assert_eq!(parts[0]["order_violations"], 1);
    assert_eq!(parts[1]["without_outputs"], 1);
    assert_eq!(parts[1]["first_missing"][0], gap.1);

    // The text report says the same for people.
    let (code, text, _) = exactly(
        &[
            "verify",
            "--bootstrap-servers",
            &broker().bootstrap,
            "--until",
            "end",
            "--input",
            &p.input,
            "--output",
            &p.output,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        text.contains("1 without output, 0 incomplete, 1 duplicates, 1 order violations"),
        "{text}"
    );
    assert!(text.contains("VIOLATIONS FOUND"), "{text}");
    assert!(
        text.contains(&format!(
            "duplicate: input offset {} (output 0) read at {} and again at {}",
            dup.1,
            copy(first),
            copy(plan.len() - 1)
        )),
        "{text}"
    );
}

#[test]
fn outputs_without_lineage_headers_are_a_clear_error() {
    let p = Pipeline::create("nolineage", 1, 1);
    produce(&p.input, &input_records(10, 2));
    produce(&p.output, &input_records(10, 2));
    let (code, _, err) = verify(&["--until", "end", "--input", &p.input, "--output", &p.output]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lineage"), "{err}");
}

#[test]
fn a_missing_topic_or_unreachable_broker_exits_2() {
    let p = Pipeline::create("verify-missing", 1, 1);
    let (code, _, err) = verify(&[
        "--until",
        "end",
        "--input",
        &p.input,
        "--output",
        "no-such-topic",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-topic"), "{err}");
    let (code, _, err) = exactly(
        &[
            "verify",
            "--bootstrap-servers",
            "127.0.0.1:9",
            "--input",
            "a",
            "--output",
            "b",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot reach Kafka"), "{err}");
}

#[test]
fn a_lost_second_output_is_reported_even_with_allow_missing() {
    // Each input has two outputs: index 0 in `first`, index 1 in `second`
    // (as a route step would write them).
    let p = Pipeline::create("two-outputs", 1, 1);
    let second = unique("two-outputs-routed");
    create_topic(&second, 1);
    produce(&p.input, &input_records(20, 3));
    let inputs = read_all(&p.input, "read_committed");
    let out = |offset, index, value: &str| Rec {
        key: None,
        value: Some(value.as_bytes().to_vec()),
        headers: lineage_headers_of(&p.input, 0, offset, index, 2),
    };
    let lost = inputs[7].offset;
    produce(
        &p.output,
        &inputs
            .iter()
            .map(|i| out(i.offset, 0, "a"))
            .collect::<Vec<_>>(),
    );
    produce(
        &second,
        &inputs
            .iter()
            .filter(|i| i.offset != lost)
            .map(|i| out(i.offset, 1, "b"))
            .collect::<Vec<_>>(),
    );
    let args = |extra: &'static [&'static str]| {
        let mut a = vec!["--until", "end", "--input", p.input.as_str()];
        a.extend(["--output", p.output.as_str(), "--output", second.as_str()]);
        a.extend_from_slice(extra);
        a
    };

    // The input whose second output was lost is reported, whatever
    // --allow-missing says: it has an output, just not all of them.
    let (code, r, err) = verify(&args(&["--allow-missing"]));
    assert_eq!(code, 1, "{r:#} {err}");
    let rep = &r["report"];
    assert_eq!(
        (rep["missing"].as_u64(), rep["incomplete"].as_u64()),
        (Some(0), Some(1)),
        "{rep:#}"
    );
    assert_eq!(rep["partitions"][0]["first_incomplete"][0], lost);

    // Auditing only the first topic leaves every input incomplete.
    let (code, r, _) = verify(&["--until", "end", "--input", &p.input, "--output", &p.output]);
    assert_eq!(code, 1);
    assert_eq!(r["report"]["incomplete"].as_u64(), Some(20));
}

#[test]
fn an_output_without_lineage_beside_audited_ones_is_a_violation_unless_allowed() {
    let p = Pipeline::create("unstamped", 1, 1);
    produce(&p.input, &input_records(20, 3));
    let outputs: Vec<Rec> = read_all(&p.input, "read_committed")
        .iter()
        .map(|i| Rec {
            key: None,
            value: Some(b"a".to_vec()),
            headers: lineage_headers(&p.input, 0, i.offset, 0),
        })
        .collect();
    produce(&p.output, &outputs);
    let args = ["--until", "end", "--input", &p.input, "--output", &p.output];
    let (code, r, err) = verify(&args);
    assert_eq!(code, 0, "{r:#} {err}");

    // A copy written without headers: a duplicate nobody could see.
    let mut copy = outputs[3].clone();
    copy.headers.clear();
    produce(&p.output, &[copy]);
    let (code, r, _) = verify(&args);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["report"]["outputs_without_lineage"].as_u64(), Some(1));
    let mut allowed = args.to_vec();
    allowed.push("--allow-unstamped");
    let (code, r, _) = verify(&allowed);
    assert_eq!(code, 0, "{r:#}");
}

#[test]
fn verify_from_a_configuration_with_a_route_step_names_the_topics_it_cannot_know() {
    let p = Pipeline::create("verify-route", 1, 1);
    produce(&p.input, &input_records(5, 1));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exactly.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"

[input]
topics = ["{input}"]

[output]
topic = "{output}"

[[transform]]
type = "route"
expr = '["elsewhere", null]'
"#,
            bootstrap = broker().bootstrap,
            group = p.group,
            input = p.input,
            output = p.output,
        ),
    )
    .unwrap();
    let (_, r, err) = verify(&["--config", path.to_str().unwrap(), "--until", "end"]);
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("route step") && notes.contains("--output"),
        "the report names the blind spot and the fix: {r:#} {err}"
    );
}
