//! Pruning against a real PostgreSQL (the harness cluster, `SWITCHYARD_TEST_PG`, which
//! `scripts/test` starts): each test installs the outbox in a schema of its own. Rows are
//! aged by moving their commit time back, the only way to test a retention of an hour in a
//! second.

use std::time::Duration;

use tokio_postgres::NoTls;

use super::db::Db;
use super::{prune, schema};

/// The outbox installed in a fresh schema `name`, and a connection of the test's own to it.
async fn outbox(name: &str) -> (Db, tokio_postgres::Client) {
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
    let db = Db::new(config);
    schema::ensure(&db.client().await.unwrap()).await.expect("the outbox installs");
    (db, client)
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
