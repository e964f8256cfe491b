//! A reader that stops reading, under each slow-reader policy, against the real binary and
//! through real sockets: Django keeps publishing (the admin API) past what the reader's
//! queue and the kernel hold, the server's peak RSS stays bounded, and once the reader
//! reads again the policy shows on the wire: everything it was sent, then the 4008 close
//! (`disconnect`); every missing offset reported in a `lost` frame (`drop_oldest`); only
//! the newest events, none reported lost (`latest`).
//!
//! Cheap on purpose: the socket's queue is small (these tests are about
//! `[websocket] outbox_messages` / `outbox_bytes`), the reader asks for a small receive
//! buffer (`SO_RCVBUF` before connecting, so the kernel holds little), events go in batches
//! of one admin request, and publishing stops when `/metrics` shows the policy applied,
//! plus a fixed overshoot for the memory check.

mod support;

use std::net::SocketAddr;

use http::Request;
use serde_json::{json, Value};
use support::ws::*;
use support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// One event's padding: a few fit in the queue, many fit in one admin request.
const EVENT_BYTES: usize = 8 << 10;
/// Events per admin request (256 KiB of padding).
const BATCH: usize = 32;
/// The socket's queue bounds under test.
const OUTBOX_MESSAGES: usize = 16;
const OUTBOX_BYTES: &str = "64KiB";
/// The reader's receive buffer (the kernel doubles it): the kernel then holds little.
const READER_RCVBUF: u32 = 8 << 10;
/// Publishing stops with a failure if the policy has not applied after this many events
/// (32 MiB): the queue and the kernel hold far less.
const MAX_EVENTS_BEFORE_POLICY: usize = 4096;
/// Events published after the policy applied, for the memory check (8 MiB).
const OVERSHOOT: usize = 1024;
/// Peak RSS growth allowed: the queue, tungstenite's write buffer, one admin request's body
/// and its parsed JSON, allocator slack. Holding the overshoot alone would exceed it.
const ALLOWED_GROWTH_KIB: u64 = 4 << 10;
const KEY: &str = "slow-reader-admin-key";

type Reader = WebSocketStream<TcpStream>;

/// A flooded reader and what keeps its server alive (bind every field: `..` would drop
/// the server there and then).
struct Flood {
    reader: Reader,
    /// Events published (offsets 1..=published).
    published: u64,
    _sy: binary::Process,
    _dir: tempfile::TempDir,
}

fn config(policy: &str) -> String {
    format!(
        r#"{base}
[admin]
listen = "127.0.0.1:0"
key_file = "admin-key"
[websocket]
outbox_messages = {OUTBOX_MESSAGES}
outbox_bytes = "{OUTBOX_BYTES}"
[[routes]]
path = "/ws/"
[[channels]]
pattern = "firehose"
subscribe = "anyone"
slow_reader = "{policy}"
"#,
        base = minimal_config("http://127.0.0.1:9", "")
    )
}

/// Opens `/ws/` over a socket with a small receive buffer, reads the welcome, subscribes.
async fn subscribed_reader(addr: SocketAddr) -> Reader {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(READER_RCVBUF).unwrap();
    let stream = socket.connect(addr).await.expect("connects");
    let mut request = format!("ws://{addr}/ws/").into_client_request().unwrap();
    request.headers_mut().insert("origin", format!("http://{addr}").parse().unwrap());
    let (mut reader, _) = tokio_tungstenite::client_async(request, stream).await.expect("upgrade accepted");
    welcome(&mut reader).await;
    let reply = command(&mut reader, json!({"id": "s", "subscribe": "firehose"})).await;
    assert_eq!(reply["subscribe"]["result"]["offset"], 0, "{reply}");
    reader
}

/// Publishes `count` events to `firehose` in one admin request, numbered from `first`
/// (the body is written by hand: serialising megabytes through `serde_json` in a debug
/// build costs seconds).
async fn publish(admin: SocketAddr, first: u64, count: usize) {
    let pad = "x".repeat(EVENT_BYTES);
    let items: Vec<String> = (first..first + count as u64)
        .map(|n| format!(r#"{{"channel":"firehose","data":{{"n":{n},"pad":"{pad}"}}}}"#))
        .collect();
    let request = Request::post(url(admin, "/api/publish"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(bytes_body(format!("[{}]", items.join(","))))
        .unwrap();
    let response = client().request(request).await.expect("the admin API answers");
    assert_eq!(response.status(), 200);
}

/// A counter's value in the node's `/metrics`, e.g. `slow_reader_closes` for `disconnect`.
async fn counter(admin: SocketAddr, name: &str, policy: Option<&str>) -> u64 {
    let response = client().get(url(admin, "/metrics").parse().unwrap()).await.expect("metrics answer");
    let text = String::from_utf8(read_body(response).await.to_vec()).unwrap();
    let labels = policy.map(|p| format!("{{policy=\"{p}\"}}")).unwrap_or_default();
    let series = format!("switchyard_{name}_total{labels} ");
    let line = text.lines().find_map(|l| l.strip_prefix(series.as_str()));
    line.unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}")).trim().parse().unwrap()
}

/// Starts the binary, subscribes a reader that then reads nothing, and publishes until
/// `metric` shows the policy applied, then `overshoot` more events; checks the peak RSS.
async fn flood(policy: &str, metric: &str, overshoot: usize) -> Flood {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin-key"), KEY).unwrap();
    let sy = binary::spawn(dir.path(), &config(policy));
    let admin = sy.admin.expect("the admin listener is bound");
    let reader = subscribed_reader(sy.plain[0]).await;
    let (_, baseline) = binary::memory_kib(sy.child.id());
    // One event first, written to the socket before the flood: the reader has something
    // to read before the policy applies (a flood could fill the queue before the write
    // loop takes anything).
    let written = counter(admin, "messages_out", None).await;
    publish(admin, 1, 1).await;
    eventually("the first event is written", || async { counter(admin, "messages_out", None).await > written }).await;
    let mut published = 1;
    while counter(admin, metric, Some(policy)).await == 0 {
        assert!(published < MAX_EVENTS_BEFORE_POLICY, "{policy}: not applied after {published} events");
        publish(admin, published as u64 + 1, BATCH).await;
        published += BATCH;
    }
    let applied_at = published;
    while published < applied_at + overshoot {
        publish(admin, published as u64 + 1, BATCH).await;
        published += BATCH;
    }
    let (rss, peak) = binary::memory_kib(sy.child.id());
    println!("{policy}: applied within {applied_at} events, {published} published; peak {baseline} → {peak} KiB, now {rss} KiB");
    let growth = peak.saturating_sub(baseline);
    assert!(growth < ALLOWED_GROWTH_KIB, "{policy}: peak RSS grew by {growth} KiB");
    Flood { reader, published: published as u64, _sy: sy, _dir: dir }
}

fn offset(frame: &Value) -> Option<u64> {
    frame["push"]["offset"].as_u64()
}

#[tokio::test]
async fn disconnect_closes_with_4008_after_the_data_already_sent_and_memory_stays_bounded() {
    // No overshoot: the reader must read again within the server's close handshake (5 s).
    let Flood { mut reader, published, _sy, _dir } = flood("disconnect", "slow_reader_closes", 0).await;
    let mut next = 1;
    let close = loop {
        match next_message(&mut reader).await {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(offset(&frame), Some(next), "events arrive in order, none missing: {frame:.80}");
                next += 1;
            }
            Message::Close(frame) => break frame.expect("a close frame with a code"),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!((u16::from(close.code), close.reason.as_str()), (4008, "slow reader: too much queued"));
    assert!(next > 1, "the close came before any event");
    assert!(next <= published, "every event reached the reader: it was not cut off");
}

#[tokio::test]
async fn drop_oldest_reports_every_dropped_offset_as_lost_and_memory_stays_bounded() {
    let Flood { mut reader, published, _sy, _dir } = flood("drop_oldest", "dropped_events", OVERSHOOT).await;
    // Every offset up to the last is either received or inside a `lost` range that
    // arrived before any later event.
    let (mut next, mut lost_events) = (1, 0);
    while next <= published {
        let frame = next_json(&mut reader).await;
        if let Some(range) = frame.get("lost") {
            let (from, to) = (range["from"].as_u64().unwrap(), range["to"].as_u64().unwrap());
            assert_eq!(from, next, "a lost range starts where the events stopped: {range}");
            assert!(to >= from, "{range}");
            (next, lost_events) = (to + 1, lost_events + to - from + 1);
        } else if let Some(n) = offset(&frame) {
            assert_eq!(n, next, "an event went missing without a lost frame");
            next += 1;
        }
    }
    assert!(lost_events > 0, "nothing was dropped");
    assert_eq!(next, published + 1, "the newest event arrived");
}

#[tokio::test]
async fn latest_keeps_only_the_newest_events_and_memory_stays_bounded() {
    let Flood { mut reader, published, _sy, _dir } = flood("latest", "dropped_events", OVERSHOOT).await;
    let (mut last, mut seen) = (0, 0);
    while last < published {
        let frame = next_json(&mut reader).await;
        assert!(frame.get("lost").is_none(), "latest reports no loss: {frame}");
        if let Some(n) = offset(&frame) {
            assert!(n > last, "offsets rise");
            (last, seen) = (n, seen + 1);
        }
    }
    assert_eq!(last, published, "the newest event arrived");
    assert!(seen < published, "nothing was superseded: {seen} of {published} arrived");
}
