//! The PostgreSQL broker end to end: two Switchyard processes on one PostgreSQL cluster,
//! events written with plain SQL inside transactions as the Django app writes them
//! (docs/outbox.md), subscribers on real sockets. Each test has a database of its own; the
//! ones that stop PostgreSQL have a cluster of their own.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
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

/// The admin API's bearer key on every node.
const ADMIN_KEY: &str = "pg-broker-test-admin-key";

/// A node's config: an admin listener, one json route, `sections` (channel rules and the
/// like), the outbox in `database`.
fn node_config(dir: &Path, upstream: &str, database: &str, sections: &str) -> String {
    std::fs::write(dir.join("admin-key"), ADMIN_KEY).unwrap();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"{upstream}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         key_file = \"{key}\"\n[[routes]]\npath = \"/ws/\"\n{sections}\n[broker]\ndatabase = \"{database}\"\n",
        key = dir.join("admin-key").display()
    )
}

/// One Switchyard process, listening to the outbox.
struct Node {
    process: Process,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(database: &str, channels: &str) -> Self {
        Self::start_with("http://127.0.0.1:9", database, channels)
    }

    /// A node in front of `upstream` with `sections` in its config.
    fn start_with(upstream: &str, database: &str, sections: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let process = binary::spawn(dir.path(), &node_config(dir.path(), upstream, database, sections));
        binary::wait_for_line(&process.lines, "broker listening", READY);
        Node { process, _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        self.process.plain[0]
    }

    /// `method path` on the admin listener with the key; (status, body as JSON or text).
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        admin_at(self.process.admin.expect("an admin listener"), method, path, body).await
    }

    /// `GET /healthz`: (status, body).
    async fn health(&self) -> (u16, Value) {
        let (status, body) = self.admin("GET", "/healthz", None).await;
        (status, serde_json::from_str(&body).expect("healthz answers JSON"))
    }
}

/// `method path` on the admin listener at `admin` with the key; (status, body as text).
async fn admin_at(admin: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let request = http::Request::builder()
        .method(method)
        .uri(support::url(admin, path))
        .header("authorization", format!("Bearer {ADMIN_KEY}"))
        .body(support::bytes_body(body.map(|b| b.to_string()).unwrap_or_default()))
        .unwrap();
    let response = support::client().request(request).await.expect("the admin listener answers");
    let status = response.status().as_u16();
    (status, String::from_utf8_lossy(&support::read_body(response).await).into_owned())
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

/// A socket on each node, subscribed to `channel`.
async fn subscribed(nodes: &[Node; 2], channel: &str) -> [Client; 2] {
    let mut readers = [open(nodes[0].addr()).await, open(nodes[1].addr()).await];
    for reader in &mut readers {
        subscribe(reader, json!(channel)).await;
    }
    readers
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
    let mut readers = subscribed(&nodes, "news").await;
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
    let mut readers = subscribed(&nodes, "news").await;
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
    let mut readers = subscribed(&nodes, "news").await;
    let big = json!({"text": "x".repeat(100 * 1024), "after": "the end"});
    let mut writer = pg::connect(&db.url).await;
    write(&mut writer, &[("news", big.clone()), ("news", json!({"small": true}))], true).await;
    for reader in &mut readers {
        assert_eq!(numbered(&pushes(reader, 2).await), [(1, big.clone()), (2, json!({"small": true}))]);
    }
}

/// Data PostgreSQL's `json` takes but serde_json does not: arrays nested 200 deep.
fn nested_too_deep() -> String {
    format!("{}{}", "[".repeat(200), "]".repeat(200))
}

#[tokio::test]
async fn a_row_the_node_cannot_read_is_skipped_and_the_events_behind_it_still_arrive() {
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, NEWS);
    let mut readers = subscribed(&nodes, "news").await;
    let mut writer = pg::connect(&db.url).await;
    let sql =
        "INSERT INTO switchyard_outbox (kind, ids, event, data) VALUES ('users', ARRAY['1'], 'e', $1::text::json)";
    writer.execute(sql, &[&nested_too_deep()]).await.expect("PostgreSQL takes it");
    write(&mut writer, &[("news", json!({"n": "behind it"}))], true).await;
    for reader in &mut readers {
        assert_eq!(numbered(&pushes(reader, 1).await), [(1, json!({"n": "behind it"}))]);
    }
    let (status, health) = nodes[0].health().await;
    assert_eq!(status, 200, "the listener kept listening: {health}");
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

/// One node on `database` with a socket on `news` that has read events 1..=`count`
/// (published one transaction each), and the writer's connection.
async fn one_node_read(database: &str, count: u64) -> (Node, Client, tokio_postgres::Client) {
    let node = Node::start(database, NEWS);
    let mut reader = open(node.addr()).await;
    subscribe(&mut reader, json!("news")).await;
    let mut writer = pg::connect(database).await;
    publish_range(&mut writer, 1, count).await;
    expect_range(&mut reader, 1, count).await;
    (node, reader, writer)
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
    let mut readers = subscribed(&nodes, "news").await;
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
    let mut readers = subscribed(&nodes, "news").await;
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
    let (node, mut reader, _) = one_node_read(&db.url, 5).await;
    cluster.halt();
    binary::wait_for_line(&node.process.lines, "outbox listener disconnected", READY);
    let health = support::wait_for("healthz reports the broker reconnecting", || async {
        let (status, health) = node.health().await;
        (health["broker"]["state"] == "reconnecting").then_some((status, health))
    })
    .await;
    assert_eq!((health.0, &health.1["broker"]["ok"]), (503, &json!(false)), "{}", health.1);
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
async fn a_node_cut_off_past_pruning_tells_subscribers_the_lost_range_and_counts_it() {
    let db = FreshDatabase::new().await;
    let (node, mut reader, mut writer) = one_node_read(&db.url, 2).await;
    // Cut the node off: no new connection to this database, and its open ones ended
    // (the writer's connection stays). Run from another database: one cannot lock itself out.
    let name: String = writer.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    let cluster = pg::connect(&pg::cluster_url()).await;
    let allow = |yes: bool| format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {yes}");
    cluster.batch_execute(&allow(false)).await.unwrap();
    let cut = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
               WHERE datname = current_database() AND application_name LIKE 'switchyard %'";
    writer.batch_execute(cut).await.unwrap();
    binary::wait_for_line(&node.process.lines, "outbox listener disconnected", READY);
    publish_range(&mut writer, 3, 6).await;
    // What another node's pruning does once the retention has passed: 3 and 4 are gone
    // before this node could read them.
    writer
        .batch_execute(
            "WITH gone AS (DELETE FROM switchyard_outbox_stamps WHERE channel = 'news' AND \"offset\" IN (3, 4) \
             RETURNING id) DELETE FROM switchyard_outbox o USING gone WHERE o.id = gone.id",
        )
        .await
        .unwrap();
    cluster.batch_execute(&allow(true)).await.unwrap();
    binary::wait_for_line(&node.process.lines, "broker listening", READY);
    let mut frames = Vec::new();
    while frames.len() < 3 {
        let frame = next_json(&mut reader).await;
        if frame.get("push").is_some() || frame.get("lost").is_some() {
            frames.push(frame);
        }
    }
    assert_eq!(frames[0], json!({"lost": {"channel": "news", "from": 3, "to": 4}}), "{frames:?}");
    let after: Vec<Value> = frames[1..].iter().map(|f| json!([f["push"]["offset"], f["push"]["data"]])).collect();
    assert_eq!(after, [json!([5, {"n": 5}]), json!([6, {"n": 6}])], "the rest, in order");
    let (status, text) = node.admin("GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "switchyard_broker_lost_events_total"), 2.0, "{text}");
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

// === the admin API and what is per node ===

#[tokio::test]
async fn an_admin_publish_on_one_node_reaches_both_with_the_offsets_it_answered() {
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, NEWS);
    let mut readers = subscribed(&nodes, "news").await;
    let items = json!([{"channel": "news", "event": "e", "data": {"n": 1}}, {"channel": "news", "event": "e", "data": {"n": 2}}]);
    let (status, body) = nodes[0].admin("POST", "/api/publish", Some(items)).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let offsets: Vec<Value> = answer["results"].as_array().unwrap().iter().map(|r| r["offset"].clone()).collect();
    assert_eq!(offsets, [json!(1), json!(2)], "{answer}");
    for reader in &mut readers {
        let got = pushes(reader, 2).await;
        assert_eq!(numbered(&got), [(1, json!({"n": 1})), (2, json!({"n": 2}))]);
        assert_eq!(got[1]["epoch"], answer["results"][1]["epoch"], "the epoch the publisher was given");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admin_publishes_on_both_nodes_get_the_offsets_they_answered_in_one_order_everywhere() {
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, NEWS);
    let mut readers = subscribed(&nodes, "news").await;
    let admins = [nodes[0].process.admin.unwrap(), nodes[1].process.admin.unwrap()];
    // Eight publishers, four on each node, each sending batches of 1-3 items one after the
    // other: the nodes group their concurrent batches into shared transactions.
    let publishers: Vec<_> = (0..8u64)
        .map(|p| {
            tokio::spawn(async move {
                let mut rng = Rng::new(p + 7);
                let mut sent = Vec::new();
                for b in 0..12 {
                    let items: Vec<Value> = (0..=rng.below(3))
                        .map(|i| json!({"channel": "news", "data": {"p": p, "b": b, "i": i}}))
                        .collect();
                    let (status, body) =
                        admin_at(admins[(p % 2) as usize], "POST", "/api/publish", Some(json!(items))).await;
                    assert_eq!(status, 200, "{body}");
                    let answer: Value = serde_json::from_str(&body).unwrap();
                    let offsets: Vec<u64> =
                        answer["results"].as_array().unwrap().iter().map(|r| r["offset"].as_u64().unwrap()).collect();
                    assert_eq!(offsets.len(), items.len(), "{answer}");
                    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "one batch, consecutive: {answer}");
                    sent.extend(offsets.into_iter().zip(items.into_iter().map(|i| i["data"].clone())));
                }
                sent
            })
        })
        .collect();
    let mut answered: Vec<(u64, Value)> = Vec::new();
    for publisher in publishers {
        let sent = publisher.await.unwrap();
        assert!(sent.windows(2).all(|w| w[1].0 > w[0].0), "a publisher's batches are numbered in its order");
        answered.extend(sent);
    }
    answered.sort_by_key(|(offset, _)| *offset);
    let total = answered.len() as u64;
    assert_eq!(answered.iter().map(|(o, _)| *o).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    for reader in &mut readers {
        assert_eq!(numbered(&pushes(reader, answered.len()).await), answered, "every node, the answered offsets");
    }
}

#[tokio::test]
async fn an_admin_broadcast_on_one_node_reaches_every_socket_on_both() {
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, NEWS);
    let mut sockets = [open(nodes[0].addr()).await, open(nodes[1].addr()).await];
    let item = json!({"broadcast": true, "event": "maintenance", "data": {"in": 300}});
    let (status, body) = nodes[0].admin("POST", "/api/publish", Some(item)).await;
    assert_eq!(status, 200, "{body}");
    for socket in &mut sockets {
        let push = &pushes(socket, 1).await[0];
        assert_eq!((&push["event"], &push["data"]), (&json!("maintenance"), &json!({"in": 300})), "{push}");
    }
}

#[tokio::test]
async fn a_disconnect_sent_to_one_node_closes_the_users_sockets_on_the_other() {
    let db = FreshDatabase::new().await;
    let django = support::django::start();
    let sections = django.switchyard_sections();
    let nodes = [Node::start_with(&django.url, &db.url, &sections), Node::start_with(&django.url, &db.url, &sections)];
    let cookie = support::browser::Browser { addr: nodes[0].addr() }.login("demo", "demo-password").await;
    let on_b = nodes[1].addr();
    let origin = format!("http://{on_b}");
    let mut theirs = connect_with(on_b, "/ws/", &[("origin", &origin), ("cookie", &cookie)]).await.unwrap();
    let user = welcome(&mut theirs).await["user"].clone();
    assert_eq!(user["username"], "demo");
    let mut anonymous = open(on_b).await;
    let (status, body) = nodes[0].admin("POST", "/api/disconnect", Some(json!({"user": user["id"]}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(closed(&mut theirs).await.0, 4401, "the user's socket on the other node");
    let pong = command(&mut anonymous, json!({"id": 1, "ping": null})).await;
    assert_eq!(pong["ping"]["result"], "pong", "other sockets stay");
}

#[tokio::test]
async fn a_resume_token_from_one_node_is_refused_on_the_other_and_since_recovers_there() {
    let db = FreshDatabase::new().await;
    let nodes = two_nodes(&db.url, NEWS);
    // A subscriber on the other node shows when that node has applied an event.
    let mut watcher = open(nodes[1].addr()).await;
    subscribe(&mut watcher, json!("news")).await;
    let mut first = connect(nodes[0].addr(), "/ws/").await;
    let token = welcome(&mut first).await["resume"].as_str().unwrap().to_string();
    subscribe(&mut first, json!("news")).await;
    let mut writer = pg::connect(&db.url).await;
    publish_range(&mut writer, 1, 2).await;
    let epoch = pushes(&mut first, 2).await[1]["epoch"].clone();
    drop(first);
    publish_range(&mut writer, 3, 4).await;
    // Committed is not yet applied there: wait until it has 4, so the reply below is exact.
    expect_range(&mut watcher, 1, 4).await;
    // Resume tokens are per node: the other one does not guess what the socket had.
    let mut second = connect(nodes[1].addr(), &format!("/ws/?resume={token}")).await;
    let greeting = welcome(&mut second).await;
    assert_eq!(
        greeting["resumed"],
        json!({"ok": false, "recovered": false, "reason": "the resume token is unknown, used or expired"}),
        "the other node restores nothing and says so: {greeting}"
    );
    // What the client does next: resubscribe with the last position it saw.
    let joined = subscribe(&mut second, json!({"channel": "news", "since": {"offset": 2, "epoch": epoch}})).await;
    assert_eq!((&joined["offset"], &joined["recovered"]), (&json!(4), &json!(true)), "{joined}");
    expect_range(&mut second, 3, 4).await;
}

/// The value of the first sample named `name` in a Prometheus text.
fn sample(text: &str, name: &str) -> f64 {
    let line = text.lines().find(|l| l.split([' ', '{']).next() == Some(name));
    let value = line.and_then(|l| l.rsplit_once(' ')).and_then(|(_, v)| v.parse().ok());
    value.unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

#[tokio::test]
async fn healthz_and_metrics_show_the_broker_listening_its_lag_and_events_per_second() {
    let db = FreshDatabase::new().await;
    let (node, _reader, _writer) = one_node_read(&db.url, 20).await;
    // The rate counts whole seconds: it shows once the second the events came in is over.
    let (status, health) = support::wait_for("healthz shows events per second", || async {
        let (status, health) = node.health().await;
        (health["broker"]["events_per_second"].as_f64() > Some(0.0)).then_some((status, health))
    })
    .await;
    let broker = &health["broker"];
    assert_eq!(
        (status, &broker["kind"], &broker["state"], &broker["ok"]),
        (200, &json!("postgres"), &json!("listening"), &json!(true)),
        "{health}"
    );
    assert!(broker["events"].as_u64().unwrap() >= 20, "{health}");
    assert!((0.0..30.0).contains(&broker["lag_seconds"].as_f64().unwrap()), "{health}");
    let (status, text) = node.admin("GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(text.contains("switchyard_broker_up{kind=\"postgres\",state=\"listening\"} 1"), "{text}");
    assert!(sample(&text, "switchyard_broker_events_total") >= 20.0);
    assert!(sample(&text, "switchyard_broker_events_per_second") > 0.0);
    assert!((0.0..30.0).contains(&sample(&text, "switchyard_broker_lag_seconds")));
    assert_eq!(sample(&text, "switchyard_broker_reconnects_total"), 0.0);
}
