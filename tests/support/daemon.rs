//! The daemon as a child process: its configuration, start, waits, faults
//! and log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// Configuration of a test daemon.
#[derive(Clone)]
pub struct DaemonConfig {
    pub group: String,
    pub input: String,
    pub output: String,
    pub transactional_id: String,
    pub guarantee: &'static str,
    pub commit_interval_ms: u64,
    /// `processing.min_commit_interval_ms`; the daemon's default when unset.
    pub min_commit_interval_ms: Option<u64>,
    pub max_batch_records: usize,
    /// TOML appended to the configuration (`[[transform]]`, `[dead_letter]`, ...).
    pub extra_toml: String,
    pub extra_env: Vec<(String, String)>,
    /// The daemon's brokers, when not the harness's own address (a secured
    /// listener of the same broker).
    pub bootstrap: Option<String>,
}

impl DaemonConfig {
    pub fn new(group: &str, input: &str, output: &str, transactional_id: &str) -> Self {
        DaemonConfig {
            group: group.into(),
            input: input.into(),
            output: output.into(),
            transactional_id: transactional_id.into(),
            guarantee: "exactly_once",
            commit_interval_ms: 100,
            min_commit_interval_ms: None,
            max_batch_records: 2_000,
            extra_toml: String::new(),
            extra_env: Vec::new(),
            bootstrap: None,
        }
    }

    /// Transactions that close only at `ms` (or at the size limits), never
    /// early because nothing more is ready: a test that needs a transaction
    /// to stay open, for a kill or a stop to find it, asks for this.
    pub fn fixed_cadence(&mut self, ms: u64) {
        self.commit_interval_ms = ms;
        self.min_commit_interval_ms = Some(ms);
    }

    fn toml(&self, http_port: u16) -> String {
        let min_interval = match self.min_commit_interval_ms {
            Some(ms) => format!("min_commit_interval_ms = {ms}"),
            None => String::new(),
        };
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
transactional_id = "{txid}"

[kafka.consumer]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"

[input]
topics = ["{input}"]

[output]
topic = "{output}"

[processing]
guarantee = "{guarantee}"
commit_interval_ms = {interval}
{min_interval}
max_batch_records = {max_batch}

[http]
listen = "127.0.0.1:{http_port}"

{extra}
"#,
            bootstrap = self.bootstrap.as_deref().unwrap_or(&broker().bootstrap),
            group = self.group,
            txid = self.transactional_id,
            input = self.input,
            output = self.output,
            guarantee = self.guarantee,
            interval = self.commit_interval_ms,
            max_batch = self.max_batch_records,
            extra = self.extra_toml,
        )
    }
}

/// A daemon running as a child process.
pub struct Daemon {
    child: Child,
    pub http_port: u16,
    pub log: PathBuf,
    /// The transactional id it runs under, to name a kept log.
    name: String,
    _dir: tempfile::TempDir,
}

/// Where daemons' logs are copied when the daemons end (see
/// [`keep_daemon_logs`]).
static KEPT_LOGS: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
static KEPT_SEQ: AtomicU32 = AtomicU32::new(0);

/// From now on, every daemon's whole log is copied into `dir` when the
/// daemon is dropped (killed, replaced or at the end of a test), named by
/// the order of the drops and the daemon's transactional id: a failed audit
/// can then be read against what every replica did, not only the last one.
pub fn keep_daemon_logs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    *KEPT_LOGS.lock().unwrap() = Some(dir.to_owned());
}

impl Daemon {
    pub fn start(cfg: &DaemonConfig) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let path = dir.path().join("exactly.toml");
        std::fs::write(&path, cfg.toml(http_port)).unwrap();
        let log = dir.path().join("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_exactly"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info,exactly=debug")
            .envs(cfg.extra_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start exactly");
        Daemon {
            child,
            http_port,
            log,
            name: cfg.transactional_id.clone(),
            _dir: dir,
        }
    }

    /// Starts a daemon on `cfg` and waits until it is ready and its group has
    /// committed the end of the (already written) input.
    pub fn run_to_end(cfg: &DaemonConfig) -> Daemon {
        let mut d = Daemon::start(cfg);
        d.wait_ready();
        wait_caught_up(&cfg.group, &cfg.input, &mut [&mut d]);
        d
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        send_signal(self.child.id(), name);
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Panics with the log if the daemon has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("daemon exited ({status}):\n{}", self.log_text());
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET `path` on the daemon's HTTP port: (status, body), or None if it
    /// does not answer yet.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_owned();
        Some((status, body))
    }

    /// Value of a metric sample (e.g. `exactly_records_produced_total` or
    /// `exactly_transactions_total{outcome="committed"}`), 0 if absent.
    pub fn metric(&self, sample: &str) -> f64 {
        self.http_get("/metrics")
            .and_then(|(_, body)| {
                body.lines()
                    .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0.0)
    }

    pub fn wait_ready(&mut self) {
        let log = self.log.clone();
        poll_for(
            Duration::from_millis(50),
            || {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!("daemon exited ({status}) before ready:\n{}", read_log(&log));
                }
                matches!(self.http_get("/readyz"), Some((200, _))).then_some(())
            },
            || format!("daemon never ready:\n{}", read_log(&log)),
        )
    }

    /// Waits until the daemon holds at least one partition (readiness does
    /// not say so: an idle member is ready too).
    pub fn wait_assigned(&mut self) {
        self.wait_metric("exactly_assigned_partitions", 1.0, "never held a partition");
    }

    /// Waits until the daemon reports at least `n` committed output records.
    pub fn wait_produced(&mut self, n: f64) {
        self.wait_metric(
            "exactly_records_produced_total",
            n,
            &format!("stuck below {n} outputs"),
        );
    }

    /// Waits until `sample` reaches `at_least`; panics with the log if the
    /// daemon exits first or the wait runs out (`what` says how).
    fn wait_metric(&mut self, sample: &str, at_least: f64, what: &str) {
        let log = self.log.clone();
        poll_for(
            Duration::from_millis(20),
            || {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!("daemon exited ({status}):\n{}", read_log(&log));
                }
                (self.metric(sample) >= at_least).then_some(())
            },
            || format!("daemon {what}:\n{}", read_log(&log)),
        )
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit: (status, time to exit).
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let start = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        let log = self.log.clone();
        let status = poll_for(
            Duration::from_millis(20),
            || self.child.try_wait().unwrap(),
            || format!("daemon ignored SIGTERM:\n{}", read_log(&log)),
        );
        (status, start.elapsed())
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let log = self.log.clone();
        poll_for(
            Duration::from_millis(20),
            || self.child.try_wait().unwrap(),
            || format!("daemon did not exit:\n{}", read_log(&log)),
        )
    }

    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("--- last lines of daemon pid {} log ---", self.child.id());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = KEPT_LOGS.lock().ok().and_then(|d| d.clone()) {
            let n = KEPT_SEQ.fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::copy(&self.log, dir.join(format!("{n:03}-{}.log", self.name)));
        }
    }
}

/// The daemon's log so far (empty if there is none yet).
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
