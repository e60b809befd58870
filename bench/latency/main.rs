//! End-to-end latency probe for the side-by-side benchmark (`bench/harness.py`).
//!
//! One process, two threads, so that the measuring side costs the 2-core
//! benchmark machine little next to the contender it measures:
//! - a paced, open-loop generator writes `--rate` records/s of `--size`-byte
//!   JSON values to the input topic, each value starting with
//!   `{"ts":<epoch ms>` stamped as it is handed to the producer;
//! - a `read_committed` consumer of the output topic takes, for every record,
//!   its arrival time minus that `ts` (passthrough keeps the value, and every
//!   contender's map keeps `ts`, so this works whatever wrote the output).
//!
//! Records stamped in the first `--warmup-seconds` are left out. The result is
//! one JSON object on stdout: counts, p50/p99/p99.9/max in ms, and how far the
//! generator ever fell behind its schedule (a sign that the machine, not the
//! contender, is the limit).
//!
//! Built by `bench/run.sh` as `cargo build --release --example latency-probe`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    /// Topic the generator writes (the contender's input).
    #[arg(long)]
    input: String,
    /// Topic the probe reads with read_committed (the contender's output).
    #[arg(long)]
    output: String,
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Offered load, records per second.
    #[arg(long)]
    rate: f64,
    /// How long the load is offered after the warm-up.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    /// Records stamped in the first seconds are not measured.
    #[arg(long, default_value_t = 3.0)]
    warmup_seconds: f64,
    /// How long to wait for the last records after the generator ends.
    #[arg(long, default_value_t = 30.0)]
    drain_seconds: f64,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        * 1000.0
}

/// A value of `size` bytes (at least the fields): the same shape as the
/// throughput input written by `bench/load.py`.
fn value(i: u64, ts: u64, size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"ts":{ts},"id":{i},"price":{},"qty":{},"customer":{{"id":"c{}"}},"pad":""#,
        2.5 + (i % 7) as f64,
        1 + i % 4,
        i % 1000
    );
    let mut v = Vec::with_capacity(size.max(head.len() + 2));
    v.extend_from_slice(head.as_bytes());
    v.resize(size.saturating_sub(2).max(head.len()), b'x');
    v.extend_from_slice(b"\"}");
    v
}

/// The `ts` at the start of a value.
fn ts_of(v: &[u8]) -> Option<f64> {
    let head = &v[..v.len().min(64)];
    let at = head.windows(5).position(|w| w == br#""ts":"#)? + 5;
    // The digits may run past the first 64 bytes: read them from the value.
    let digits: &[u8] = &v[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Offers `rate` records/s for `total` seconds; returns (sent, max lag ms).
fn generate(args: &Args, sent: &AtomicU64) -> anyhow::Result<f64> {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("linger.ms", "1")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating the generator's producer")?;
    let total = ((args.warmup_seconds + args.seconds) * args.rate) as u64;
    let start = Instant::now();
    let mut max_lag = 0.0f64;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate);
        let now = Instant::now();
        if due > now {
            // The pacing of an open-loop load generator.
            std::thread::sleep(due - now);
        } else {
            max_lag = max_lag.max((now - due).as_secs_f64() * 1000.0);
        }
        let key = format!("k{}", i % 10007);
        let payload = value(i, now_ms() as u64, args.size);
        let mut record = BaseRecord::to(&args.input).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("generator: produce failed: {e}"),
            }
        }
        sent.store(i + 1, Ordering::Release);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("generator: flushing the last records")?;
    Ok(max_lag)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[k]
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", format!("latency-probe-{}", args.output))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        // Answers come as soon as the last stable offset moves; a short wait
        // bounds how late an arrival is noted if the broker holds a fetch.
        .set("fetch.wait.max.ms", "10")
        .create()
        .context("creating the probe's consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        tpl.add_partition_offset(&args.output, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let begin_ms = now_ms();
    let sent = Arc::new(AtomicU64::new(0));
    let generator = {
        let (args, sent) = (args.clone(), sent.clone());
        std::thread::spawn(move || generate(&args, &sent))
    };

    let measured_from = begin_ms + args.warmup_seconds * 1000.0;
    let mut latencies = Vec::with_capacity((args.rate * args.seconds) as usize + 1);
    let mut received = 0u64;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if let Some(msg) = consumer.poll(Duration::from_millis(1)) {
            let msg = msg.context("probe: consumer error")?;
            let arrived = now_ms();
            let ts = msg
                .payload()
                .and_then(ts_of)
                .with_context(|| format!("output record without ts at offset {}", msg.offset()))?;
            received += 1;
            if ts >= measured_from {
                latencies.push(arrived - ts);
            }
        }
        if generator.is_finished() {
            let deadline = *drain_deadline.get_or_insert_with(|| {
                Instant::now() + Duration::from_secs_f64(args.drain_seconds)
            });
            if received >= sent.load(Ordering::Acquire) || Instant::now() > deadline {
                break;
            }
        }
    }
    let max_lag = generator.join().expect("generator thread")?;
    latencies.sort_by(f64::total_cmp);
    let result = serde_json::json!({
        "offered": args.rate,
        "sent": sent.load(Ordering::Acquire),
        "received": received,
        "measured": latencies.len(),
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "p999_ms": percentile(&latencies, 0.999),
        "max_ms": latencies.last().copied().unwrap_or(f64::NAN),
        "generator_max_lag_ms": max_lag,
    });
    println!("{result}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_size_and_carry_their_stamp() {
        for size in [10, 100, 1000] {
            let v = value(42, 1_700_000_000_123, size);
            assert!(v.len() == size || size < 80, "{size}: {}", v.len());
            let json: serde_json::Value = serde_json::from_slice(&v).unwrap();
            assert_eq!(json["ts"], 1_700_000_000_123u64);
            assert_eq!(ts_of(&v), Some(1_700_000_000_123.0));
        }
    }

    #[test]
    fn a_stamp_found_near_byte_64_is_read_whole() {
        let v = format!(r#"{{"pad":"{}","ts":1700000000123}}"#, "x".repeat(48));
        assert!(v.find(r#""ts":"#).unwrap() + 5 < 64 && v.len() > 64);
        assert_eq!(ts_of(v.as_bytes()), Some(1_700_000_000_123.0));
    }
}
