//! Switchyard as a systemd service: socket activation (the sockets are handed over, so a
//! restart refuses no connect) through Debian's `systemd-socket-activate`, which passes
//! sockets exactly as systemd does (`LISTEN_FDS`, `LISTEN_PID`, fd 3 on); and the sd-notify
//! messages a `Type=notify` unit waits for, read from a real notify socket.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::binary::{self, switchyard_bin, Process};
use support::*;

/// What systemd's socket unit is: a listening socket held outside the service, alive
/// across its restarts. Each generation of the service gets it as fd 3.
struct SocketUnit {
    listener: TcpListener,
}

impl SocketUnit {
    fn new() -> Self {
        Self { listener: TcpListener::bind("127.0.0.1:0").unwrap() }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// Starts `switchyard run` on `config` through `systemd-socket-activate`, with the
    /// held socket as its fd 3. systemd-socket-activate execs the service at the first
    /// connection, so one is made (and left in the backlog) before waiting for the
    /// "listening" line; it is returned so the test can use it.
    fn activate(&self, dir: &Path, config: &str) -> (Process, TcpStream) {
        let path = binary::write_config(dir, config);
        let mut command = Command::new("sh");
        // LISTEN_PID must name the process that reads LISTEN_FDS: the shell execs
        // systemd-socket-activate, which keeps the shell's pid.
        command
            .arg("-c")
            .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec systemd-socket-activate \"$@\"")
            .arg("sh")
            .args(["--", switchyard_bin(), "run", "--config"])
            .arg(&path);
        binary::as_fd_3(&mut command, &self.listener);
        let first = TcpStream::connect(self.addr()).unwrap();
        (binary::start(command), first)
    }
}

fn config_on(addr: SocketAddr, upstream: &str) -> String {
    format!("[server]\nlisten = \"{addr}\"\nshutdown_grace = \"5s\"\n[upstream]\nurl = \"{upstream}\"\n")
}

/// One `GET /` on a fresh connection, as a browser's first request: the status line, or
/// what went wrong.
fn get(addr: SocketAddr) -> Result<String, Outcome> {
    let mut stream = TcpStream::connect(addr).map_err(|_| Outcome::Refused)?;
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").map_err(|_| Outcome::Closed)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|_| Outcome::Closed)?;
    if answer.is_empty() {
        return Err(Outcome::Closed);
    }
    Ok(String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned())
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The connect was refused: nothing held the socket.
    Refused,
    /// Connected, but closed before any answer.
    Closed,
}

/// Requests in a loop until told to stop, counting each outcome.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    ok: AtomicUsize,
    refused: AtomicUsize,
    closed_unanswered: AtomicUsize,
    other: std::sync::Mutex<Vec<String>>,
}

impl Load {
    fn run(self: Arc<Self>, addr: SocketAddr) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            while !self.stop.load(Ordering::Relaxed) {
                match get(addr) {
                    Ok(status) if status.starts_with("HTTP/1.1 200") => drop(self.ok.fetch_add(1, Ordering::Relaxed)),
                    Ok(status) => self.other.lock().unwrap().push(status),
                    Err(Outcome::Refused) => drop(self.refused.fetch_add(1, Ordering::Relaxed)),
                    Err(Outcome::Closed) => drop(self.closed_unanswered.fetch_add(1, Ordering::Relaxed)),
                }
            }
        })
    }

    fn wait_for_ok(&self, at_least: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.ok.load(Ordering::Relaxed) < at_least {
            let counts = (self.ok.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed));
            let closed = self.closed_unanswered.load(Ordering::Relaxed);
            assert!(Instant::now() < deadline, "not {at_least} answered within {PATIENCE:?}: {counts:?} {closed}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn sigterm(process: &Process) {
    let kill = Command::new("kill").args(["-TERM", &process.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
}

#[tokio::test]
async fn a_connect_queued_before_the_service_starts_is_answered_by_it() {
    let up = upstream(|_| async { reply(200, "ok") }).await;
    let unit = SocketUnit::new();
    let dir = tempfile::tempdir().unwrap();
    let (sy, mut first) = unit.activate(dir.path(), &config_on(unit.addr(), &up.url));
    assert_eq!(sy.plain, [unit.addr()]);
    first.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    tokio::task::spawn_blocking(move || first.read_to_string(&mut answer).map(|_| answer)).await.unwrap().unwrap();
}

// Multi-threaded: the upstream answers on this runtime while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_through_socket_activation_refuses_no_connect() {
    let up = upstream(|_| async { reply(200, "ok") }).await;
    let unit = SocketUnit::new();
    let (dir, config) = (tempfile::tempdir().unwrap(), config_on(unit.addr(), &up.url));
    let (old, first) = unit.activate(dir.path(), &config);
    drop(first);
    let load = Arc::new(Load::default());
    let requests = load.clone().run(unit.addr());
    let load1 = load.clone();
    tokio::task::spawn_blocking(move || load1.wait_for_ok(20)).await.unwrap();

    // What `systemctl restart` does: stop (SIGTERM, wait for the exit), then start again
    // with the same sockets, while the load keeps connecting.
    sigterm(&old);
    let mut old = old;
    let exited = tokio::task::spawn_blocking(move || old.child.wait()).await.unwrap().unwrap();
    assert!(exited.success(), "{exited:?}");
    let through_old = load.ok.load(Ordering::Relaxed);
    let new = tokio::task::spawn_blocking({
        let (path, config) = (dir.path().to_owned(), config.clone());
        let unit = SocketUnit { listener: unit.listener.try_clone().unwrap() };
        move || unit.activate(&path, &config).0
    })
    .await
    .unwrap();
    let (load2, wait) = (load.clone(), through_old + 20);
    tokio::task::spawn_blocking(move || load2.wait_for_ok(wait)).await.unwrap();
    load.stop.store(true, Ordering::Relaxed);
    requests.join().unwrap();
    drop(new);

    eprintln!("answered {} requests ({through_old} by the old process)", load.ok.load(Ordering::Relaxed));
    assert_eq!(load.refused.load(Ordering::Relaxed), 0, "refused connects");
    assert_eq!(load.closed_unanswered.load(Ordering::Relaxed), 0, "connections closed unanswered");
    assert!(load.other.lock().unwrap().is_empty(), "{:?}", load.other.lock().unwrap());
}

/// The service manager's end of the sd-notify protocol: a datagram socket whose path the
/// service gets in `NOTIFY_SOCKET`.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        Self { socket, path }
    }

    /// The next message's lines (`READY=1`, `STATUS=...`).
    fn next(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notification within {PATIENCE:?}: {e}"));
        String::from_utf8_lossy(&buf[..n]).lines().map(str::to_owned).collect()
    }

    /// Messages until one holds `line`; fails after [`PATIENCE`].
    fn wait_for(&self, line: &str) -> Vec<String> {
        loop {
            let message = self.next();
            if message.iter().any(|l| l == line) {
                return message;
            }
        }
    }
}

/// `switchyard run` as systemd starts a `Type=notify` service, plus `env`.
fn spawn_notifying(dir: &Path, config: &str, notify: &NotifySocket, env: &[(&str, &str)]) -> Process {
    let path = binary::write_config(dir, config);
    let mut command = Command::new(switchyard_bin());
    command.args(["run", "--config"]).arg(&path).env("NOTIFY_SOCKET", &notify.path);
    command.envs(env.iter().copied());
    binary::start(command)
}

#[tokio::test]
async fn ready_is_notified_once_the_listeners_serve() {
    let up = upstream(|_| async { reply(200, "ok") }).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::new(dir.path());
    let sy = spawn_notifying(dir.path(), &minimal_config(&up.url, ""), &notify, &[]);
    let message = tokio::task::spawn_blocking(move || notify.next()).await.unwrap();
    assert!(message.contains(&"READY=1".to_owned()), "{message:?}");
    let response = client().get(url(sy.plain[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn stopping_is_notified_when_sigterm_begins_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::new(dir.path());
    let sy = spawn_notifying(dir.path(), &minimal_config("http://127.0.0.1:1", ""), &notify, &[]);
    notify.wait_for("READY=1");
    sigterm(&sy);
    let message = tokio::task::spawn_blocking(move || notify.wait_for("STOPPING=1")).await.unwrap();
    assert!(message.iter().any(|l| l.starts_with("STATUS=")), "{message:?}");
    binary::wait_for_line(&sy.lines, "stopped", PATIENCE);
}

#[tokio::test]
async fn the_watchdog_is_fed_every_half_period() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::new(dir.path());
    // WatchdogSec=400ms: a beat is due every 200 ms.
    let env = [("WATCHDOG_USEC", "400000")];
    let _sy = spawn_notifying(dir.path(), &minimal_config("http://127.0.0.1:1", ""), &notify, &env);
    let beats = tokio::task::spawn_blocking(move || {
        notify.wait_for("WATCHDOG=1");
        let started = Instant::now();
        for _ in 0..3 {
            notify.wait_for("WATCHDOG=1");
        }
        started.elapsed()
    });
    let three_periods = beats.await.unwrap();
    // Three more beats take three half periods (600 ms); not much less, since the interval
    // paces them, and well under the 1.2 s after which systemd would have killed us.
    assert!(three_periods >= Duration::from_millis(500), "{three_periods:?}");
    assert!(three_periods < Duration::from_millis(1200), "{three_periods:?}");
}

#[tokio::test]
async fn a_reload_is_announced_as_reloading_then_ready() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::new(dir.path());
    let sy = spawn_notifying(dir.path(), &minimal_config("http://127.0.0.1:1", ""), &notify, &[]);
    notify.wait_for("READY=1");
    let kill = Command::new("kill").args(["-HUP", &sy.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let (reloading, ready) = tokio::task::spawn_blocking(move || (notify.next(), notify.next())).await.unwrap();
    assert!(reloading.contains(&"RELOADING=1".to_owned()), "{reloading:?}");
    assert!(reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading:?}");
    assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");
}
