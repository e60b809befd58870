//! `exactly run`: logging, the start-up check, the HTTP server, signal
//! handling and the workers, wired together.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Settings;
use crate::engine::retired::fence_retired;
use crate::engine::run_workers;
use crate::kafka::check_cluster;
use crate::shutdown::Shutdown;
use crate::telemetry::{serve, Health, Metrics};
use crate::transform::Registry;

/// Runs the daemon until a signal or a fatal error. `Ok` means a graceful stop.
pub async fn run(settings: Settings, registry: Registry, shutdown: Shutdown) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    crate::engine::start_metrics_at_zero(&metrics);
    let health = Health::new(settings.processing.workers);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        guarantee = %settings.processing.guarantee,
        group = %settings.kafka.group_id,
        transactional_id = %settings.base_transactional_id(),
        workers = settings.processing.workers,
        "starting exactly"
    );
    let listen: SocketAddr = settings.http.listen.parse()?;
    // The server outlives a stop request: /metrics is served until the
    // workers are done, so that a scrape during the stop (or right after a
    // fatal error) still sees the last counts. It stops when `done` is
    // sent or dropped, on every way out of this function.
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let http = serve(listen, metrics.clone(), health.clone(), async move {
        let _ = finished.await;
    })
    .await?;
    // While the server outlives the stop request, readiness must not:
    // a stopping replica takes no new work.
    let (stop, stopping) = (shutdown.clone(), health.clone());
    tokio::spawn(async move {
        stop.requested().await;
        stopping.set_stopping();
    });

    let check = settings.clone();
    let timeout = Duration::from_millis(settings.kafka.startup_timeout_ms);
    tokio::task::spawn_blocking(move || {
        check_cluster(&check, timeout)?;
        if let Err(e) = fence_retired(&check, timeout) {
            if e.downcast_ref::<crate::kafka::NotAuthorized>().is_some() {
                return Err(e);
            }
            tracing::warn!(
                error = %format!("{e:#}"),
                "could not look for transactional ids of workers this replica no longer runs; \
                 a transaction one of them left open ends with its timeout"
            );
        }
        anyhow::Ok(())
    })
    .await??;

    let result = run_workers(&settings, &registry, &metrics, &health, &shutdown).await;
    shutdown.request();
    let _ = done.send(());
    let _ = http.await;
    result
}

/// Requests a stop on the first SIGTERM or SIGINT; a second one exits at
/// once (the open transaction is then aborted by the next replica's
/// `init_transactions`, or by the transaction timeout).
///
/// The SIGTERM handler is registered before this returns, not in the task
/// it spawns: a stop sent right after start-up (a scale-in racing the
/// start) must be a graceful stop, not the default action of the signal.
/// Call it inside the runtime.
pub fn install_signal_handlers(shutdown: Shutdown) {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    tokio::spawn(async move {
        let mut term = match term {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGTERM handler");
                return;
            }
        };
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            seen += 1;
            if seen == 1 {
                tracing::info!(
                    "stop requested: committing the open transaction and closing the clients"
                );
                shutdown.request();
            } else {
                tracing::warn!("second stop signal: exiting now");
                exit_now(130);
            }
        }
    });
}

/// Ends the process with `code` without running the exit handlers, for
/// when librdkafka clients may still be running: OpenSSL's exit-time
/// cleanup under their threads crashes the process (see
/// [`crate::engine::exit_handlers_are_safe`]).
pub fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process at once; no Rust state is observed
    // after it.
    unsafe { libc::_exit(code) }
}
