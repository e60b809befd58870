//! **exactly** reads Kafka topics, transforms every record and writes the
//! results back to Kafka exactly once: each input record's outputs and the
//! input's offset commit in one producer transaction, so read_committed
//! readers see every output once — through crashes, restarts, rebalances and
//! scaling.
//!
//! # Layout
//!
//! - [`config`]: typed configuration — TOML plus `EXACTLY__SECTION__KEY`
//!   environment overrides — and its validation.
//! - [`secrets`]: `${file:…}` / `${env:…}` property values, and the redaction
//!   of every secret from logs and errors.
//! - [`kafka`]: librdkafka client properties (the contract's, the defaults,
//!   the user's) and the start-up check of the cluster and topics.
//! - [`engine`]: the exactly-once loop — the supervisor of the worker
//!   threads, the transaction sequence (`engine::worker`, read
//!   `docs/engine.md` first), batches, rebalance handling, transactions,
//!   offsets and rewinds, the bad-record policy, error classes.
//! - [`transform`]: the [`transform::Transform`] trait, the chain of steps and
//!   the built-in steps.
//! - [`lineage`]: the headers that tie each output to the input that made it.
//! - [`telemetry`]: Prometheus metrics (build and process identity, the age
//!   of uncommitted input), health and readiness, the HTTP server, logging.
//! - [`verify`]: `exactly verify` — the exactly-once audit from lineage headers.
//! - [`shutdown`]: the stop latch shared by signals, workers and the server.
//! - [`app`]: `exactly run` — everything above wired together.
//! - [`cli`]: the command line (`run`, `check`, `verify`), reusable by a
//!   binary that registers custom steps (see `examples/custom_step.rs`).
//!
//! The binary (`src/main.rs`) only calls [`cli::main_with`].

pub mod app;
pub mod cli;
pub mod config;
pub mod engine;
pub mod kafka;
pub mod lineage;
pub mod secrets;
pub mod shutdown;
pub mod telemetry;
pub mod transform;
pub mod verify;
