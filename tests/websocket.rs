//! WebSocket termination: routes, handshake refusals, the JSON protocol's built-ins and bad
//! input, echo and broadcast routes, limits and close codes. Real sockets, real client.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use support::ws::*;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// Switchyard with an unreachable upstream and `routes` (TOML) appended.
async fn switchyard_with(routes: &str) -> switchyard::server::Running {
    let config = format!("{}\n{routes}", minimal_config("http://127.0.0.1:9", ""));
    start_switchyard(&config).await
}

const JSON_ROUTE: &str = "[[routes]]\npath = \"/ws/\"\n";

#[tokio::test]
async fn welcome_comes_first_with_connection_id_and_no_user() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    let welcome = welcome(&mut client).await;
    assert_eq!(welcome["connection"].as_str().unwrap().len(), 36);
    assert_eq!(welcome["user"], serde_json::Value::Null);
}

#[tokio::test]
async fn builtins_answer_with_the_id() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    let reply = command(&mut client, json!({"id": 7, "ping": null})).await;
    assert_eq!(reply, json!({"id": 7, "ping": {"result": "pong"}}));
    let reply = command(&mut client, json!({"id": "e", "echo": {"a": [1, 2]}})).await;
    assert_eq!(reply, json!({"id": "e", "echo": {"result": {"a": [1, 2]}}}));
    let reply = command(&mut client, json!({"id": 8, "whoami": null})).await;
    assert_eq!(reply, json!({"id": 8, "whoami": {"result": null}}));
}

#[tokio::test]
async fn several_commands_reply_once_in_the_order_written() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    client.send(Message::text(r#"{"id": 1, "whoami": null, "echo": "x", "ping": null}"#)).await.unwrap();
    let Message::Text(text) = next_message(&mut client).await else { panic!("text expected") };
    assert_eq!(text.as_str(), r#"{"id":1,"whoami":{"result":null},"echo":{"result":"x"},"ping":{"result":"pong"}}"#);
}

#[tokio::test]
async fn bad_frames_get_an_error_reply_and_the_socket_lives() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    for (frame, id) in [("not json", None), ("[1, 2]", None), (r#"{"id": 3, "ping": 1, "ping": 2}"#, Some(json!(3)))] {
        client.send(Message::text(frame)).await.unwrap();
        let reply = next_json(&mut client).await;
        assert_eq!(reply["error"]["code"], "bad_frame", "{frame}: {reply}");
        assert_eq!(reply.get("id").cloned(), id, "{frame}: {reply}");
    }
    assert_eq!(command(&mut client, json!({"id": 4, "ping": null})).await["ping"]["result"], "pong");
}

#[tokio::test]
async fn unknown_command_is_unknown_command() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    let reply = command(&mut client, json!({"id": 1, "launch.missiles": {}, "ping": null})).await;
    assert_eq!(reply["launch.missiles"]["error"]["code"], "unknown_command");
    assert_eq!(reply["ping"]["result"], "pong");
}

#[tokio::test]
async fn command_outside_the_route_list_is_forbidden() {
    let sy = switchyard_with("[[routes]]\npath = \"/ws/\"\ncommands = [\"ping\"]\n").await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    let reply = command(&mut client, json!({"id": 1, "echo": "x", "ping": null})).await;
    assert_eq!(reply["echo"]["error"]["code"], "forbidden");
    assert_eq!(reply["ping"]["result"], "pong");
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let sy = switchyard_with("[[routes]]\npath = \"/ws/\"\nmax_message_size = \"1KiB\"\n").await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    let big = format!("{{\"echo\": \"{}\"}}", "x".repeat(2000));
    client.send(Message::text(big)).await.unwrap();
    assert_eq!(closed(&mut client).await.0, 1009);
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    client.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(closed(&mut client).await.0, 1007);
}

#[tokio::test]
async fn binary_on_a_json_route_closes_with_1003() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    client.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(closed(&mut client).await.0, 1003);
}

#[tokio::test]
async fn foreign_origin_is_403() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let status = refused_status(sy.plain_addrs[0], "/ws/", &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn listed_origin_is_accepted_and_the_own_origin_then_is_not() {
    let sy = switchyard_with("[[routes]]\npath = \"/ws/\"\norigins = [\"https://app.example\"]\n").await;
    let addr = sy.plain_addrs[0];
    assert!(connect_with(addr, "/ws/", &[("origin", "https://app.example")]).await.is_ok());
    assert_eq!(refused_status(addr, "/ws/", &[("origin", &format!("http://{addr}"))]).await, 403);
}

#[tokio::test]
async fn cookie_without_origin_is_403() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let status = refused_status(sy.plain_addrs[0], "/ws/", &[("cookie", "sessionid=abc")]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn upgrade_without_a_route_is_404_and_with_accept_all_is_served() {
    let sy = switchyard_with(JSON_ROUTE).await;
    assert_eq!(refused_status(sy.plain_addrs[0], "/elsewhere/", &[]).await, 404);
    let sy = switchyard_with("[websocket]\naccept_all = true\n").await;
    let mut client = connect(sy.plain_addrs[0], "/elsewhere/").await;
    welcome(&mut client).await;
}

#[tokio::test]
async fn deny_route_refuses_the_upgrade_with_403() {
    let sy = switchyard_with("[[routes]]\npath = \"/ws/*\"\nwebsocket = \"deny\"\n").await;
    assert_eq!(refused_status(sy.plain_addrs[0], "/ws/x", &[]).await, 403);
}

#[tokio::test]
async fn plain_http_on_a_require_route_is_400_and_on_accept_goes_to_django() {
    let up = upstream(|_| async { reply(200, "from django") }).await;
    let config = format!(
        "{}\n[[routes]]\npath = \"/ws/\"\n[[routes]]\npath = \"/live/\"\nwebsocket = \"accept\"\n",
        minimal_config(&up.url, "")
    );
    let sy = start_switchyard(&config).await;
    let response = client().get(url(sy.plain_addrs[0], "/ws/").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 400);
    let response = client().get(url(sy.plain_addrs[0], "/live/").parse().unwrap()).await.unwrap();
    assert_eq!(read_body(response).await, "from django");
    let mut socket = connect(sy.plain_addrs[0], "/live/").await;
    welcome(&mut socket).await;
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends a handshake for `/ws/` with these header lines (after `Host`) as raw bytes; returns
/// the response head and body as text.
async fn raw_handshake(sy: &switchyard::server::Running, lines: &[&str]) -> String {
    let mut request = String::from("GET /ws/ HTTP/1.1\r\nHost: x\r\n");
    for line in lines {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn malformed_key_is_400_with_a_reason() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let lines = ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: short"];
    let response = raw_handshake(&sy, &lines).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("Sec-WebSocket-Key"), "{response}");
}

#[tokio::test]
async fn missing_connection_upgrade_is_400() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let response = raw_handshake(&sy, &["Upgrade: websocket", "Sec-WebSocket-Version: 13", &key]).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
}

#[tokio::test]
async fn wrong_version_is_426_naming_13() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let response =
        raw_handshake(&sy, &["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 8", &key]).await;
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(response.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{response}");
}

#[tokio::test]
async fn accepted_handshake_never_advertises_permessage_deflate() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let lines = [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        &key,
        "Sec-WebSocket-Extensions: permessage-deflate",
        "Sec-WebSocket-Protocol: chat",
    ];
    let response = raw_handshake(&sy, &lines).await;
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(!lower.contains("sec-websocket-extensions"), "{response}");
    assert!(!lower.contains("sec-websocket-protocol"), "a subprotocol the route does not speak was chosen: {response}");
}

#[tokio::test]
async fn echo_route_sends_text_and_binary_back_without_a_welcome() {
    let sy = switchyard_with("[[routes]]\npath = \"/echo/\"\nprotocol = \"echo\"\n").await;
    let mut client = connect(sy.plain_addrs[0], "/echo/").await;
    client.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::text("hello"));
    client.send(Message::binary(vec![0, 159, 146, 150])).await.unwrap();
    assert_eq!(next_message(&mut client).await, Message::binary(vec![0, 159, 146, 150]));
}

#[tokio::test]
async fn broadcast_route_sends_every_message_to_every_socket() {
    let sy = switchyard_with("[[routes]]\npath = \"/room/\"\nprotocol = \"broadcast\"\n").await;
    // Broadcast routes send no welcome; a socket's own message coming back to it is the
    // sign that it is registered (a socket reads only after registering).
    let mut a = connect(sy.plain_addrs[0], "/room/").await;
    a.send(Message::text("a is here")).await.unwrap();
    assert_eq!(next_message(&mut a).await, Message::text("a is here"));
    let mut b = connect(sy.plain_addrs[0], "/room/").await;
    b.send(Message::text("b is here")).await.unwrap();
    assert_eq!(next_message(&mut b).await, Message::text("b is here"));
    assert_eq!(next_message(&mut a).await, Message::text("b is here"));
    a.send(Message::text("from a")).await.unwrap();
    assert_eq!(next_message(&mut a).await, Message::text("from a"));
    assert_eq!(next_message(&mut b).await, Message::text("from a"));
    b.send(Message::text("from b")).await.unwrap();
    assert_eq!(next_message(&mut b).await, Message::text("from b"));
    assert_eq!(next_message(&mut a).await, Message::text("from b"));
}

#[tokio::test]
async fn sockets_past_the_address_cap_get_429() {
    let sy = switchyard_with(&format!("[websocket]\nmax_per_ip = 2\n{JSON_ROUTE}")).await;
    let addr = sy.plain_addrs[0];
    let mut first = connect(addr, "/ws/").await;
    let _second = connect(addr, "/ws/").await;
    let origin = format!("http://{addr}");
    assert_eq!(refused_status(addr, "/ws/", &[("origin", origin.as_str())]).await, 429);
    first.close(None).await.unwrap();
    assert_eq!(closed(&mut first).await.0, 1005);
    // The freed place can be taken again once the server has seen the close.
    let mut retry = wait_for("the closed socket's place is free again", || async {
        connect_with(addr, "/ws/", &[("origin", origin.as_str())]).await.ok()
    })
    .await;
    welcome(&mut retry).await;
}

/// Switchyard believing forwarding headers from `proxies` (a CIDR), with `rest` appended.
async fn switchyard_trusting(proxies: &str, rest: &str) -> switchyard::server::Running {
    let base = minimal_config("http://127.0.0.1:9", "")
        .replace("[upstream]", &format!("trusted_proxies = [\"{proxies}\"]\n[upstream]"));
    start_switchyard(&format!("{base}\n{rest}")).await
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_cap_counts_the_forwarded_client_address() {
    let sy = switchyard_trusting("127.0.0.0/8", &format!("[websocket]\nmax_per_ip = 1\n{JSON_ROUTE}")).await;
    let addr = sy.plain_addrs[0];
    let origin = format!("http://{addr}");
    let one = [("origin", origin.as_str()), ("x-forwarded-for", "203.0.113.1")];
    let two = [("origin", origin.as_str()), ("x-forwarded-for", "203.0.113.2")];
    let _first = connect_with(addr, "/ws/", &one).await.expect("the first client's socket");
    let _other = connect_with(addr, "/ws/", &two).await.expect("another client behind the same proxy");
    assert_eq!(refused_status(addr, "/ws/", &one).await, 429, "the first client's second socket");
}

#[tokio::test]
async fn from_an_untrusted_peer_the_forwarded_address_does_not_escape_the_cap() {
    let sy = switchyard_with(&format!("[websocket]\nmax_per_ip = 1\n{JSON_ROUTE}")).await;
    let addr = sy.plain_addrs[0];
    let origin = format!("http://{addr}");
    let first = [("origin", origin.as_str()), ("x-forwarded-for", "203.0.113.1")];
    let _first = connect_with(addr, "/ws/", &first).await.expect("the first socket");
    let second = [("origin", origin.as_str()), ("x-forwarded-for", "203.0.113.2")];
    assert_eq!(refused_status(addr, "/ws/", &second).await, 429);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_scheme_is_the_own_origins() {
    let trusted = switchyard_trusting("127.0.0.1/32", JSON_ROUTE).await;
    let addr = trusted.plain_addrs[0];
    let https = format!("https://{addr}");
    let headers = [("origin", https.as_str()), ("x-forwarded-proto", "https")];
    let mut socket = connect_with(addr, "/ws/", &headers).await.expect("https origin behind a TLS proxy");
    welcome(&mut socket).await;
    // The plain origin is foreign once the proxy says the page came over https.
    let http = format!("http://{addr}");
    assert_eq!(refused_status(addr, "/ws/", &[("origin", http.as_str()), ("x-forwarded-proto", "https")]).await, 403);
    // From an untrusted peer the header is ignored: the connection itself is plain http.
    let untrusted = switchyard_with(JSON_ROUTE).await;
    let addr = untrusted.plain_addrs[0];
    let https = format!("https://{addr}");
    assert_eq!(refused_status(addr, "/ws/", &[("origin", https.as_str()), ("x-forwarded-proto", "https")]).await, 403);
}

#[tokio::test]
async fn authenticated_route_closes_an_anonymous_socket_with_4401() {
    let sy = switchyard_with("[[routes]]\npath = \"/ws/\"\nauth = \"authenticated\"\n").await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    let (code, reason) = closed(&mut client).await;
    assert_eq!(code, 4401);
    assert_eq!(reason, "login required");
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    let stopping = tokio::spawn(sy.shutdown(Duration::from_secs(5)));
    assert_eq!(closed(&mut client).await.0, 1001);
    assert_eq!(stopping.await.unwrap(), switchyard::server::Shutdown::Clean);
}

/// A WebSocket peer on raw TCP: it reads frames by hand, so it can see how the connection
/// ends (a clean end of stream or a reset) and send what no real client would.
struct RawPeer<R> {
    reader: R,
    buf: Vec<u8>,
}

/// Opens a raw TCP connection, upgrades it on `path`, and returns the peer's two halves.
async fn raw_peer(
    addr: std::net::SocketAddr,
    path: &str,
) -> (RawPeer<tokio::net::tcp::OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    writer.write_all(request.as_bytes()).await.unwrap();
    let mut peer = RawPeer { reader, buf: Vec::new() };
    while !peer.buf.windows(4).any(|w| w == b"\r\n\r\n") {
        peer.read_more().await;
    }
    let head_end = peer.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(peer.buf.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&peer.buf));
    peer.buf.drain(..head_end);
    (peer, writer)
}

impl<R: AsyncRead + Unpin> RawPeer<R> {
    /// Appends what the stream has next; the server must not end the stream first.
    async fn read_more(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, self.reader.read(&mut chunk)).await.expect("a frame in time").unwrap();
        assert!(n > 0, "the server closed the TCP connection without a close frame");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next frame from the server: its opcode and payload.
    async fn next_frame(&mut self) -> (u8, Vec<u8>) {
        // Server frames are unmasked: FIN/opcode, length (7 bits, or 16 bits after 126).
        while self.buf.len() < 2 || (self.buf[1] & 0x7f == 126 && self.buf.len() < 4) {
            self.read_more().await;
        }
        let (len, start) = match self.buf[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4),
            127 => panic!("no frame here is that long"),
            n => (usize::from(n), 2),
        };
        while self.buf.len() < start + len {
            self.read_more().await;
        }
        let opcode = self.buf[0] & 0x0f;
        let payload = self.buf[start..start + len].to_vec();
        self.buf.drain(..start + len);
        (opcode, payload)
    }

    /// Reads up to the close frame: (pings seen before it, its code, its reason).
    async fn until_close_frame(&mut self) -> (usize, u16, String) {
        let mut pings = 0;
        loop {
            match self.next_frame().await {
                (0x9, _) => pings += 1,
                (0x8, payload) => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    return (pings, code, String::from_utf8_lossy(&payload[2..]).into_owned());
                }
                _ => {}
            }
        }
    }

    /// After the close frame: Ok when the server ended the stream cleanly (FIN) with
    /// nothing more, Err when the connection was reset.
    async fn clean_end(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, self.reader.read(&mut chunk)).await.expect("the end in time")?;
        assert_eq!(n, 0, "bytes after the close frame: {:?}", &chunk[..n]);
        Ok(())
    }
}

/// A WebSocket peer on a raw TCP stream that reads but never writes after the handshake,
/// so it answers no ping: returns (pings seen, the close frame's code and reason).
async fn read_until_closed_without_answering(addr: std::net::SocketAddr, path: &str) -> (usize, u16, String) {
    let (mut peer, _writer) = raw_peer(addr, path).await;
    peer.until_close_frame().await
}

/// A masked client frame header (FIN, `opcode`) announcing `len` bytes with a 64-bit length.
fn client_header_64(opcode: u8, len: u64) -> Vec<u8> {
    let mut header = vec![0x80 | opcode, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

#[tokio::test]
async fn a_peer_still_uploading_when_we_close_with_1009_reads_our_code_and_a_clean_end() {
    let sy = switchyard_with("[[routes]]\npath = \"/ws/\"\nmax_message_size = \"1KiB\"\n").await;
    let (mut peer, mut writer) = raw_peer(sy.plain_addrs[0], "/ws/").await;
    // Like a browser sending a big message: it keeps writing after our close frame is out.
    const LEN: usize = 1 << 20;
    let upload = tokio::spawn(async move {
        writer.write_all(&client_header_64(0x1, LEN as u64)).await?;
        for _ in 0..LEN / 16_384 {
            writer.write_all(&[b'x'; 16_384]).await?;
        }
        writer.shutdown().await
    });
    let (_, code, _) = peer.until_close_frame().await;
    assert_eq!(code, 1009);
    peer.clean_end().await.expect("the server ended the connection without a reset");
    upload.await.unwrap().expect("the upload was not cut off by a reset");
}

#[tokio::test]
async fn a_frame_length_with_the_top_bit_set_closes_with_1002() {
    let sy = switchyard_with(JSON_ROUTE).await;
    let (mut peer, mut writer) = raw_peer(sy.plain_addrs[0], "/ws/").await;
    writer.write_all(&client_header_64(0x1, 1 << 63)).await.unwrap();
    let (_, code, reason) = peer.until_close_frame().await;
    assert_eq!((code, reason.as_str()), (1002, "protocol error"));
}

#[tokio::test]
async fn silent_peer_is_closed_after_the_idle_timeout() {
    let sy =
        switchyard_with(&format!("[websocket]\nping_interval = \"100ms\"\nidle_timeout = \"500ms\"\n{JSON_ROUTE}"))
            .await;
    let started = std::time::Instant::now();
    let (pings, code, reason) = read_until_closed_without_answering(sy.plain_addrs[0], "/ws/").await;
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    assert!(pings >= 1, "closed for idleness without having pinged");
    assert!(started.elapsed() >= Duration::from_millis(500), "closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_peer_that_only_answers_pings_stays_open_past_the_idle_timeout() {
    use futures_util::StreamExt;
    let sy =
        switchyard_with(&format!("[websocket]\nping_interval = \"100ms\"\nidle_timeout = \"1s\"\n{JSON_ROUTE}")).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    // Nothing but the pongs tungstenite sends while reading, for three idle timeouts.
    let started = std::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let frame = tokio::time::timeout(PATIENCE, client.next()).await.expect("a ping in time");
        match frame.expect("the socket is open").expect("a readable frame") {
            Message::Ping(_) => pings += 1,
            other => panic!("only pings expected, got {other:?}"),
        }
    }
    assert!(pings >= 10, "only {pings} pings in 3 s at a 100 ms interval");
    assert_eq!(command(&mut client, json!({"id": 1, "ping": null})).await["ping"]["result"], "pong");
}

#[tokio::test]
async fn first_ping_waits_one_interval() {
    use futures_util::StreamExt;
    let sy = switchyard_with(&format!("[websocket]\nping_interval = \"400ms\"\n{JSON_ROUTE}")).await;
    // Measured from before the upgrade: the server's interval starts later, so a correct
    // server can never look early, however loaded the machine. Every frame is read here
    // (the helpers skip pings), so an early ping cannot hide before the welcome.
    let started = std::time::Instant::now();
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    let mut frames = Vec::new();
    let pinged_after = loop {
        let frame = tokio::time::timeout(PATIENCE, client.next()).await.expect("a frame in time");
        match frame.expect("the socket is open").expect("a readable frame") {
            Message::Ping(_) => break started.elapsed(),
            other => frames.push(other),
        }
    };
    assert_eq!(frames.len(), 1, "only the welcome comes before the first ping: {frames:?}");
    assert!(pinged_after >= Duration::from_millis(400), "first ping after {pinged_after:?}");
}
