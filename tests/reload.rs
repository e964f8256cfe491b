//! Reload (SIGHUP to the real binary): a new config in force without dropping a socket or a
//! request, the new certificate for new connections, removed routes and channels closing
//! their sockets with 1012, an invalid file refused while the old config serves, and
//! restart-only options named.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use support::binary::{self, Process};
use support::ws::{self, closed, next_message};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A config with a plain and a TLS listener (certificate from `certs`), an echo route,
/// `extra` appended, and JSON logs.
fn config(upstream: &str, certs: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{certs}/localhost.pem\"\n\
         key = \"{certs}/localhost-key.pem\"\n[upstream]\nurl = \"{upstream}\"\n[websocket]\nmax_per_ip = 2000\n\
         [[routes]]\npath = \"/ws/echo/\"\nprotocol = \"echo\"\n{extra}\n"
    )
}

/// Two dev CAs with a localhost certificate each, in `dir/a` and `dir/b`.
fn two_certificates(dir: &Path) {
    for name in ["a", "b"] {
        switchyard::devcert::write(&dir.join(name), switchyard::devcert::Overwrite::Refuse).unwrap();
    }
}

/// Rewrites the config file and sends SIGHUP; returns the first log line that reports
/// the outcome ("reloaded" or "reload refused").
fn reload(dir: &Path, sy: &Process, text: &str) -> serde_json::Value {
    binary::write_config(dir, text);
    hup(sy);
    tokio::task::block_in_place(|| {
        binary::wait_for_log(&sy.lines, "the reload's outcome", PATIENCE, |line| {
            line["fields"]["message"].as_str().is_some_and(|m| m.starts_with("reload"))
        })
    })
}

fn hup(sy: &Process) {
    let kill = Command::new("kill").args(["-HUP", &sy.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
}

/// The certificate a new TLS connection is served, trusting both test CAs.
async fn served_certificate(addr: SocketAddr, dir: &Path) -> Vec<u8> {
    let (a, b) = (dir.join("a").join("localhost-ca.pem"), dir.join("b").join("localhost-ca.pem"));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = support::tls::connector(&[&a, &b], &[]);
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn certificate_der(dir: &Path, name: &str) -> Vec<u8> {
    let pem = std::fs::read(dir.join(name).join("localhost.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next().unwrap().unwrap().to_vec();
    der
}

/// Requests in a loop on one kept-alive client until stopped, counting outcomes.
#[derive(Default)]
struct Requests {
    stop: AtomicBool,
    ok: AtomicUsize,
    failed: std::sync::Mutex<Vec<String>>,
}

impl Requests {
    fn run(self: Arc<Self>, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let client = client();
            while !self.stop.load(Ordering::Relaxed) {
                match client.get(url(addr, "/").parse().unwrap()).await {
                    Ok(response) if response.status() == 200 => {
                        read_body(response).await;
                        self.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(response) => self.failed.lock().unwrap().push(response.status().to_string()),
                    Err(e) => self.failed.lock().unwrap().push(e.to_string()),
                }
            }
        })
    }

    async fn more_than(&self, n: usize) {
        eventually(&format!("more than {n} answered requests"), || self.ok.load(Ordering::Relaxed) > n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_drops_no_socket_and_fails_no_request() {
    const SOCKETS: usize = 1000;
    let up = upstream(|_| async { reply(200, "ok") }).await;
    let dir = tempfile::tempdir().unwrap();
    two_certificates(dir.path());
    let sy = binary::spawn(dir.path(), &config(&up.url, "a", ""));
    let plain = sy.plain[0];
    let opening = futures_util::stream::iter(0..SOCKETS).map(|_| ws::connect(plain, "/ws/echo/"));
    let mut sockets: Vec<ws::Client> = opening.buffer_unordered(64).collect().await;
    let requests = Arc::new(Requests::default());
    let stream = requests.clone().run(plain);
    requests.more_than(20).await;

    // A new route and the other certificate.
    let new_route = "[[routes]]\npath = \"/ws/new/\"\nprotocol = \"echo\"\n";
    let outcome = reload(dir.path(), &sy, &config(&up.url, "b", new_route));
    assert_eq!(outcome["fields"]["message"], "reloaded", "{outcome}");
    let answered = requests.ok.load(Ordering::Relaxed);
    requests.more_than(answered + 20).await;
    requests.stop.store(true, Ordering::Relaxed);
    stream.await.unwrap();
    assert!(requests.failed.lock().unwrap().is_empty(), "{:?}", requests.failed.lock().unwrap());

    // Every socket opened before the reload still echoes.
    for socket in &mut sockets {
        socket.send(Message::text("still here")).await.unwrap();
        assert_eq!(next_message(socket).await, Message::text("still here"));
    }
    assert_eq!(served_certificate(sy.tls[0], dir.path()).await, certificate_der(dir.path(), "b"));
    let mut fresh = ws::connect(plain, "/ws/new/").await;
    fresh.send(Message::text("new")).await.unwrap();
    assert_eq!(next_message(&mut fresh).await, Message::text("new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_removed_by_a_reload_closes_its_sockets_with_1012() {
    let dir = tempfile::tempdir().unwrap();
    two_certificates(dir.path());
    let gone = "[[routes]]\npath = \"/ws/gone/\"\nprotocol = \"echo\"\n";
    let sy = binary::spawn(dir.path(), &config("http://127.0.0.1:1", "a", gone));
    let mut kept = ws::connect(sy.plain[0], "/ws/echo/").await;
    let mut removed = ws::connect(sy.plain[0], "/ws/gone/").await;
    let outcome = reload(dir.path(), &sy, &config("http://127.0.0.1:1", "a", ""));
    assert_eq!(outcome["fields"]["closed"], 1, "{outcome}");
    assert_eq!(closed(&mut removed).await.0, 1012);
    kept.send(Message::text("kept")).await.unwrap();
    assert_eq!(next_message(&mut kept).await, Message::text("kept"));
    assert_eq!(ws::refused_status(sy.plain[0], "/ws/gone/", &[]).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_is_refused_with_file_and_line_and_the_old_one_serves() {
    let up = upstream(|_| async { reply(200, "ok") }).await;
    let dir = tempfile::tempdir().unwrap();
    two_certificates(dir.path());
    let sy = binary::spawn(dir.path(), &config(&up.url, "a", ""));
    let typo = config(&up.url, "b", "[[routes]]\npath = \"/ws/new/\"\nprotocl = \"echo\"\n");
    let outcome = reload(dir.path(), &sy, &typo);
    let message = outcome["fields"]["message"].as_str().unwrap();
    assert!(message.starts_with("reload refused"), "{message}");
    assert!(message.contains("switchyard.toml:16:1") && message.contains("protocol"), "{message}");
    let response = client().get(url(sy.plain[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(read_body(response).await, "ok");
    assert_eq!(served_certificate(sy.tls[0], dir.path()).await, certificate_der(dir.path(), "a"));
    assert_eq!(ws::refused_status(sy.plain[0], "/ws/new/", &[]).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_certificate_refuses_the_reload_and_the_old_one_is_served() {
    let dir = tempfile::tempdir().unwrap();
    two_certificates(dir.path());
    let sy = binary::spawn(dir.path(), &config("http://127.0.0.1:1", "a", ""));
    std::fs::write(dir.path().join("b").join("localhost.pem"), "not a certificate").unwrap();
    let outcome = reload(dir.path(), &sy, &config("http://127.0.0.1:1", "b", ""));
    let message = outcome["fields"]["message"].as_str().unwrap();
    assert!(message.starts_with("reload refused") && message.contains("localhost.pem"), "{message}");
    assert_eq!(served_certificate(sy.tls[0], dir.path()).await, certificate_der(dir.path(), "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_that_need_a_restart_are_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    two_certificates(dir.path());
    let sy = binary::spawn(dir.path(), &config("http://127.0.0.1:1", "a", "[broker]\nkind = \"local\"\n"));
    let changed = config("http://127.0.0.1:1", "a", "")
        .replace("listen = \"127.0.0.1:0\"\n[server.tls]", "listen = \"127.0.0.1:0\"\nworkers = 3\n[server.tls]");
    binary::write_config(dir.path(), &changed);
    hup(&sy);
    let warning = tokio::task::block_in_place(|| binary::wait_for_line(&sy.lines, "only at a restart", PATIENCE));
    assert_eq!(warning["fields"]["options"], "[server] workers", "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchyard_reload_signals_the_process_in_the_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    two_certificates(dir.path());
    let path = binary::write_config(dir.path(), &config("http://127.0.0.1:1", "a", ""));
    let pid_file = dir.path().join("switchyard.pid");
    let mut command = Command::new(binary::switchyard_bin());
    command.args(["run", "--config"]).arg(&path).arg("--pid-file").arg(&pid_file);
    let sy = binary::start(command);
    let pid = wait_for("the pid file", || {
        std::future::ready(std::fs::read_to_string(&pid_file).ok().filter(|t| t.ends_with('\n')))
    })
    .await;
    assert_eq!(pid.trim(), sy.child.id().to_string());
    let new_route = "[[routes]]\npath = \"/ws/new/\"\nprotocol = \"echo\"\n";
    binary::write_config(dir.path(), &config("http://127.0.0.1:1", "a", new_route));
    let asked = Command::new(binary::switchyard_bin()).arg("reload").arg("--pid-file").arg(&pid_file).output().unwrap();
    assert!(asked.status.success(), "{}", String::from_utf8_lossy(&asked.stderr));
    tokio::task::block_in_place(|| binary::wait_for_line(&sy.lines, "reloaded", PATIENCE));
    let mut fresh = ws::connect(sy.plain[0], "/ws/new/").await;
    fresh.send(Message::text("new")).await.unwrap();
    assert_eq!(next_message(&mut fresh).await, Message::text("new"));
}

#[test]
fn switchyard_reload_names_a_pid_file_that_holds_no_pid() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("switchyard.pid");
    std::fs::write(&pid_file, "not a pid\n").unwrap();
    let asked = Command::new(binary::switchyard_bin()).arg("reload").arg("--pid-file").arg(&pid_file).output().unwrap();
    assert!(!asked.status.success());
    let stderr = String::from_utf8_lossy(&asked.stderr);
    assert!(stderr.contains("switchyard.pid") && stderr.contains("not a pid"), "{stderr}");
}
