//! The PostgreSQL broker end to end: two Switchyard processes on one PostgreSQL cluster,
//! events written with plain SQL inside transactions as the Django app writes them
//! (docs/outbox.md), subscribers on real sockets. Each test has a database of its own; the
//! ones that stop PostgreSQL have a cluster of their own.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use support::binary::{self, Process};
use support::pg::{self, FreshDatabase};
use support::ws::*;

/// How long a node may take to connect to PostgreSQL and listen.
const READY: Duration = Duration::from_secs(30);

/// `news` keeps 1000 events; anyone subscribes.
const NEWS: &str = r#"
[[channels]]
pattern = "news"
subscribe = "anyone"
history = { size = 1000, ttl = "10m" }
"#;

/// A node's config: one json route, `channels`, the outbox in `database`.
fn node_config(database: &str, channels: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"/ws/\"\n{channels}\n[broker]\ndatabase = \"{database}\"\n"
    )
}

/// One Switchyard process, listening to the outbox.
struct Node {
    process: Process,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(database: &str, channels: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let process = binary::spawn(dir.path(), &node_config(database, channels));
        binary::wait_for_line(&process.lines, "broker listening", READY);
        Node { process, _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        self.process.plain[0]
    }
}

/// Two nodes on `database`.
fn two_nodes(database: &str, channels: &str) -> [Node; 2] {
    [Node::start(database, channels), Node::start(database, channels)]
}

async fn open(addr: SocketAddr) -> Client {
    let mut client = connect(addr, "/ws/").await;
    welcome(&mut client).await;
    client
}

async fn subscribe(client: &mut Client, args: Value) -> Value {
    let reply = command(client, json!({"id": "s", "subscribe": args})).await;
    reply["subscribe"]["result"].clone()
}

/// The next `count` pushes, as their `push` objects.
async fn pushes(client: &mut Client, count: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let frame = next_json(client).await;
        if let Some(push) = frame.get("push") {
            seen.push(push.clone());
        }
    }
    seen
}

/// (offset, data) of each push.
fn numbered(pushes: &[Value]) -> Vec<(u64, Value)> {
    pushes.iter().map(|p| (p["offset"].as_u64().unwrap(), p["data"].clone())).collect()
}

/// Inserts `rows` (channel, data) in one transaction, then commits or rolls back.
async fn write(db: &mut tokio_postgres::Client, rows: &[(&str, Value)], commit: bool) {
    let tx = db.transaction().await.unwrap();
    for (channel, data) in rows {
        insert(&tx, channel, data).await;
    }
    if commit {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
}

/// The INSERT docs/outbox.md tells writers to run.
async fn insert(tx: &tokio_postgres::Transaction<'_>, channel: &str, data: &Value) {
    let sql = "INSERT INTO switchyard_outbox (kind, channel, event, data) VALUES ('channel', $1, 'e', $2::text::json)";
    tx.execute(sql, &[&channel, &data.to_string()]).await.unwrap();
}

#[tokio::test]
async fn an_event_whose_transaction_rolls_back_reaches_no_one() {
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, NEWS);
    let mut readers = [open(nodes[0].addr()).await, open(nodes[1].addr()).await];
    for reader in &mut readers {
        subscribe(reader, json!("news")).await;
    }
    let mut writer = pg::connect(&db.url).await;
    write(&mut writer, &[("news", json!({"n": "rolled back"}))], false).await;
    write(&mut writer, &[("news", json!({"n": "committed"}))], true).await;
    for reader in &mut readers {
        let first = numbered(&pushes(reader, 1).await);
        assert_eq!(first, [(1, json!({"n": "committed"}))], "the rolled-back event took no offset and was not sent");
    }
}

#[tokio::test]
async fn committed_events_reach_both_nodes_in_the_same_order_with_equal_offsets() {
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, NEWS);
    let mut readers = [open(nodes[0].addr()).await, open(nodes[1].addr()).await];
    for reader in &mut readers {
        subscribe(reader, json!("news")).await;
    }
    let (mut early, mut late) = (pg::connect(&db.url).await, pg::connect(&db.url).await);
    // The first transaction writes first and commits last: commit order decides.
    let first = early.transaction().await.unwrap();
    insert(&first, "news", &json!({"n": "written first, committed last"})).await;
    write(&mut late, &[("news", json!({"n": 1})), ("news", json!({"n": 2}))], true).await;
    first.commit().await.unwrap();
    write(&mut late, &[("news", json!({"n": 3}))], true).await;
    let expected = vec![
        (1, json!({"n": 1})),
        (2, json!({"n": 2})),
        (3, json!({"n": "written first, committed last"})),
        (4, json!({"n": 3})),
    ];
    for reader in &mut readers {
        assert_eq!(numbered(&pushes(reader, 4).await), expected);
    }
}

#[tokio::test]
async fn a_100_kb_payload_arrives_whole_on_both_nodes() {
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, NEWS);
    let mut readers = [open(nodes[0].addr()).await, open(nodes[1].addr()).await];
    for reader in &mut readers {
        subscribe(reader, json!("news")).await;
    }
    let big = json!({"text": "x".repeat(100 * 1024), "after": "the end"});
    let mut writer = pg::connect(&db.url).await;
    write(&mut writer, &[("news", big.clone()), ("news", json!({"small": true}))], true).await;
    for reader in &mut readers {
        assert_eq!(numbered(&pushes(reader, 2).await), [(1, big.clone()), (2, json!({"small": true}))]);
    }
}
