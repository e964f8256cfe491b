//! Channels through real sockets: live delivery, recovery from `since`, `recovered: false`
//! when history cannot cover the gap, filters, rules, personal channels, presence.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use support::ws::*;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const ROUTE: &str = "[[routes]]\npath = \"/ws/\"\n";

/// Switchyard with one json route and `channels` (TOML) appended.
async fn switchyard_with(channels: &str) -> switchyard::server::Running {
    let config = format!("{}\n{ROUTE}\n{channels}", minimal_config("http://127.0.0.1:9", ""));
    start_switchyard(&config).await
}

/// `news`: anyone subscribes and publishes, 100 events kept.
const NEWS: &str = r#"
[[channels]]
pattern = "news"
subscribe = "anyone"
publish = "anyone"
history = { size = 100, ttl = "10m" }
"#;

async fn open(addr: SocketAddr) -> Client {
    let mut client = connect(addr, "/ws/").await;
    welcome(&mut client).await;
    client
}

async fn publish(client: &mut Client, channel: &str, n: i64) -> Value {
    let reply =
        command(client, json!({"id": "p", "publish": {"channel": channel, "event": "e", "data": {"n": n}}})).await;
    reply["publish"]["result"].clone()
}

async fn subscribe(client: &mut Client, args: Value) -> Value {
    command(client, json!({"id": "s", "subscribe": args})).await["subscribe"].clone()
}

/// The next `count` pushes: (offset, n).
async fn pushes(client: &mut Client, count: usize) -> Vec<(u64, i64)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let frame = next_json(client).await;
        if let Some(push) = frame.get("push") {
            seen.push((push["offset"].as_u64().unwrap(), push["data"]["n"].as_i64().unwrap()));
        }
    }
    seen
}

#[tokio::test]
async fn live_events_arrive_in_order_with_rising_offsets() {
    let sy = switchyard_with(NEWS).await;
    let mut reader = open(sy.plain_addrs[0]).await;
    let mut writer = open(sy.plain_addrs[0]).await;
    let joined = subscribe(&mut reader, json!("news")).await["result"].clone();
    assert_eq!(joined["offset"], 0);
    for n in 1..=5 {
        publish(&mut writer, "news", n).await;
    }
    assert_eq!(pushes(&mut reader, 5).await, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
}

#[tokio::test]
async fn the_subscribe_reply_comes_before_any_push_of_its_channel() {
    let sy = switchyard_with(NEWS).await;
    let mut writer = open(sy.plain_addrs[0]).await;
    let first = publish(&mut writer, "news", 1).await;
    publish(&mut writer, "news", 2).await;
    let mut reader = open(sy.plain_addrs[0]).await;
    let since = json!({"offset": 0, "epoch": first["epoch"]});
    let frame = json!({"id": 1, "subscribe": {"channel": "news", "since": since}});
    reader.send(Message::text(frame.to_string())).await.unwrap();
    let reply = next_json(&mut reader).await;
    assert_eq!(reply["subscribe"]["result"]["recovered"], true, "{reply}");
    assert_eq!(pushes(&mut reader, 2).await, [(1, 1), (2, 2)]);
}

#[tokio::test]
async fn a_reconnect_with_since_gets_every_missed_event_then_live_ones_without_duplicates() {
    let sy = switchyard_with(NEWS).await;
    let addr = sy.plain_addrs[0];
    let mut writer = open(addr).await;
    let mut reader = open(addr).await;
    subscribe(&mut reader, json!("news")).await;
    publish(&mut writer, "news", 1).await;
    let last = next_json(&mut reader).await["push"].clone();
    drop(reader);
    for n in 2..=4 {
        publish(&mut writer, "news", n).await;
    }
    let mut reader = open(addr).await;
    let since = json!({"offset": last["offset"], "epoch": last["epoch"]});
    let joined = subscribe(&mut reader, json!({"channel": "news", "since": since})).await;
    assert_eq!(joined["result"]["recovered"], true);
    assert_eq!(joined["result"]["offset"], 4);
    publish(&mut writer, "news", 5).await;
    assert_eq!(pushes(&mut reader, 4).await, [(2, 2), (3, 3), (4, 4), (5, 5)]);
}

#[tokio::test]
async fn a_gap_longer_than_history_is_not_recovered() {
    let short = NEWS.replace("size = 100", "size = 2");
    let sy = switchyard_with(&short).await;
    let mut writer = open(sy.plain_addrs[0]).await;
    let first = publish(&mut writer, "news", 1).await;
    for n in 2..=5 {
        publish(&mut writer, "news", n).await;
    }
    let mut reader = open(sy.plain_addrs[0]).await;
    let joined = subscribe(&mut reader, json!({"channel": "news", "since": first})).await;
    assert_eq!(joined["result"]["recovered"], false);
    assert_eq!(joined["result"]["offset"], 5);
}

#[tokio::test]
async fn history_older_than_its_ttl_is_not_recovered() {
    let brief = NEWS.replace("ttl = \"10m\"", "ttl = \"300ms\"");
    let sy = switchyard_with(&brief).await;
    let mut writer = open(sy.plain_addrs[0]).await;
    let first = publish(&mut writer, "news", 1).await;
    publish(&mut writer, "news", 2).await;
    let mut reader = open(sy.plain_addrs[0]).await;
    let since = json!({"channel": "news", "since": first});
    assert_eq!(subscribe(&mut reader, since.clone()).await["result"]["recovered"], true, "inside the TTL");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if subscribe(&mut reader, since.clone()).await["result"]["recovered"] == false {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "history outlived its TTL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn after_a_restart_the_epoch_is_new_and_old_positions_are_not_recovered() {
    let sy = switchyard_with(NEWS).await;
    let mut writer = open(sy.plain_addrs[0]).await;
    let before = publish(&mut writer, "news", 1).await;
    drop(writer);
    sy.shutdown(Duration::from_secs(5)).await;
    let sy = switchyard_with(NEWS).await;
    let mut reader = open(sy.plain_addrs[0]).await;
    let joined = subscribe(&mut reader, json!({"channel": "news", "since": before})).await["result"].clone();
    assert_eq!(joined["recovered"], false);
    assert_ne!(joined["epoch"], before["epoch"]);
}

#[tokio::test]
async fn a_channel_no_rule_allows_is_forbidden() {
    let sy = switchyard_with(NEWS).await;
    let mut client = open(sy.plain_addrs[0]).await;
    let reply = subscribe(&mut client, json!("secret")).await;
    assert_eq!(reply["error"]["code"], "forbidden");
    let reply = subscribe(&mut client, json!(["news", "secret"])).await;
    assert_eq!(reply["result"][0]["channel"], "news");
    assert_eq!(reply["result"][1]["error"]["code"], "forbidden");
}

#[tokio::test]
async fn publishing_is_refused_where_the_rule_says_nobody() {
    let sy = switchyard_with("[[channels]]\npattern = \"news\"\nsubscribe = \"anyone\"\n").await;
    let mut client = open(sy.plain_addrs[0]).await;
    let reply = command(&mut client, json!({"id": 1, "publish": {"channel": "news", "data": 1}})).await;
    assert_eq!(reply["publish"]["error"]["code"], "forbidden");
}

#[tokio::test]
async fn a_filter_lets_through_only_matching_events() {
    let sy = switchyard_with(NEWS).await;
    let mut reader = open(sy.plain_addrs[0]).await;
    let mut writer = open(sy.plain_addrs[0]).await;
    subscribe(&mut reader, json!({"channel": "news", "filter": {"n": {"in": [2, 4]}}})).await;
    for n in 1..=5 {
        publish(&mut writer, "news", n).await;
    }
    assert_eq!(pushes(&mut reader, 2).await, [(2, 2), (4, 4)]);
}

#[tokio::test]
async fn a_bad_filter_is_bad_args() {
    let sy = switchyard_with(NEWS).await;
    let mut client = open(sy.plain_addrs[0]).await;
    let reply = subscribe(&mut client, json!({"channel": "news", "filter": {"n": {"near": 3}}})).await;
    assert_eq!(reply["error"]["code"], "bad_args");
    let reply = subscribe(&mut client, json!({"channel": "news", "since": {"offset": "x"}})).await;
    assert_eq!(reply["error"]["code"], "bad_args");
}

#[tokio::test]
async fn a_personal_channel_is_forbidden_to_the_anonymous() {
    let sy = switchyard_with("[[channels]]\npattern = \"user:{user_id}\"\nsubscribe = \"authenticated\"\n").await;
    let mut client = open(sy.plain_addrs[0]).await;
    assert_eq!(subscribe(&mut client, json!("user:1")).await["error"]["code"], "forbidden");
}

#[tokio::test]
async fn history_returns_the_kept_events_after_since() {
    let sy = switchyard_with(NEWS).await;
    let mut client = open(sy.plain_addrs[0]).await;
    let first = publish(&mut client, "news", 1).await;
    publish(&mut client, "news", 2).await;
    let reply = command(&mut client, json!({"id": 1, "history": {"channel": "news", "since": first}})).await;
    let result = &reply["history"]["result"];
    assert_eq!(result["offset"], 2);
    assert_eq!(result["events"].as_array().unwrap().len(), 1);
    assert_eq!(result["events"][0]["data"]["n"], 2);
}

#[tokio::test]
async fn unsubscribing_stops_the_pushes() {
    let sy = switchyard_with(NEWS).await;
    let mut reader = open(sy.plain_addrs[0]).await;
    let mut writer = open(sy.plain_addrs[0]).await;
    subscribe(&mut reader, json!("news")).await;
    let reply = command(&mut reader, json!({"id": "u", "unsubscribe": "news"})).await;
    assert_eq!(reply["unsubscribe"]["result"], true);
    publish(&mut writer, "news", 1).await;
    // The next frame after a ping reply is the ping reply: no push came in between.
    assert_eq!(command(&mut reader, json!({"id": "after", "ping": null})).await["ping"]["result"], "pong");
    let reply = command(&mut reader, json!({"id": "u2", "unsubscribe": "news"})).await;
    assert_eq!(reply["unsubscribe"]["result"], false);
}

#[tokio::test]
async fn reserved_names_are_never_commands_even_under_a_catch_all_backend() {
    let config = format!(
        "{}\n{ROUTE}\n[backends]\nsecret_env = \"S\"\n[commands.\"*\"]\nbackend = \"http\"\nurl = \"http://127.0.0.1:9/{{command}}/\"\n",
        minimal_config("http://127.0.0.1:9", "")
    );
    let env: std::collections::HashMap<String, String> = [("S".to_string(), "x".to_string())].into();
    let config = switchyard::config::parse(&config, "t.toml", std::path::Path::new("."), &env).unwrap();
    let sy = switchyard::server::start(std::sync::Arc::new(config)).await.unwrap();
    let mut client = open(sy.plain_addrs[0]).await;
    let reply = command(&mut client, json!({"id": 1, "push": {}, "welcome": 1})).await;
    assert_eq!(reply["push"]["error"]["code"], "unknown_command");
    assert_eq!(reply["welcome"]["error"]["code"], "unknown_command");
}

/// Reconnects with `?resume=token` until the old socket has parked (it closes
/// asynchronously); gives the welcome and the socket.
async fn resume(addr: SocketAddr, token: &str) -> (Value, Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut client = connect(addr, &format!("/ws/?resume={token}")).await;
        let welcome = welcome(&mut client).await;
        if welcome["resumed"]["ok"] == true || tokio::time::Instant::now() > deadline {
            return (welcome, client);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_resume_token_restores_subscriptions_and_replays_what_was_missed() {
    let sy = switchyard_with(NEWS).await;
    let addr = sy.plain_addrs[0];
    let mut writer = open(addr).await;
    let mut reader = connect(addr, "/ws/").await;
    let token = welcome(&mut reader).await["resume"].as_str().unwrap().to_string();
    subscribe(&mut reader, json!("news")).await;
    publish(&mut writer, "news", 1).await;
    assert_eq!(pushes(&mut reader, 1).await, [(1, 1)]);
    drop(reader);
    publish(&mut writer, "news", 2).await;
    publish(&mut writer, "news", 3).await;
    let (welcome, mut reader) = resume(addr, &token).await;
    assert_eq!(welcome["resumed"]["ok"], true, "{welcome}");
    assert_eq!(welcome["resumed"]["channels"][0]["recovered"], true, "{welcome}");
    assert_eq!(welcome["resume_ttl"], 300);
    assert_ne!(welcome["resume"], token.as_str(), "a new token for the new socket");
    publish(&mut writer, "news", 4).await;
    assert_eq!(pushes(&mut reader, 3).await, [(2, 2), (3, 3), (4, 4)]);
}

#[tokio::test]
async fn a_resume_token_works_once() {
    let sy = switchyard_with(NEWS).await;
    let addr = sy.plain_addrs[0];
    let mut first = connect(addr, "/ws/").await;
    let token = welcome(&mut first).await["resume"].as_str().unwrap().to_string();
    subscribe(&mut first, json!("news")).await;
    drop(first);
    let (greeting, second) = resume(addr, &token).await;
    assert_eq!(greeting["resumed"]["ok"], true);
    drop(second);
    let mut third = connect(addr, &format!("/ws/?resume={token}")).await;
    assert_eq!(welcome(&mut third).await["resumed"]["ok"], false);
}
