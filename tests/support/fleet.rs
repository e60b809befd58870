//! Daemon replicas as an orchestrator runs them ([`Fleet`]: restart
//! whatever exits, and count it), and a read_committed reader of their
//! output that records when each record arrives and how old it is
//! ([`Monitor`]): stalls, end-to-end latency and throughput over any window.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::*;

pub struct Replica {
    pub id: String,
    pub daemon: Daemon,
}

/// The replicas, and the orchestrator's duty: restart whatever exits.
pub struct Fleet {
    pub cfg: DaemonConfig,
    pub replicas: Vec<Replica>,
    /// One line per replica that exited on its own and was restarted.
    pub restarts_after_exit: Vec<String>,
    pub exit_logs: Vec<String>,
}

impl Fleet {
    pub fn start(cfg: DaemonConfig, ids: &[String]) -> Fleet {
        let mut f = Fleet {
            cfg,
            replicas: Vec::new(),
            restarts_after_exit: Vec::new(),
            exit_logs: Vec::new(),
        };
        for id in ids {
            let d = f.spawn(id);
            f.replicas.push(Replica {
                id: id.clone(),
                daemon: d,
            });
        }
        f
    }

    pub fn spawn(&self, id: &str) -> Daemon {
        let mut cfg = self.cfg.clone();
        cfg.transactional_id = id.to_owned();
        Daemon::start(&cfg)
    }

    /// Restarts replicas that exited on their own (a fenced zombie, a fatal
    /// error after a broker bounce), as an orchestrator would.
    pub fn heal(&mut self) {
        for i in 0..self.replicas.len() {
            if let Some(status) = self.replicas[i].daemon.exited() {
                let log = self.replicas[i].daemon.log_text();
                let cause = log
                    .lines()
                    .rev()
                    .find(|l| l.contains("ERROR"))
                    .unwrap_or("")
                    .to_owned();
                self.restarts_after_exit.push(format!(
                    "{} exited ({status}): {}",
                    self.replicas[i].id,
                    strip_ansi(&cause)
                ));
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                self.exit_logs.push(format!(
                    "--- {} ({status}) ---\n{}",
                    self.replicas[i].id,
                    strip_ansi(&tail.join("\n"))
                ));
                let id = self.replicas[i].id.clone();
                self.replicas[i].daemon = self.spawn(&id);
            }
        }
    }

    /// Waits, restarting what exits, until the group has committed the end
    /// of the input; on a timeout prints what each replica was doing and
    /// fails.
    pub fn wait_all_committed(
        &mut self,
        input: &str,
        records: usize,
        logs: &Path,
        guarantee: &str,
    ) {
        let caught_up = Instant::now();
        loop {
            self.heal();
            let (committed, end) = committed_and_end(&self.cfg.group, input);
            if end as usize == records && committed == end {
                return;
            }
            if caught_up.elapsed() > WAIT {
                self.print_state();
                panic!(
                    "[{guarantee}] the group did not commit the end of the input ({committed}/{end}); every replica's log is in {}; exits: {:#?}",
                    logs.display(),
                    self.restarts_after_exit
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exits so far, and what the live replicas were doing: the last
    /// lines of each log and its counters.
    pub fn print_state(&self) {
        for l in &self.exit_logs {
            eprintln!("{l}");
        }
        for r in &self.replicas {
            let log = r.daemon.log_text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- {} (alive), last 40 log lines ---", r.id);
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
            eprintln!(
                "    assigned {} consumed {} produced {}",
                r.daemon.metric("exactly_assigned_partitions"),
                r.daemon.metric("exactly_records_consumed_total"),
                r.daemon.metric("exactly_records_produced_total")
            );
        }
    }

    pub fn assigned_elsewhere(&self, except: usize) -> f64 {
        self.replicas
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != except)
            .map(|(_, r)| r.daemon.metric("exactly_assigned_partitions"))
            .sum()
    }
}

/// One output record as the monitor saw it: when it arrived, and its age
/// then (arrival minus the record's timestamp, which the daemon carries over
/// from the input: the end-to-end latency).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub at: Instant,
    pub latency_ms: i64,
}

/// What the monitor saw within a window of time.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub records: usize,
    pub secs: f64,
    /// The longest gap between two arrivals that overlaps the window.
    pub longest_gap: Duration,
    pub p50_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
}

impl Window {
    pub fn per_sec(&self) -> f64 {
        self.records as f64 / self.secs
    }
}

/// Watches the output as a read_committed reader does: every arrival, with
/// its end-to-end latency.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    pub fn start(topic: &str, partitions: i32) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker().bootstrap)
            .set("group.id", unique("monitor"))
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        let (s, a) = (stop.clone(), arrivals.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as i64;
                    let latency_ms = m.timestamp().to_millis().map_or(0, |t| now_ms - t);
                    a.lock().unwrap().push(Arrival {
                        at: Instant::now(),
                        latency_ms,
                    });
                }
            }
        });
        Monitor {
            stop,
            arrivals,
            handle: Some(handle),
        }
    }

    /// How many records have arrived so far.
    pub fn seen(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }

    /// What arrived between `from` and `to`.
    pub fn window(&self, from: Instant, to: Instant) -> Window {
        let all = self.arrivals.lock().unwrap();
        window_of(&all, from, to)
    }

    /// Stops reading; returns the longest gap between two arrivals over the
    /// whole run, and how many records arrived.
    pub fn finish(mut self) -> (Duration, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        let all = self.arrivals.lock().unwrap();
        let longest = all
            .windows(2)
            .map(|w| w[1].at - w[0].at)
            .max()
            .unwrap_or(Duration::ZERO);
        (longest, all.len())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn window_of(all: &[Arrival], from: Instant, to: Instant) -> Window {
    let mut latencies: Vec<i64> = all
        .iter()
        .filter(|a| a.at >= from && a.at <= to)
        .map(|a| a.latency_ms)
        .collect();
    latencies.sort_unstable();
    let pick = |q: f64| {
        if latencies.is_empty() {
            0
        } else {
            latencies[((latencies.len() - 1) as f64 * q).round() as usize]
        }
    };
    // A gap counts whole when it overlaps the window (a stall that began
    // just before a fault is the fault's); nothing arrived since the last
    // record counts up to the window's end.
    let mut longest = Duration::ZERO;
    let mut prev: Option<Instant> = None;
    for a in all {
        if let Some(p) = prev {
            if a.at >= from && p <= to {
                longest = longest.max(a.at - p);
            }
        }
        prev = Some(a.at);
    }
    if let Some(p) = prev {
        if p < to {
            longest = longest.max(to.saturating_duration_since(p));
        }
    }
    Window {
        records: latencies.len(),
        secs: (to - from).as_secs_f64(),
        longest_gap: longest,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: latencies.last().copied().unwrap_or(0),
    }
}
