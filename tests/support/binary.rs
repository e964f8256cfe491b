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
    /// Its admin listener, when the config has one.
    pub admin: Option<SocketAddr>,
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
    let path = write_config(dir, config);
    let mut command = Command::new(switchyard_bin());
    command.args(["run", "--config"]).arg(&path);
    start(command)
}

/// As [`spawn`], with the process allowed at most `nofile` open file descriptors.
pub fn spawn_limited(dir: &Path, config: &str, nofile: u32) -> Process {
    let path = write_config(dir, config);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" run --config \"$1\""))
        .arg(switchyard_bin())
        .arg(&path);
    start(command)
}

/// Writes `config` (JSON log format is appended) to `dir/switchyard.toml`; returns its path.
pub fn write_config(dir: &Path, config: &str) -> std::path::PathBuf {
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, format!("{config}\n[log]\nformat = \"json\"\nlevel = \"info\"\n")).unwrap();
    path
}

/// Starts `command` (a `switchyard run`, perhaps behind a wrapper) with its log captured;
/// returns once it logs that it listens.
pub fn start(mut command: Command) -> Process {
    let mut child = command.env_remove("RUST_LOG").stderr(Stdio::piped()).spawn().expect("switchyard binary starts");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The message exactly: the broker's "broker listening" is another line.
    let ready = wait_for_log(&rx, "the \"listening\" line", Duration::from_secs(20), |value| {
        value["fields"]["message"] == "listening"
    });
    let fields = &ready["fields"];
    let admin = addrs(&fields["admin"]).first().copied();
    Process { child, plain: addrs(&fields["plain"]), tls: addrs(&fields["tls"]), admin, lines: rx }
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
    // The field is the Debug form of a Vec<SocketAddr> ("[127.0.0.1:1234, 127.0.0.1:5678]")
    // or of an Option<SocketAddr> ("Some(127.0.0.1:9090)", "None").
    let text = field.as_str().unwrap_or("[]");
    let list = text.strip_prefix("Some(").and_then(|t| t.strip_suffix(')')).unwrap_or(text);
    list.trim_matches(|c| c == '[' || c == ']').split(',').filter_map(|a| a.trim().parse().ok()).collect()
}

/// CPU time (user and system) a process has used, from /proc (at 100 ticks a second).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
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
