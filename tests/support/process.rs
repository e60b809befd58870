//! Child processes: signals, free ports, the `exactly` command line.

use std::process::Command;

use super::*;

/// Sends `signal` (`STOP`, `CONT`, `TERM`, `KILL`) to process `pid`. For
/// `STOP` it returns only once every thread of the process has stopped: the
/// kernel stops a process's threads one after another, after `kill` has
/// returned, and a JVM thread still running for a few milliseconds can
/// answer a request sent "to a frozen broker".
pub fn send_signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
    if signal == "STOP" {
        wait_until(&format!("every thread of process {pid} stopped"), || {
            running_threads(pid) == 0
        });
    }
}

/// How many threads of `pid` are not stopped (state `T`): the state is the
/// field after the parenthesised name in /proc/PID/task/TID/stat.
pub fn running_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        panic!("process {pid} is gone");
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(
                state.and_then(|r| r.chars().next()),
                Some('T' | 't' | 'Z' | 'X')
            )
        })
        .count()
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `exactly` with arguments, returning (exit code, stdout, stderr).
pub fn exactly(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_exactly"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A log line without its colour codes.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}
