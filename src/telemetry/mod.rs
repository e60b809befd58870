//! What the daemon tells the outside world: Prometheus metrics, health and
//! readiness, the HTTP server that serves them, and logging set-up.
//!
//! - `metrics`: the engine's metrics, updated through methods named after
//!   what happened.
//! - `identity`: build information and the `process_*` series.
//! - `tally`: a transaction's failed and dropped records, counted at commit.
//! - `input_age`: the age of the oldest uncommitted input per partition.
//! - `health`: readiness and liveness; `http`: the server; `logging`.

mod health;
mod http;
mod identity;
mod input_age;
mod logging;
mod metrics;
mod tally;

pub use health::{Health, WorkerHealth};
pub use http::serve;
pub use logging::init_logging;
pub use metrics::{Committed, Metrics};
pub use tally::Tally;
