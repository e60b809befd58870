//! What process is being scraped: `exactly_build_info` (the crate and
//! librdkafka versions) and the standard `process_*` series (CPU, memory,
//! file descriptors, start time) of the prometheus crate's process collector.

use prometheus::{IntGaugeVec, Opts, Registry};

/// Registers the build information and, on Linux, the process collector.
pub fn register(registry: &Registry) {
    let build_info = IntGaugeVec::new(
        Opts::new(
            "exactly_build_info",
            "Always 1; the labels name the crate version and the linked librdkafka version",
        ),
        &["version", "librdkafka"],
    )
    .expect("valid metric");
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), &librdkafka])
        .set(1);
    registry
        .register(Box::new(build_info))
        .expect("unique metric");
    // The collector reads /proc: Linux only (the crate offers it nowhere else).
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
}
