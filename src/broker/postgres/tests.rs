//! Pruning and group commit against a real PostgreSQL (the harness cluster, `SWITCHYARD_TEST_PG`, which
//! `scripts/test` starts): each test installs the outbox in a schema of its own. Rows are
//! aged by moving their commit time back, the only way to test a retention of an hour in a
//! second.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use super::commit::Committer;
use super::db::Db;
use super::{prune, schema};

/// The outbox installed in a fresh schema `name`, and a connection of the test's own to it.
async fn outbox(name: &str) -> (Db, tokio_postgres::Client) {
    let (db, client, _) = outbox_at(name).await;
    (db, client)
}

/// As [`outbox`], with the settings that reach it.
async fn outbox_at(name: &str) -> (Db, tokio_postgres::Client, tokio_postgres::Config) {
    let url = std::env::var("SWITCHYARD_TEST_PG")
        .expect("SWITCHYARD_TEST_PG is not set: run scripts/test (it starts a PostgreSQL cluster)");
    let schema_name = format!("sy_{name}_{}", std::process::id());
    let mut config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
    config.options(format!("-c search_path={schema_name}"));
    let (client, connection) = config.connect(NoTls).await.expect("PostgreSQL answers");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema_name} CASCADE; CREATE SCHEMA {schema_name}"))
        .await
        .unwrap();
    let db = Db::new(config.clone(), 1, "broker");
    schema::ensure(&db.client().await.unwrap()).await.expect("the outbox installs");
    (db, client, config)
}

/// Publishes events `from..=to` on `channel` in one transaction.
async fn publish(client: &tokio_postgres::Client, channel: &str, from: i32, to: i32) {
    let sql = "INSERT INTO switchyard_outbox (kind, channel, event, data) \
               SELECT 'channel', $1, 'e', json_build_object('n', n) FROM generate_series($2::int, $3::int) n";
    client.execute(sql, &[&channel, &from, &to]).await.unwrap();
}

#[tokio::test]
async fn rows_past_the_retention_are_pruned_in_batches_and_newer_rows_stay() {
    let (db, client) = outbox("prune_rows").await;
    publish(&client, "news", 1, 2500).await;
    publish(&client, "news", 2501, 2510).await;
    client
        .batch_execute(
            "UPDATE switchyard_outbox_stamps SET committed_at = committed_at - interval '2 hours' \
             WHERE \"offset\" <= 2500",
        )
        .await
        .unwrap();
    // 2500 rows are more than one statement deletes: the round takes several.
    let (rows, channels) = prune::once(&db, Duration::from_secs(3600)).await.unwrap();
    assert_eq!((rows, channels), (2500, 0));
    let left: Vec<i64> = client
        .query(
            "SELECT s.\"offset\" FROM switchyard_outbox_stamps s JOIN switchyard_outbox o ON o.id = s.id ORDER BY s.pos",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, (2501..=2510).collect::<Vec<i64>>());
    let outbox_rows: i64 = client.query_one("SELECT count(*) FROM switchyard_outbox", &[]).await.unwrap().get(0);
    assert_eq!(outbox_rows, 10, "the outbox rows go with their stamps");
    assert_eq!(prune::once(&db, Duration::from_secs(3600)).await.unwrap(), (0, 0), "nothing else is old");
}

#[tokio::test]
async fn a_channel_idle_past_a_day_is_forgotten_and_starts_again_under_a_new_epoch() {
    let (db, client) = outbox("prune_channel").await;
    publish(&client, "quiet", 1, 3).await;
    let head = "SELECT \"offset\", epoch FROM switchyard_channels WHERE channel = 'quiet'";
    let (offset, old_epoch): (i64, String) = client.query_one(head, &[]).await.map(|r| (r.get(0), r.get(1))).unwrap();
    assert_eq!(offset, 3);
    client
        .batch_execute(
            "UPDATE switchyard_outbox_stamps SET committed_at = committed_at - interval '2 days'; \
             UPDATE switchyard_channels SET updated_at = updated_at - interval '2 days'",
        )
        .await
        .unwrap();
    assert_eq!(prune::once(&db, Duration::from_secs(3600)).await.unwrap(), (3, 1));
    publish(&client, "quiet", 4, 4).await;
    let (offset, epoch): (i64, String) = client.query_one(head, &[]).await.map(|r| (r.get(0), r.get(1))).unwrap();
    assert_eq!(offset, 1, "a forgotten run starts again at 1");
    assert_ne!(epoch, old_epoch, "under an epoch a subscriber's old `since` cannot match");
}

/// One `switchyard_outbox_publish` item on `channel`.
fn item(channel: &str, n: usize) -> String {
    serde_json::json!({"kind": "channel", "channel": channel, "event": "e", "data": {"n": n}}).to_string()
}

#[tokio::test]
async fn concurrent_publishes_share_one_transaction_and_each_gets_its_own_offsets_in_order() {
    let (_, client, config) = outbox_at("group_commit").await;
    let committer = Arc::new(Committer::default());
    let shutdown = CancellationToken::new();
    tokio::spawn(committer.run(config, shutdown.clone()).expect("runs once"));
    // All queued before the committer first runs (one thread): they make one batch.
    let sends = (0..50).map(|r| {
        let committer = committer.clone();
        async move { committer.publish(vec![item("news", 2 * r), item("news", 2 * r + 1)]).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut offsets = Vec::new();
    for answer in answers {
        let rows = answer.expect("published");
        let mine: Vec<i64> = rows.iter().map(|row| row.get::<_, Option<i64>>(1).unwrap()).collect();
        assert_eq!(mine.len(), 2);
        assert_eq!(mine[1], mine[0] + 1, "a request's items are consecutive, in order");
        offsets.extend(mine);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=100).collect::<Vec<i64>>());
    let transactions: i64 =
        client.query_one("SELECT count(DISTINCT xmin::text) FROM switchyard_outbox", &[]).await.unwrap().get(0);
    assert_eq!(transactions, 1, "one commit for the fifty");
    shutdown.cancel();
}

#[tokio::test]
async fn an_item_the_table_refuses_fails_only_its_own_request() {
    let (_, client, config) = outbox_at("group_commit_refused").await;
    let committer = Arc::new(Committer::default());
    tokio::spawn(committer.run(config, CancellationToken::new()).expect("runs once"));
    let sends = (0..5).map(|r| {
        let committer = committer.clone();
        // Request 2's second item breaks the table's channel check.
        let second = if r == 2 { item("no spaces allowed", 0) } else { item("news", 2 * r + 1) };
        async move { committer.publish(vec![item("news", 2 * r), second]).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    for (r, answer) in answers.iter().enumerate() {
        match (r, answer) {
            (2, Err(e)) => assert!(matches!(e.to_broker(), crate::broker::BrokerError::Refused(_)), "{e}"),
            (2, Ok(_)) => panic!("the bad request was published"),
            (_, Err(e)) => panic!("request {r} failed with the bad one: {e}"),
            (_, Ok(rows)) => assert_eq!(rows.len(), 2),
        }
    }
    let news: i64 = client
        .query_one("SELECT count(*) FROM switchyard_outbox_stamps WHERE channel = 'news'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(news, 8, "the four good requests, and nothing of the bad one (its first item neither)");
}
