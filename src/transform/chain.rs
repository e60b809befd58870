//! A sequence of steps applied to each record in order.

use super::{Passthrough, Record, Transform, TransformError};

/// A failure of one step on one record, naming the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transform step {index} ({name}) failed: {error}")]
pub struct ChainError {
    /// Position of the failing step, counting from 1 as in the configuration.
    pub index: usize,
    /// The failing step's type name.
    pub name: String,
    /// How metrics, logs and dead-letter headers name the step: its
    /// configured `name`, else `N (type)`.
    pub step: String,
    /// What the step reported.
    pub error: TransformError,
}

/// Steps applied in order; each step sees every output of the one before.
pub struct Chain {
    steps: Vec<Box<dyn Transform>>,
    /// What each step is called in metrics, logs and dead-letter headers.
    labels: Vec<String>,
    scratch: Vec<Record>,
}

impl Default for Chain {
    /// The default chain: a single passthrough step.
    fn default() -> Self {
        Chain::new(vec![Box::new(Passthrough)])
    }
}

impl Chain {
    /// A chain of `steps`, applied first to last, each called `N (type)`.
    pub fn new(steps: Vec<Box<dyn Transform>>) -> Self {
        Chain::named(steps.into_iter().map(|s| (None, s)).collect())
    }

    /// A chain of `steps`, each called by its name when it has one, else
    /// `N (type)` (N counting from 1).
    pub fn named(steps: Vec<(Option<String>, Box<dyn Transform>)>) -> Self {
        let labels = steps
            .iter()
            .enumerate()
            .map(|(i, (name, step))| match name {
                Some(n) => n.clone(),
                None => format!("{} ({})", i + 1, step.name()),
            })
            .collect();
        Chain {
            steps: steps.into_iter().map(|(_, s)| s).collect(),
            labels,
            scratch: Vec::new(),
        }
    }

    /// Names of the steps, in order.
    pub fn step_names(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.name().to_owned()).collect()
    }

    /// Runs `record` through every step and appends the final outputs to
    /// `out`. On error nothing is appended: a record's outputs are all or
    /// nothing.
    pub fn apply(&mut self, record: Record, out: &mut Vec<Record>) -> Result<(), ChainError> {
        let start = out.len();
        let mut current = std::mem::take(&mut self.scratch);
        current.clear();
        current.push(record);
        let last = self.steps.len().saturating_sub(1);
        for (i, step) in self.steps.iter_mut().enumerate() {
            let target: &mut Vec<Record> = if i == last {
                &mut *out
            } else {
                &mut self.scratch
            };
            for r in current.drain(..) {
                if let Err(error) = step.apply(r, target) {
                    out.truncate(start);
                    self.scratch.clear();
                    return Err(ChainError {
                        index: i + 1,
                        name: step.name().to_owned(),
                        step: self.labels[i].clone(),
                        error,
                    });
                }
            }
            if i != last {
                std::mem::swap(&mut current, &mut self.scratch);
            }
        }
        if self.steps.is_empty() {
            out.append(&mut current);
        }
        self.scratch = current;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::Header;

    struct Duplicate;
    impl Transform for Duplicate {
        fn name(&self) -> &str {
            "duplicate"
        }
        fn apply(&mut self, r: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
            let mut copy = r.clone();
            copy.topic = Some("other".into());
            out.push(r);
            out.push(copy);
            Ok(())
        }
    }

    struct DropOdd;
    impl Transform for DropOdd {
        fn name(&self) -> &str {
            "drop-odd"
        }
        fn apply(&mut self, r: Record, out: &mut Vec<Record>) -> Result<(), TransformError> {
            match r.value.as_deref() {
                Some(b"odd") => Ok(()),
                Some(b"bad") => Err(TransformError::new("eval", "bad value")),
                _ => {
                    out.push(r);
                    Ok(())
                }
            }
        }
    }

    fn rec(v: &str) -> Record {
        Record {
            value: Some(v.as_bytes().to_vec()),
            key: Some(b"k".to_vec()),
            ..Record::default()
        }
    }

    #[test]
    fn default_chain_passes_records_through_unchanged() {
        let mut chain = Chain::default();
        let mut out = Vec::new();
        let input = Record {
            headers: vec![Header {
                key: "h".into(),
                value: None,
            }],
            timestamp: Some(42),
            ..rec("v")
        };
        chain.apply(input.clone(), &mut out).unwrap();
        assert_eq!(out, vec![input]);
    }

    #[test]
    fn later_steps_see_every_output_of_earlier_steps() {
        let mut chain = Chain::new(vec![Box::new(Duplicate), Box::new(Duplicate)]);
        let mut out = Vec::new();
        chain.apply(rec("v"), &mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out.iter().filter(|r| r.topic.is_none()).count(), 1);
    }

    #[test]
    fn a_step_can_drop_a_record() {
        let mut chain = Chain::new(vec![Box::new(DropOdd), Box::new(Duplicate)]);
        let mut out = Vec::new();
        chain.apply(rec("odd"), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn a_failure_names_the_step_and_appends_nothing() {
        let mut chain = Chain::new(vec![Box::new(Duplicate), Box::new(DropOdd)]);
        let mut out = vec![rec("earlier")];
        let err = chain.apply(rec("bad"), &mut out).unwrap_err();
        assert_eq!(err.index, 2);
        assert_eq!(err.name, "drop-odd");
        assert_eq!(err.step, "2 (drop-odd)");
        assert_eq!(out, vec![rec("earlier")]);
        // The chain is usable after a failure.
        chain.apply(rec("ok"), &mut out).unwrap();
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_named_step_is_called_by_its_name() {
        let mut chain = Chain::named(vec![
            (None, Box::new(Duplicate)),
            (Some("no-odd-amounts".into()), Box::new(DropOdd)),
        ]);
        let err = chain.apply(rec("bad"), &mut Vec::new()).unwrap_err();
        assert_eq!(err.step, "no-odd-amounts");
        assert_eq!(err.index, 2);
    }
}
