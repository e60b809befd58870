//! Every codec Kafka offers, on both sides of the daemon: inputs written
//! compressed with it, outputs written with it, and each input exactly once
//! and in order. A build without a codec fails here: librdkafka refuses to
//! produce with it, and cannot decompress an input batch that uses it.

mod support;

use support::*;

fn codec_round_trip(codec: &str) {
    let p = Pipeline::create(&format!("codec-{codec}"), 3, 3);
    let input = input_records(5_000, 50);
    produce_with(&p.input, &input, &[("compression.type", codec)]);
    let mut cfg = DaemonConfig::new(&p.group, &p.input, &p.output, &unique("codec-txn"));
    cfg.extra_toml = format!("[kafka.producer]\n\"compression.type\" = \"{codec}\"\n");
    let mut daemon = Daemon::run_to_end(&cfg);
    daemon.assert_alive();
    assert_exactly_once_in_order(&input, &p.output, &format!("{codec} in and out"));
}

#[test]
fn zstd_inputs_and_outputs_are_exactly_once() {
    codec_round_trip("zstd");
}

#[test]
fn lz4_inputs_and_outputs_are_exactly_once() {
    codec_round_trip("lz4");
}

#[test]
fn snappy_inputs_and_outputs_are_exactly_once() {
    codec_round_trip("snappy");
}

#[test]
fn gzip_inputs_and_outputs_are_exactly_once() {
    codec_round_trip("gzip");
}
