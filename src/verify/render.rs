//! The report as text for people, or as JSON for machines.

use std::fmt::Write;

use super::{Allow, Outcome, Report};

/// A table per input partition, totals, notes and the verdict.
pub fn text(outcome: &Outcome, allow: Allow) -> String {
    let r = &outcome.report;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<32} {:>5} {:>21} {:>10} {:>10} {:>10} {:>8} {:>10} {:>8}",
        "input partition",
        "",
        "audited offsets",
        "inputs",
        "no output",
        "incomplete",
        "dups",
        "reordered",
        "outputs"
    );
    for p in &r.partitions {
        let _ = writeln!(
            s,
            "{:<32} {:>5} {:>21} {:>10} {:>10} {:>10} {:>8} {:>10} {:>8}",
            p.topic,
            p.partition,
            format!("{}..{}", p.from, p.to),
            p.inputs,
            p.without_outputs,
            p.incomplete,
            p.duplicates,
            p.order_violations,
            p.outputs
        );
        if !p.first_missing.is_empty() {
            let _ = writeln!(s, "    first inputs without output: {:?}", p.first_missing);
        }
        if !p.first_incomplete.is_empty() {
            let _ = writeln!(
                s,
                "    first inputs with an output lost or extra: {:?}",
                p.first_incomplete
            );
        }
        for d in &p.first_duplicates {
            let _ = writeln!(
                s,
                "    duplicate: input offset {} (output {}) read at {} and again at {}",
                d.offset,
                d.index,
                d.first.as_deref().unwrap_or("?"),
                d.repeat
            );
        }
    }
    let _ = writeln!(
        s,
        "\ntotal: {} inputs, {} outputs read; {} without output, {} incomplete, {} duplicates, {} order violations, {} outputs without lineage",
        r.inputs,
        r.outputs_read,
        r.missing,
        r.incomplete,
        r.duplicates,
        r.order_violations,
        r.outputs_without_lineage
    );
    for n in &outcome.notes {
        let _ = writeln!(s, "note: {n}");
    }
    if r.missing > 0 {
        let _ = writeln!(
            s,
            "note: inputs without output are expected where a filter step drops records{}",
            if allow.missing {
                " (--allow-missing: not counted as violations)"
            } else {
                "; pass --allow-missing if so"
            }
        );
    }
    if r.outputs_without_lineage > 0 {
        let _ = writeln!(
            s,
            "note: outputs without lineage cannot be audited, so a duplicate among them would go unseen{}",
            if allow.unstamped {
                " (--allow-unstamped: not counted as violations)"
            } else {
                "; pass --allow-unstamped if another writer shares the output topic"
            }
        );
    }
    let _ = writeln!(s, "{}", verdict(r, allow));
    s
}

fn verdict(r: &Report, allow: Allow) -> &'static str {
    if r.has_violations(allow) {
        "VIOLATIONS FOUND"
    } else {
        "exactly once: every audited input has its outputs once, in order"
    }
}

/// The report and notes as one JSON document.
pub fn json(outcome: &Outcome, allow: Allow) -> String {
    let v = serde_json::json!({
        "clean": !outcome.report.has_violations(allow),
        "report": outcome.report,
        "notes": outcome.notes,
    });
    serde_json::to_string_pretty(&v).expect("serialisable report")
}
