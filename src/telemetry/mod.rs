//! What the daemon tells the outside world: Prometheus metrics, health and
//! readiness, the HTTP server that serves them, and logging set-up.

mod health;
mod http;
mod identity;
mod logging;
mod metrics;

pub use health::{Health, WorkerHealth};
pub use http::serve;
pub use logging::init_logging;
pub use metrics::Metrics;
