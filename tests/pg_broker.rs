//! The PostgreSQL broker end to end: two Switchyard processes on one PostgreSQL cluster,
//! events written with plain SQL inside transactions as the Django app writes them
//! (docs/outbox.md), subscribers on real sockets. Each test has a database of its own; the
//! ones that stop PostgreSQL have a cluster of their own.

mod support;

use std::collections::HashMap;
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

// === many publishers, reconnecting subscribers ===

/// `c:*` keeps enough history to recover any reconnect; `tiny:*` keeps 3 events, so a
/// subscriber away for longer must be told `recovered: false`.
const STRESS: &str = r#"
[[channels]]
pattern = "c:*"
subscribe = "anyone"
history = { size = 10000, ttl = "10m" }
[[channels]]
pattern = "tiny:*"
subscribe = "anyone"
history = { size = 3, ttl = "10m" }
"#;
const STRESS_CHANNELS: [&str; 3] = ["c:a", "c:b", "tiny:x"];
const PUBLISHERS: u64 = 8;
const TRANSACTIONS: u64 = 40;
const SUBSCRIBERS: u64 = 6;

/// A small deterministic generator (xorshift64*), seeded per task so a failure replays.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// One publisher: `TRANSACTIONS` transactions of 1–3 rows on random channels; one in ten
/// rolls back; the first few of publishers 0 and 1 stay open until ten later transactions
/// have committed.
async fn publisher(url: String, worker: u64, commits: tokio::sync::watch::Sender<u64>) -> u64 {
    let mut db = pg::connect(&url).await;
    let mut rng = Rng::new(worker + 1);
    let mut held_past = 0;
    for t in 0..TRANSACTIONS {
        let tx = db.transaction().await.unwrap();
        for r in 0..=rng.below(3) {
            let channel = STRESS_CHANNELS[rng.below(3) as usize];
            insert(&tx, channel, &json!({"w": worker, "t": t, "r": r})).await;
        }
        if worker < 2 && t < 4 {
            let mut seen = commits.subscribe();
            let target = *seen.borrow() + 10;
            let overtaken = tokio::time::timeout(support::PATIENCE, seen.wait_for(|c| *c >= target)).await;
            assert!(overtaken.is_ok(), "later transactions did not commit while one was held open");
            held_past += 1;
        }
        if rng.below(10) == 0 {
            tx.rollback().await.unwrap();
        } else {
            tx.commit().await.unwrap();
            commits.send_modify(|c| *c += 1);
        }
    }
    held_past
}

/// What one subscriber saw on one channel.
#[derive(Default)]
struct Seen {
    /// The last position it has (from a push, or the subscribe reply when it did not recover).
    last: Option<(u64, String)>,
    /// Every push: (offset, data).
    pushes: Vec<(u64, Value)>,
    /// Times it was told `recovered: false`.
    lost: usize,
}

/// One subscriber: joins every stress channel, reads a few pushes, drops the socket (now and
/// then staying away until ten transactions have committed), reconnects to the other node
/// with `since`, and checks every push against what the protocol promises: the next offset
/// of the run it joined, never a gap, never twice. Ends once it holds every channel's final
/// offset.
async fn subscriber(
    nodes: [SocketAddr; 2],
    index: u64,
    commits: tokio::sync::watch::Receiver<u64>,
    mut finals: tokio::sync::watch::Receiver<Option<HashMap<String, u64>>>,
) -> HashMap<String, Seen> {
    let mut rng = Rng::new(100 + index);
    let mut seen: HashMap<String, Seen> = STRESS_CHANNELS.iter().map(|c| (c.to_string(), Seen::default())).collect();
    type Finals = tokio::sync::watch::Receiver<Option<HashMap<String, u64>>>;
    let done = |finals: &Finals, seen: &HashMap<String, Seen>| {
        finals
            .borrow()
            .as_ref()
            .is_some_and(|f| f.iter().all(|(c, last)| seen[c].last.as_ref().map(|l| l.0) == Some(*last)))
    };
    for round in 0.. {
        let mut client = open(nodes[((index + round) % 2) as usize]).await;
        let wanted: Vec<Value> = STRESS_CHANNELS
            .iter()
            .map(|c| match &seen[*c].last {
                Some((offset, epoch)) => json!({"channel": c, "since": {"offset": offset, "epoch": epoch}}),
                None => json!(c),
            })
            .collect();
        let results = subscribe(&mut client, Value::Array(wanted)).await;
        let mut next: HashMap<String, (u64, String)> = HashMap::new();
        for (channel, result) in STRESS_CHANNELS.iter().zip(results.as_array().expect("one result per channel")) {
            let s = seen.get_mut(*channel).unwrap();
            let (offset, epoch) = (result["offset"].as_u64().unwrap(), result["epoch"].as_str().unwrap().to_string());
            if result["recovered"] == json!(true) {
                let (since, since_epoch) = s.last.clone().unwrap();
                assert_eq!(epoch, since_epoch, "a recovered channel keeps its epoch");
                assert!(offset >= since, "joined behind the client's own position");
                next.insert(channel.to_string(), (since + 1, epoch));
            } else {
                s.lost += usize::from(result["recovered"] == json!(false));
                s.last = Some((offset, epoch.clone()));
                next.insert(channel.to_string(), (offset + 1, epoch));
            }
        }
        let stay = 5 + rng.below(25);
        let mut read = 0;
        while read < stay && !done(&finals, &seen) {
            let frame = tokio::select! {
                frame = next_json(&mut client) => frame,
                // The publishers finished: look again whether this is all there is.
                _ = finals.changed() => continue,
            };
            let Some(push) = frame.get("push") else { continue };
            let channel = push["channel"].as_str().unwrap();
            let (offset, epoch) = (push["offset"].as_u64().unwrap(), push["epoch"].as_str().unwrap());
            let expected = next.get_mut(channel).unwrap();
            assert_eq!(
                (offset, epoch),
                (expected.0, expected.1.as_str()),
                "subscriber {index}, {channel}: a gap or a repeat"
            );
            expected.0 += 1;
            let s = seen.get_mut(channel).unwrap();
            s.pushes.push((offset, push["data"].clone()));
            s.last = Some((offset, epoch.to_string()));
            read += 1;
        }
        if done(&finals, &seen) {
            return seen;
        }
        drop(client);
        if round % 3 == 2 && finals.borrow().is_none() {
            // Stay away while ten transactions commit (or the publishers finish).
            let mut commits = commits.clone();
            let target = *commits.borrow() + 10;
            tokio::select! {
                _ = commits.wait_for(|c| *c >= target) => {}
                _ = finals.changed() => {}
            }
        }
    }
    unreachable!()
}

/// Every committed channel event: (channel, offset) → data, from the table.
async fn committed(url: &str) -> HashMap<(String, u64), Value> {
    let db = pg::connect(url).await;
    let rows = db
        .query(
            "SELECT s.channel, s.\"offset\", o.data::text FROM switchyard_outbox_stamps s \
             JOIN switchyard_outbox o ON o.id = s.id WHERE s.channel IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let (channel, offset, data): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
            ((channel, offset as u64), serde_json::from_str(&data).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overlapping_publishers_never_leave_a_reconnecting_subscriber_a_gap() {
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, STRESS);
    let addrs = [nodes[0].addr(), nodes[1].addr()];
    let (commits, commits_rx) = tokio::sync::watch::channel(0u64);
    let (finals_tx, finals) = tokio::sync::watch::channel(None);
    let subscribers: Vec<_> =
        (0..SUBSCRIBERS).map(|i| tokio::spawn(subscriber(addrs, i, commits_rx.clone(), finals.clone()))).collect();
    let publishers: Vec<_> =
        (0..PUBLISHERS).map(|w| tokio::spawn(publisher(db.url.clone(), w, commits.clone()))).collect();
    let mut held = 0;
    for p in publishers {
        held += p.await.unwrap();
    }
    assert_eq!(held, 8, "transactions were held open while later ones committed");
    let table = committed(&db.url).await;
    let mut last: HashMap<String, u64> = HashMap::new();
    for (channel, offset) in table.keys() {
        let top = last.entry(channel.clone()).or_default();
        *top = (*top).max(*offset);
    }
    for channel in STRESS_CHANNELS {
        let top = last.get(channel).copied().unwrap_or(0);
        assert!(
            (1..=top).all(|o| table.contains_key(&(channel.to_string(), o))),
            "{channel}: offsets 1..{top} without gaps"
        );
    }
    finals_tx.send_replace(Some(last));
    let mut lost = 0;
    for (i, s) in subscribers.into_iter().enumerate() {
        let seen = tokio::time::timeout(support::PATIENCE * 3, s).await.expect("the subscriber caught up").unwrap();
        for (channel, s) in &seen {
            for (offset, data) in &s.pushes {
                assert_eq!(table.get(&(channel.clone(), *offset)), Some(data), "subscriber {i}, {channel}@{offset}");
            }
            lost += s.lost;
        }
    }
    assert!(lost > 0, "some reconnect missed more than tiny:x keeps (the recovered: false path ran)");
}

// === lost connections ===

/// Publishes `news` events `from..=to`, one transaction each.
async fn publish_range(db: &mut tokio_postgres::Client, from: u64, to: u64) {
    for n in from..=to {
        write(db, &[("news", json!({"n": n}))], true).await;
    }
}

/// Reads `news` pushes until `n` = `to`, checking they are `from..=to` with offsets equal to `n`.
async fn expect_range(reader: &mut Client, from: u64, to: u64) {
    let got = numbered(&pushes(reader, (to - from + 1) as usize).await);
    let want: Vec<(u64, Value)> = (from..=to).map(|n| (n, json!({"n": n}))).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_killed_listen_connection_reconnects_and_loses_nothing() {
    // Its own database: the kill names only this database's listeners.
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, NEWS);
    let mut readers = [open(nodes[0].addr()).await, open(nodes[1].addr()).await];
    for reader in &mut readers {
        subscribe(reader, json!("news")).await;
    }
    let mut writer = pg::connect(&db.url).await;
    publish_range(&mut writer, 1, 50).await;
    let killed = writer
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'switchyard listener'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 2, "each node has one listen connection");
    // Committed while both nodes are reconnecting: they must read these from the table.
    publish_range(&mut writer, 51, 100).await;
    for node in &nodes {
        binary::wait_for_line(&node.process.lines, "broker listening", READY);
    }
    publish_range(&mut writer, 101, 120).await;
    for reader in &mut readers {
        expect_range(reader, 1, 120).await;
    }
}

#[tokio::test]
async fn after_a_postgresql_restart_both_nodes_reconnect_and_catch_up() {
    // Its own cluster: stopping it disturbs no other test.
    let cluster = pg::OwnCluster::start();
    let db = FreshDatabase::on(&cluster.url).await;
    let nodes = two_nodes(&db.url, NEWS);
    let mut readers = [open(nodes[0].addr()).await, open(nodes[1].addr()).await];
    for reader in &mut readers {
        subscribe(reader, json!("news")).await;
    }
    let mut writer = pg::connect(&db.url).await;
    publish_range(&mut writer, 1, 30).await;
    for reader in &mut readers {
        expect_range(reader, 1, 30).await;
    }
    cluster.halt();
    cluster.resume();
    // Written before the nodes are back (their backoff is at least 100 ms): read from the table.
    let mut writer = pg::connect(&db.url).await;
    publish_range(&mut writer, 31, 60).await;
    for node in &nodes {
        binary::wait_for_line(&node.process.lines, "broker listening", READY);
    }
    publish_range(&mut writer, 61, 70).await;
    for reader in &mut readers {
        expect_range(reader, 31, 70).await;
    }
}

#[tokio::test]
async fn while_postgresql_is_down_sockets_stay_open_and_history_answers() {
    let cluster = pg::OwnCluster::start();
    let db = FreshDatabase::on(&cluster.url).await;
    let node = Node::start(&db.url, NEWS);
    let mut reader = open(node.addr()).await;
    subscribe(&mut reader, json!("news")).await;
    let mut writer = pg::connect(&db.url).await;
    publish_range(&mut writer, 1, 5).await;
    expect_range(&mut reader, 1, 5).await;
    cluster.halt();
    binary::wait_for_line(&node.process.lines, "outbox listener disconnected", READY);
    let pong = command(&mut reader, json!({"id": 1, "ping": null})).await;
    assert_eq!(pong["ping"]["result"], "pong", "the socket is served");
    let history = command(&mut reader, json!({"id": 2, "history": {"channel": "news"}})).await;
    let events = history["history"]["result"]["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 5, "history kept in memory: {history}");
    let mut late = open(node.addr()).await;
    let joined = subscribe(&mut late, json!("news")).await;
    assert_eq!(joined["offset"], 5, "a channel the node holds is joined without the database");
    cluster.resume();
    binary::wait_for_line(&node.process.lines, "broker listening", READY);
    let mut writer = pg::connect(&db.url).await;
    publish_range(&mut writer, 6, 8).await;
    expect_range(&mut reader, 6, 8).await;
    expect_range(&mut late, 6, 8).await;
}

#[tokio::test]
async fn a_restarted_node_recovers_a_subscriber_from_the_table() {
    let db = FreshDatabase::new().await;
    let node = Node::start(&db.url, NEWS);
    let mut reader = open(node.addr()).await;
    subscribe(&mut reader, json!("news")).await;
    let mut writer = pg::connect(&db.url).await;
    publish_range(&mut writer, 1, 5).await;
    let seen = pushes(&mut reader, 5).await;
    let epoch = seen[1]["epoch"].clone();
    drop((reader, node));
    // A new process: nothing in memory, the same epoch from the table.
    let node = Node::start(&db.url, NEWS);
    let mut reader = open(node.addr()).await;
    let joined = subscribe(&mut reader, json!({"channel": "news", "since": {"offset": 2, "epoch": epoch}})).await;
    assert_eq!(
        (joined["offset"].clone(), joined["epoch"].clone(), joined["recovered"].clone()),
        (json!(5), epoch, json!(true))
    );
    expect_range(&mut reader, 3, 5).await;
    publish_range(&mut writer, 6, 6).await;
    expect_range(&mut reader, 6, 6).await;
}
