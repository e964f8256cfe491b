//! Runs the real `switchyard` binary as a child process, for what only a separate process
//! shows: its memory, its signals, its command line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `switchyard` binary Cargo built for these tests.
pub fn switchyard_bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

/// A running `switchyard run`; killed when dropped.
pub struct Process {
    /// The child process.
    pub child: Child,
    /// Its plain listeners, read from its "listening" log line.
    pub plain: Vec<SocketAddr>,
    /// Its TLS listeners.
    pub tls: Vec<SocketAddr>,
    /// Log lines after "listening".
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `config` (JSON log format is appended) to `dir` and starts the binary on it;
/// returns once it logs that it listens.
pub fn spawn(dir: &Path, config: &str) -> Process {
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, format!("{config}\n[log]\nformat = \"json\"\nlevel = \"info\"\n")).unwrap();
    let mut child = Command::new(switchyard_bin())
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("switchyard binary starts");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = wait_for_line(&rx, "listening", Duration::from_secs(20));
    let fields = &ready["fields"];
    Process { child, plain: addrs(&fields["plain"]), tls: addrs(&fields["tls"]), lines: rx }
}

/// The first JSON log line whose message contains `needle`, within `patience`.
pub fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str, patience: Duration) -> serde_json::Value {
    wait_for_log(rx, &format!("a log line with {needle:?}"), patience, |value| {
        value["fields"]["message"].as_str().is_some_and(|m| m.contains(needle))
    })
}

/// The first JSON log line `matches` accepts, within `patience`; `what` names it in the
/// failure.
pub fn wait_for_log(
    rx: &mpsc::Receiver<String>,
    what: &str,
    patience: Duration,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no {what} within {patience:?}"));
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if matches(&value) {
            return value;
        }
    }
}

fn addrs(field: &serde_json::Value) -> Vec<SocketAddr> {
    // The field is the Debug form of a Vec<SocketAddr>: "[127.0.0.1:1234, 127.0.0.1:5678]".
    let text = field.as_str().unwrap_or("[]");
    text.trim_matches(|c| c == '[' || c == ']').split(',').filter_map(|a| a.trim().parse().ok()).collect()
}

/// A process's resident set (`VmRSS`) and peak (`VmHWM`) in KiB, from /proc.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}
