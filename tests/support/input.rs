//! Input records and the producers that write them.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use super::*;

/// An input record written by the test; its value is `<key>:<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The input of a test: `count` records over `keys` keys, `seq` header and
/// value `k<key>:<seq>` so that per-key order can be checked.
pub fn input_records(count: usize, keys: usize) -> Vec<Rec> {
    (0..count).map(|i| input_record(i, keys)).collect()
}

/// Record `i` of [`input_records`].
pub fn input_record(i: usize, keys: usize) -> Rec {
    let key = format!("k{}", i % keys);
    Rec {
        value: Some(format!("{key}:{i}").into_bytes()),
        key: Some(key.into_bytes()),
        headers: vec![
            ("seq".into(), Some(i.to_string().into_bytes())),
            ("null-header".into(), None),
        ],
    }
}

pub fn producer() -> ThreadedProducer<DefaultProducerContext> {
    producer_with(&[])
}

/// A producer with extra properties, e.g. `("compression.type", "zstd")`.
pub fn producer_with(props: &[(&str, &str)]) -> ThreadedProducer<DefaultProducerContext> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &broker().bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    for (k, v) in props {
        cfg.set(*k, *v);
    }
    cfg.create().unwrap()
}

pub fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, r: &Rec) {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).headers(headers);
    if let Some(k) = &r.key {
        rec = rec.key(k);
    }
    if let Some(v) = &r.value {
        rec = rec.payload(v);
    }
    let mut rec = rec;
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(_), back)) => {
                p.poll(Duration::from_millis(10));
                rec = back;
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}

/// Writes `records` to `topic` and waits for every acknowledgement.
pub fn produce(topic: &str, records: &[Rec]) {
    produce_with(topic, records, &[]);
}

/// [`produce`] with a producer of extra properties.
pub fn produce_with(topic: &str, records: &[Rec], props: &[(&str, &str)]) {
    let p = producer_with(props);
    for r in records {
        send(&p, topic, r);
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Writes `records` from a background thread at about `per_sec` records a
/// second, so that faults can be injected while input still flows.
pub fn produce_paced(topic: &str, records: Vec<Rec>, per_sec: usize) -> JoinHandle<()> {
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let p = producer();
        let start = Instant::now();
        for (i, r) in records.iter().enumerate() {
            send(&p, &topic, r);
            if i % 100 == 99 {
                // Pacing of a load generator, not synchronisation.
                let due = start + Duration::from_secs_f64((i + 1) as f64 / per_sec as f64);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        }
        // Long enough to outlast a broker outage a test injects meanwhile.
        p.flush(Duration::from_secs(300)).unwrap();
    })
}
