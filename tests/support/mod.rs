//! The real-broker test harness: one Apache Kafka broker per test binary
//! (started by `scripts/kafka.sh`, or the one named by
//! `EXACTLY_TEST_BOOTSTRAP`), unique topics per test, the daemon as a child
//! process, and readers that see what a read_committed consumer sees.
//!
//! Every wait here waits for an observable condition (a metric, a committed
//! offset, end of partition), bounded by a generous deadline that only turns
//! a hang into a failure.

//!
//! - `broker`: the broker, unique names, topics;
//! - `input`: input records and their producers;
//! - `output`: what a read_committed consumer sees, committed offsets;
//! - `audit`: the exactly-once audit and `exactly verify`;
//! - `daemon`: the daemon as a child process;
//! - `fleet`: replicas restarted as an orchestrator would, and a reader
//!   that times every output's arrival;
//! - `cluster`: the three-broker cluster (`scripts/cluster.sh`);
//! - `process`: signals, free ports, the command line;
//! - `secure` (and `prometheus.rs`, used by one test): the secured broker.

#![allow(dead_code)]

use std::time::{Duration, Instant};

mod audit;
mod broker;
mod daemon;
mod fleet;
mod input;
mod output;
mod process;

// A test binary uses some of these only.
#[allow(unused_imports)]
pub use audit::*;
#[allow(unused_imports)]
pub use broker::*;
#[allow(unused_imports)]
pub use daemon::*;
#[allow(unused_imports)]
pub use fleet::*;
#[allow(unused_imports)]
pub use input::*;
#[allow(unused_imports)]
pub use output::*;
#[allow(unused_imports)]
pub use process::*;

/// Deadline for waits that should take seconds; exceeded only by a bug.
pub const WAIT: Duration = Duration::from_secs(120);

pub mod cluster;
pub mod secure;

/// Polls `cond` until it holds; panics after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    poll_for(
        Duration::from_millis(50),
        || cond().then_some(()),
        || format!("timed out waiting for {what}"),
    )
}

/// Calls `probe` every `tick` until it gives a value, and returns it;
/// panics after [`WAIT`] with `failure()` (called only then, so it may read
/// a log). Every wait of the harness goes through here.
pub fn poll_for<T>(
    tick: Duration,
    mut probe: impl FnMut() -> Option<T>,
    failure: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < WAIT, "{}", failure());
        std::thread::sleep(tick);
    }
}
