//! WebSocket termination: routes, handshake refusals, the JSON protocol's built-ins and bad
//! input, echo and broadcast routes, limits and close codes. Real sockets, real client.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use support::ws::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let mut a = connect(sy.plain_addrs[0], "/room/").await;
    let mut b = connect(sy.plain_addrs[0], "/room/").await;
    // Both are registered once each has been answered: a round trip on each proves it.
    a.send(Message::text("from a")).await.unwrap();
    assert_eq!(next_message(&mut a).await, Message::text("from a"));
    assert_eq!(next_message(&mut b).await, Message::text("from a"));
    b.send(Message::text("from b")).await.unwrap();
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
    let mut retry = None;
    for _ in 0..50 {
        if let Ok(c) = connect_with(addr, "/ws/", &[("origin", origin.as_str())]).await {
            retry = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(retry.is_some(), "the slot was not released");
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

#[tokio::test]
async fn silent_peer_is_closed_after_the_idle_timeout() {
    let sy = switchyard_with(&format!("[websocket]\nping_interval = \"50ms\"\nidle_timeout = \"300ms\"\n{JSON_ROUTE}"))
        .await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    // Not reading means not answering pings; the server must give up on us.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(closed(&mut client).await, (1001, "idle timeout".to_string()));
}

#[tokio::test]
async fn reading_peer_answers_pings_and_stays_open() {
    let sy = switchyard_with(&format!("[websocket]\nping_interval = \"50ms\"\nidle_timeout = \"300ms\"\n{JSON_ROUTE}"))
        .await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(command(&mut client, json!({"id": i, "ping": null})).await["ping"]["result"], "pong");
    }
}

#[tokio::test]
async fn first_ping_waits_one_interval() {
    use futures_util::StreamExt;
    let sy = switchyard_with(&format!("[websocket]\nping_interval = \"400ms\"\n{JSON_ROUTE}")).await;
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    let early = tokio::time::timeout(Duration::from_millis(250), client.next()).await;
    assert!(early.is_err(), "a frame came before the first interval: {early:?}");
    let ping = tokio::time::timeout(Duration::from_secs(2), client.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(ping, Message::Ping(_)), "{ping:?}");
}
