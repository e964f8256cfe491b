//! A reader that stops reading, under each slow-reader policy, against the real binary:
//! the server's RSS stays bounded while a writer publishes far more than any queue holds,
//! and the policy shows on the wire (4008, a `lost` frame, only the newest events).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::ws::*;
use support::*;

/// Events published while the reader does not read: 1000 × 32 KiB = 32 MiB, far past the
/// socket's 1 MiB queue and the kernel's buffers (a few MiB each way on loopback).
const EVENTS: usize = 1000;
const EVENT_BYTES: usize = 32 << 10;
/// Peak RSS growth allowed: the queue (1 MiB), tungstenite's write buffer, allocator slack.
const ALLOWED_GROWTH_KIB: u64 = 16 << 10;

fn config(policy: &str) -> String {
    format!(
        "{}\n[[routes]]\npath = \"/ws/\"\n[[channels]]\npattern = \"firehose\"\nsubscribe = \"anyone\"\npublish = \"anyone\"\nslow_reader = \"{policy}\"\n",
        minimal_config("http://127.0.0.1:9", "")
    )
}

/// Starts the binary, subscribes a reader that then stops reading, publishes `EVENTS`
/// events from another socket, and checks the peak RSS; gives the reader to inspect.
async fn flood(policy: &str) -> (Client, tempfile::TempDir, binary::Process) {
    let dir = tempfile::tempdir().unwrap();
    let sy = binary::spawn(dir.path(), &config(policy));
    let addr = sy.plain[0];
    let mut reader = connect(addr, "/ws/").await;
    welcome(&mut reader).await;
    command(&mut reader, json!({"id": "s", "subscribe": "firehose"})).await;
    let mut writer = connect(addr, "/ws/").await;
    welcome(&mut writer).await;
    let payload = "x".repeat(EVENT_BYTES);
    let (_, baseline) = binary::memory_kib(sy.child.id());
    for n in 0..EVENTS {
        let reply = command(
            &mut writer,
            json!({"id": n, "publish": {"channel": "firehose", "data": {"n": n, "pad": payload}}}),
        )
        .await;
        assert!(reply["publish"]["result"]["offset"].is_u64(), "{reply}");
    }
    let (rss, peak) = binary::memory_kib(sy.child.id());
    println!("{policy}: baseline peak {baseline} KiB, peak after {EVENTS} events {peak} KiB, now {rss} KiB");
    assert!(peak.saturating_sub(baseline) < ALLOWED_GROWTH_KIB, "{policy}: peak RSS grew by {} KiB", peak - baseline);
    (reader, dir, sy)
}

fn offset(frame: &Value) -> Option<u64> {
    frame["push"]["offset"].as_u64()
}

#[tokio::test]
async fn disconnect_cuts_the_reader_off_and_memory_stays_bounded() {
    let (mut reader, _dir, _sy) = flood("disconnect").await;
    // The 4008 close frame waits behind what the kernel holds for a reader that is not
    // reading, so the server's bounded close handshake may end in a reset instead; either
    // way the socket ends before the flood's last event (the 4008 itself is checked by the
    // hub's tests and `tests/channels.rs`).
    let mut pushes = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), futures_util::StreamExt::next(&mut reader)).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))) => pushes += 1,
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(4008));
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("the slow reader was never cut off"),
        }
    }
    assert!(pushes < EVENTS, "every event reached the slow reader: it was not cut off");
}

#[tokio::test]
async fn drop_oldest_reports_the_lost_range_and_memory_stays_bounded() {
    let (mut reader, _dir, _sy) = flood("drop_oldest").await;
    let mut lost = None;
    let mut last = 0;
    while last < EVENTS as u64 {
        let frame = tokio::time::timeout(Duration::from_secs(30), next_json(&mut reader)).await.expect("frames flow");
        if let Some(range) = frame.get("lost") {
            lost.get_or_insert_with(|| range.clone());
        }
        last = offset(&frame).unwrap_or(last);
    }
    let lost = lost.expect("a lost frame");
    assert!(lost["from"].as_u64().unwrap() <= lost["to"].as_u64().unwrap(), "{lost}");
}

#[tokio::test]
async fn latest_keeps_the_newest_event_and_memory_stays_bounded() {
    let (mut reader, _dir, _sy) = flood("latest").await;
    let mut seen = 0;
    let mut last = 0;
    while last < EVENTS as u64 {
        let frame = tokio::time::timeout(Duration::from_secs(30), next_json(&mut reader)).await.expect("frames flow");
        if let Some(n) = offset(&frame) {
            assert!(n > last, "offsets rise");
            (last, seen) = (n, seen + 1);
        }
    }
    assert!(seen < EVENTS, "nothing was superseded: {seen} of {EVENTS} arrived");
}
