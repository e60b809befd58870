//! `exactly verify`: audits exactly-once from the outside. It reads an input
//! topic and the output topics with read_committed consumers and uses the
//! lineage headers to report, per input partition, inputs with and without
//! outputs, duplicated outputs and order violations.
//!
//! - [`audit`]: the bookkeeping and the report, free of Kafka.
//! - [`reader`]: ranges, the snapshot of outputs, reading records.
//! - [`render`]: the report for people.

pub mod audit;
pub mod reader;
pub mod render;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::Message;

pub use audit::{Allow, Audit, PartitionReport, Range, Report};
use reader::{add_spans, audit_output, Cluster};

/// How far into each input partition to audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Until {
    /// Up to the group's committed offsets: what the daemon has finished.
    Committed,
    /// Up to the end (last stable offset) of each input partition.
    End,
}

/// What to audit and how.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Brokers.
    pub bootstrap_servers: String,
    /// Input topics.
    pub inputs: Vec<String>,
    /// Output topics (dead-letter topics count as outputs).
    pub outputs: Vec<String>,
    /// The daemon's consumer group, for `Until::Committed`.
    pub group: Option<String>,
    /// How far to audit.
    pub until: Until,
    /// How long to wait for open transactions below the output snapshot.
    pub wait: Duration,
    /// Extra librdkafka properties (security settings).
    pub properties: BTreeMap<String, String>,
    /// Draw a progress bar (only shown on a terminal).
    pub progress: bool,
    /// Notes from whoever chose the topics (a configuration whose route
    /// step writes to topics it cannot name, for example).
    pub hints: Vec<String>,
}

/// The audit's outcome, with notes for people.
pub struct Outcome {
    /// The numbers.
    pub report: Report,
    /// Things that limit what the numbers say.
    pub notes: Vec<String>,
}

/// Runs the audit. Errors are usage or connection problems (exit 2).
pub fn verify(opts: &VerifyOptions) -> anyhow::Result<Outcome> {
    if opts.inputs.is_empty() || opts.outputs.is_empty() {
        bail!("name at least one input and one output topic");
    }
    let cluster = Cluster::connect(opts)?;
    let mut audit = Audit::default();
    let mut notes = opts.hints.clone();
    // Committed offsets first, then the output snapshot: every output of an
    // input below those offsets was written before they were committed.
    let mut inputs = Vec::new();
    for t in &opts.inputs {
        let spans = cluster.input_spans(t, opts.until)?;
        add_spans(&mut audit, t, &spans);
        inputs.push((t, spans));
    }
    let mut outputs = Vec::new();
    for t in &opts.outputs {
        let (spans, n) = cluster.output_spans(t, opts.wait)?;
        notes.extend(n);
        outputs.push((t, spans));
    }
    let total: i64 = inputs
        .iter()
        .chain(&outputs)
        .flat_map(|(_, s)| s.iter().map(|s| s.to - s.from))
        .sum();
    let bar = if opts.progress {
        ProgressBar::new(total.max(0) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} records ({per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    for (t, spans) in &inputs {
        bar.set_message(format!("input {t}"));
        cluster.read(t, spans, |m| {
            audit.add_input(t, m.partition(), m.offset());
            bar.inc(1);
        })?;
    }
    for (t, spans) in &outputs {
        bar.set_message(format!("output {t}"));
        cluster.read(t, spans, |m| {
            audit_output(&mut audit, m);
            bar.inc(1);
        })?;
    }
    bar.finish_and_clear();
    let report = audit.report();
    if report.outputs_read > 0 && report.outputs_without_lineage == report.outputs_read {
        bail!(
            "none of the {} output records carries lineage headers ({}, ...): were they written with [output] lineage = false, or by another tool? exactly verify needs them",
            report.outputs_read,
            crate::lineage::TOPIC
        );
    }
    if report.outputs_without_lineage > 0 {
        notes.push(format!(
            "{} output record(s) carry no lineage headers ({}, ...) and could not be audited",
            report.outputs_without_lineage,
            crate::lineage::TOPIC
        ));
    }
    if report.outputs_outside_range > 0 {
        notes.push(format!(
            "{} output record(s) name inputs outside the audited ranges (later inputs, or topics not audited)",
            report.outputs_outside_range
        ));
    }
    Ok(Outcome { report, notes })
}
