//! The failed and dropped records of one transaction, counted when it
//! commits.

/// What happened to failed or dropped records in the open transaction;
/// published to the metrics only when it commits, so replays after an
/// abort are not counted twice.
#[derive(Debug, Default)]
pub struct Tally {
    /// Records the chain dropped.
    pub filtered: u64,
    /// Failed records skipped by policy.
    pub skipped: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Failures by (step, kind).
    pub errors: Vec<(String, &'static str, u64)>,
}

impl Tally {
    /// Counts a failure in `step` of class `kind`.
    pub fn error(&mut self, step: &str, kind: &'static str) {
        match self
            .errors
            .iter_mut()
            .find(|(s, k, _)| s == step && *k == kind)
        {
            Some((_, _, n)) => *n += 1,
            None => self.errors.push((step.to_owned(), kind, 1)),
        }
    }
}
