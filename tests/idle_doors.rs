//! Every door closes: connections that say nothing (plain, half an HTTP/2 preface, a whole
//! one, TLS before or after its handshake, a partial request head) and connections left
//! idle between requests (HTTP/1.1 keep-alive, HTTP/2) are closed on their timeouts, while
//! a request in flight is never cut for idleness. Running out of file descriptors slows
//! accepting down and is logged once.

mod support;

use std::time::{Duration, Instant};

use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than any timeout below: a door still open after this stayed open.
const PATIENCE: Duration = Duration::from_secs(10);

/// Switchyard in front of an upstream that answers "ok", with `[server]` lines `server`.
async fn switchyard_with(server: &str) -> (switchyard::server::Running, Upstream) {
    let up = upstream(|_| async { reply(200, "ok") }).await;
    let config = minimal_config(&up.url, "").replace("[upstream]", &format!("{server}\n[upstream]"));
    (start_switchyard(&config).await, up)
}

/// Reads until the peer closes; returns how long that took and what it sent.
async fn until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let closed = async {
        let mut buf = [0u8; 4096];
        // A reset counts as closed too.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, closed).await.expect("the connection was closed");
    (started.elapsed(), seen)
}

#[tokio::test]
async fn connection_that_sends_nothing_is_closed_after_header_read_timeout() {
    let (sy, _up) = switchyard_with("header_read_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    let (after, _) = until_closed(&mut stream).await;
    assert!(after >= Duration::from_millis(250), "closed too early: {after:?}");
}

#[tokio::test]
async fn partial_http2_preface_then_silence_is_closed() {
    let (sy, _up) = switchyard_with("header_read_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    until_closed(&mut stream).await;
}

#[tokio::test]
async fn complete_http2_preface_then_silence_is_closed() {
    let (sy, _up) = switchyard_with("header_read_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    until_closed(&mut stream).await;
}

#[tokio::test]
async fn partial_request_head_is_closed_after_header_read_timeout() {
    // idle_timeout is long: only header_read_timeout can close this one.
    let (sy, _up) = switchyard_with("header_read_timeout = \"300ms\"\nidle_timeout = \"1h\"").await;
    let mut stream = TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow").await.unwrap();
    let (after, _) = until_closed(&mut stream).await;
    assert!(after >= Duration::from_millis(250), "closed too early: {after:?}");
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let (sy, _up) = switchyard_with("header_read_timeout = \"1h\"\nidle_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (after, seen) = until_closed(&mut stream).await;
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 200") && seen.ends_with("ok"), "{seen}");
    assert!(after >= Duration::from_millis(250), "closed too early: {after:?}");
}

#[tokio::test]
async fn idle_http2_connection_is_closed_after_idle_timeout() {
    let (sy, _up) = switchyard_with("header_read_timeout = \"1h\"\nidle_timeout = \"300ms\"").await;
    let tcp = TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    let conn = tokio::spawn(conn);
    let request = Request::get(url(sy.plain_addrs[0], "/")).body(bytes_body("")).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(read_body(response).await, "ok");
    tokio::time::timeout(PATIENCE, conn).await.expect("the idle HTTP/2 connection was closed").unwrap().unwrap();
}

#[tokio::test]
async fn request_in_flight_is_not_cut_for_idleness() {
    let up = upstream(|_| async {
        tokio::time::sleep(Duration::from_millis(900)).await;
        reply(200, "slow but whole")
    })
    .await;
    let server = "header_read_timeout = \"300ms\"\nidle_timeout = \"300ms\"";
    let sy =
        start_switchyard(&minimal_config(&up.url, "").replace("[upstream]", &format!("{server}\n[upstream]"))).await;
    let response = client().get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(read_body(response).await, "slow but whole");
}

/// A TLS listener with the dev certificate and `server` lines; the CA file's path.
async fn tls_switchyard(server: &str) -> (switchyard::server::Running, tempfile::TempDir, Upstream) {
    let up = upstream(|_| async { reply(200, "ok") }).await;
    let dir = tempfile::tempdir().unwrap();
    switchyard::devcert::write(dir.path(), switchyard::devcert::Overwrite::Refuse).unwrap();
    let config = format!(
        "[server]\n{server}\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"localhost.pem\"\nkey = \"localhost-key.pem\"\n[upstream]\nurl = \"{}\"\n",
        up.url
    );
    let sy = switchyard::server::start(config_in(dir.path(), &config)).await.unwrap();
    (sy, dir, up)
}

#[tokio::test]
async fn stalled_tls_handshake_is_closed_after_tls_handshake_timeout() {
    // header_read_timeout is long: only the handshake's own timeout can close this one.
    let (sy, _dir, _up) = tls_switchyard("tls_handshake_timeout = \"300ms\"\nheader_read_timeout = \"1h\"").await;
    let mut stream = TcpStream::connect(sy.tls_addrs[0]).await.unwrap();
    // The first bytes of a ClientHello record, then nothing.
    stream.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    let (after, _) = until_closed(&mut stream).await;
    assert!(after >= Duration::from_millis(250), "closed too early: {after:?}");
}

#[tokio::test]
async fn tls_connection_silent_after_its_handshake_is_closed() {
    let (sy, dir, _up) = tls_switchyard("header_read_timeout = \"300ms\"").await;
    let ca = dir.path().join("localhost-ca.pem");
    let tcp = TcpStream::connect(sy.tls_addrs[0]).await.unwrap();
    let mut tls = support::tls::connector(&[&ca], &[])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake completes");
    until_closed(&mut tls).await;
}

/// The real binary with 48 file descriptors: 80 silent connections exhaust them. It must
/// neither spin nor log each failed accept, and serve again once descriptors are free.
#[tokio::test]
async fn running_out_of_file_descriptors_backs_off_and_logs_once() {
    let up = upstream(|_| async { reply(200, "ok") }).await;
    let dir = tempfile::tempdir().unwrap();
    let config = minimal_config(&up.url, "").replace("[upstream]", "workers = 1\n[upstream]");
    let sy = support::binary::spawn_limited(dir.path(), &config, 48);
    let mut silent = Vec::new();
    for _ in 0..80 {
        silent.push(TcpStream::connect(sy.plain[0]).await.unwrap());
    }
    support::binary::wait_for_line(&sy.lines, "cannot accept connections", PATIENCE);
    let busy_before = support::binary::cpu_time(sy.child.id());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = support::binary::cpu_time(sy.child.id()) - busy_before;
    assert!(busy < Duration::from_millis(300), "spent {busy:?} of CPU in one second while out of descriptors");
    drop(silent);
    let mut repeated = 0;
    loop {
        let line = sy.lines.recv_timeout(PATIENCE).expect("accepting again once descriptors are free");
        repeated += usize::from(line.contains("cannot accept connections"));
        if line.contains("accepting connections again") {
            break;
        }
    }
    assert_eq!(repeated, 0, "the burst was logged more than once");
    let response = client().get(url(sy.plain[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(read_body(response).await, "ok");
}
