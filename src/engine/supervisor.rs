//! The worker threads of a process: starts `processing.workers` workers,
//! each on an OS thread inside a `worker` tracing span, collects their
//! outcomes, and waits for their clients to close before the process exits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use tokio::sync::mpsc;

use super::fatal::{fatal, FatalCause};
use super::worker::{run_worker, Finished, WorkerSpec};
use crate::config::Settings;
use crate::shutdown::Shutdown;
use crate::telemetry::{Health, Metrics};
use crate::transform::Registry;

/// Set while a worker thread may still be destroying its librdkafka clients.
static CLIENTS_OPEN: AtomicBool = AtomicBool::new(false);

/// Whether the process may run its exit handlers: false while a worker's
/// librdkafka clients may still be closing. OpenSSL's exit-time cleanup
/// under a librdkafka thread that still uses TLS crashes the process
/// (SIGSEGV instead of the exit code, seen once in 60 fatal exits over
/// SASL_SSL); the caller then leaves with `_exit`.
pub fn exit_handlers_are_safe() -> bool {
    !CLIENTS_OPEN.load(Ordering::Acquire)
}

/// Starts `processing.workers` workers and waits for all of them. Returns
/// the first fatal error; a fatal error in one worker stops the others.
///
/// Before it returns, it waits (within the stop budget) for every worker
/// to have destroyed its clients; see [`exit_handlers_are_safe`].
pub async fn run_workers(
    settings: &Settings,
    registry: &Registry,
    metrics: &Metrics,
    health: &Health,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Nothing is sent on it: it closes when every worker thread has dropped
    // its clients (or ended without any).
    let (open_tx, mut open_rx) = mpsc::unbounded_channel::<()>();
    CLIENTS_OPEN.store(true, Ordering::Release);
    // Workers that stopped cleanly (their final commit done) and are now
    // closing their clients: those need not report before the process exits.
    let settled = Arc::new(AtomicUsize::new(0));
    for index in 0..settings.processing.workers {
        let spec = WorkerSpec {
            index,
            settings: settings.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            shutdown: shutdown.clone(),
        };
        let tx = tx.clone();
        let settled = settled.clone();
        let open = open_tx.clone();
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                let _open = open;
                let _span = tracing::info_span!("worker", worker = index).entered();
                let finished =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_worker(spec)));
                match finished {
                    // A graceful stop closes the consumer (a dynamic member leaves
                    // the group then; a static one keeps its place) before it reports.
                    Ok(Finished {
                        result: Ok(()),
                        clients,
                    }) => {
                        settled.fetch_add(1, Ordering::AcqRel);
                        drop(clients);
                        let _ = tx.send(Ok(()));
                    }
                    // A failure is reported first: cleanup of clients in a
                    // fatal state may block, and must not keep the process
                    // from exiting with the cause.
                    Ok(Finished {
                        result: Err(e),
                        clients,
                    }) => {
                        let _ = tx.send(Err(e));
                        drop(clients);
                    }
                    Err(_) => {
                        let _ = tx.send(Err(fatal(
                            FatalCause::Panic,
                            anyhow!("worker {index} panicked"),
                        )));
                    }
                }
            })?;
    }
    drop(tx);
    drop(open_tx);
    let workers = settings.processing.workers;
    // After a stop request, workers get the stop budget (plus a second) to
    // report; a worker whose client cleanup blocks inside librdkafka must
    // not keep the process from exiting. Its transaction was committed or
    // aborted before the cleanup began.
    let budget =
        Duration::from_millis(settings.processing.shutdown_timeout_ms) + Duration::from_secs(1);
    let mut first_error = None;
    let mut received = 0;
    let mut received_ok = 0;
    // One result per worker. Counting, rather than waiting for the channel
    // to close, matters: a failed worker reports before dropping its
    // clients, and that drop may block for good.
    while received < workers {
        let next = if shutdown.is_requested() {
            match tokio::time::timeout(shutdown.budget_left(budget), rx.recv()).await {
                Ok(r) => r,
                Err(_) => {
                    let unfinished = workers - received;
                    let closing = settled.load(Ordering::Acquire) - received_ok;
                    tracing::warn!(
                        unfinished,
                        "workers still busy after the stop budget; exiting anyway"
                    );
                    if unfinished > closing && first_error.is_none() {
                        // Their final commit did not finish: what they
                        // consumed since their last commit is not committed.
                        metrics.fatal_error(FatalCause::FinalCommit.label());
                        first_error = Some(anyhow!(
                            "{} worker(s) did not finish their final commit within processing.shutdown_timeout_ms",
                            unfinished - closing
                        ));
                    }
                    break;
                }
            }
        } else {
            tokio::select! {
                r = rx.recv() => r,
                _ = shutdown.requested() => continue,
            }
        };
        let Some(result) = next else {
            break;
        };
        received += 1;
        received_ok += usize::from(result.is_ok());
        if let Err(e) = result {
            let cause = FatalCause::of(&e).label();
            tracing::error!(error = %format!("{e:#}"), cause, "worker failed; stopping the others");
            health.set_failed();
            shutdown.request();
            if first_error.is_none() {
                // The failure the process exits with: counted once, while
                // /metrics is still served (app.rs stops the server last).
                metrics.fatal_error(cause);
                first_error = Some(e);
            }
        }
    }
    // A failed worker reported before closing its clients: give the close
    // what is left of the stop budget, so that the process exits after it.
    shutdown.request();
    let left = shutdown.budget_left(budget);
    if tokio::time::timeout(left, open_rx.recv()).await.is_ok() {
        CLIENTS_OPEN.store(false, Ordering::Release);
    } else {
        tracing::warn!("Kafka clients still closing after the stop budget; exiting without them");
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
