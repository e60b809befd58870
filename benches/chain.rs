//! ns per record of the transform chain on a 1 KB and a 100 B JSON record:
//! passthrough, filter, and a typical map, run by the direct evaluator
//! (`src/transform/direct.rs`), and the same map through jaq's interpreter
//! (wrapped as `[…][0]`, which lies outside the direct subset) as the
//! baseline measured in the same run. `cargo bench --bench chain`.
//!
//! Target (issue 4): a typical map at 200,000 records/s or more on one core,
//! i.e. at most 5,000 ns per record.

// The same allocator as the `exactly` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exactly::transform::{Format, Record, Registry};
use serde_json::{json, Value};

/// An order of about 1 KB, as JSON.
fn order() -> Vec<u8> {
    let v = json!({
        "id": 123456,
        "amount": 250,
        "price": 19.99,
        "qty": 3,
        "currency": "EUR",
        "customer": {"id": "c-000042", "name": "Ada Lovelace", "email": "ada@example.org", "tier": "gold"},
        "shipping": {"street": "1 Analytical Engine Way", "city": "London", "zip": "N1 9GU", "country": "GB"},
        "items": (0..8).map(|i| json!({"sku": format!("SKU-{i:05}"), "qty": i + 1, "price": 2.5 * i as f64})).collect::<Vec<_>>(),
        "tags": ["priority", "gift", "express"],
        "note": "x".repeat(380),
    });
    let bytes = v.to_string().into_bytes();
    assert!(
        (900..1200).contains(&bytes.len()),
        "record is {} bytes",
        bytes.len()
    );
    bytes
}

fn chain(steps: &[(&str, &str)]) -> exactly::transform::Chain {
    let tables: Vec<Value> = steps
        .iter()
        .map(|(ty, expr)| json!({"type": ty, "expr": expr}))
        .collect();
    Registry::builtin()
        .build(&tables, Format::Json, Format::Json)
        .expect("valid chain")
}

/// The benchmark harness's 100 B order (`bench/load.py`).
fn small_order() -> Vec<u8> {
    br#"{"ts":1700000000000,"id":123456,"price":4.5,"qty":3,"customer":{"id":"c456"},"pad":"xxxxxxxxxx"}"#
        .to_vec()
}

const MAP: &str = "{id: .id, ts: .ts, total: (.price * .qty), customer: .customer.id}";
const MAP_ON_JAQ: &str = "[{id: .id, ts: .ts, total: (.price * .qty), customer: .customer.id}][0]";

fn bench(c: &mut Criterion) {
    for (group_name, value) in [
        ("chain_1kb_json", order()),
        ("chain_100b_json", small_order()),
    ] {
        let record = Record {
            key: Some(b"c-000042".to_vec()),
            value: Some(value),
            ..Record::default()
        };
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(1));
        let cases: [(&str, Vec<(&str, &str)>); 4] = [
            ("passthrough", vec![]),
            ("filter", vec![("filter", ".price > 1")]),
            ("map", vec![("map", MAP)]),
            ("map_on_jaq", vec![("map", MAP_ON_JAQ)]),
        ];
        for (name, steps) in cases {
            let mut ch = chain(&steps);
            let mut out = Vec::with_capacity(4);
            group.bench_function(name, |b| {
                b.iter(|| {
                    out.clear();
                    ch.apply(record.clone(), &mut out).expect("chain");
                    assert_eq!(out.len(), 1);
                })
            });
        }
        group.bench_function("decode_whole", |b| {
            b.iter(|| Format::Json.decode(record.value.as_deref()).expect("json"))
        });
        group.bench_function("serde_json_value_parse", |b| {
            b.iter(|| {
                serde_json::from_slice::<Value>(record.value.as_deref().unwrap()).expect("json")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
