//! Pruning (docs/outbox.md, "Pruning"): about once a minute, delete the oldest rows committed
//! longer ago than the retention, a bounded batch per statement and a bounded number of
//! batches per round, then the rows of channels that have had nothing for a day. Every node
//! prunes; concurrent rounds only find less to do.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::db::{self, Db};
use super::OutboxError;

/// How often a node prunes.
const INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per statement: short enough to never hold locks for long.
const BATCH: i64 = 1000;
/// Statements per round; what is left waits for the next round.
const MAX_BATCHES: usize = 100;
/// A channel's row (its offset and epoch) outlives its last event by at least this long, so
/// a quiet channel keeps its epoch and a subscriber's `since` still recovers.
const CHANNEL_IDLE: Duration = Duration::from_secs(24 * 3600);

/// The oldest `$2` stamps, and their rows, committed more than `$1` seconds ago.
const PRUNE_ROWS: &str = "WITH doomed AS (SELECT pos FROM switchyard_outbox_stamps ORDER BY pos LIMIT $2), \
     stamps AS (DELETE FROM switchyard_outbox_stamps s USING doomed d \
         WHERE s.pos = d.pos AND s.committed_at < clock_timestamp() - make_interval(secs => $1) RETURNING s.id), \
     rows AS (DELETE FROM switchyard_outbox o USING stamps s WHERE o.id = s.id RETURNING 1) \
     SELECT count(*) FROM stamps";

/// Channels idle for `$1` seconds with no stamped row left, `$2` at most (read without a lock).
const IDLE_CHANNELS: &str = "SELECT c.channel FROM switchyard_channels c \
     WHERE c.updated_at < clock_timestamp() - make_interval(secs => $1) \
     AND NOT EXISTS (SELECT 1 FROM switchyard_outbox_stamps s WHERE s.channel = c.channel) LIMIT $2";

/// Deletes channels `$1` under the numbering lock, after advancing the generation (so their
/// next event starts a new epoch); a channel that saw an event meanwhile is kept (its
/// `updated_at` is rechecked on the row as it is now).
const FORGET_CHANNELS: &str = "WITH lock AS (SELECT pg_advisory_xact_lock(1398231896, 1)), \
     bump AS (SELECT nextval('switchyard_outbox_generation') FROM lock) \
     DELETE FROM switchyard_channels c USING bump \
     WHERE c.channel = ANY($1) AND c.updated_at < clock_timestamp() - make_interval(secs => $2) \
     AND NOT EXISTS (SELECT 1 FROM switchyard_outbox_stamps s WHERE s.channel = c.channel)";

/// Prunes every [`INTERVAL`] until `shutdown`; rows are kept `retention`.
pub async fn run(db: Arc<Db>, retention: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match once(&db, retention).await {
            Ok((0, 0)) => {}
            Ok((rows, channels)) => tracing::debug!(rows, channels, "outbox pruned"),
            // The listener reports an unreachable database; this only waits for the next round.
            Err(e) => tracing::debug!(error = %e, "outbox not pruned this round"),
        }
    }
}

/// One round: (rows deleted, channels forgotten).
pub async fn once(db: &Db, retention: Duration) -> Result<(i64, u64), OutboxError> {
    let client = db.client().await?;
    let mut rows = 0;
    for _ in 0..MAX_BATCHES {
        let deleted: i64 = db::bounded(client.query_one(PRUNE_ROWS, &[&retention.as_secs_f64(), &BATCH])).await?.get(0);
        rows += deleted;
        if deleted < BATCH {
            break;
        }
    }
    let idle = CHANNEL_IDLE.max(retention).as_secs_f64();
    let channels: Vec<String> =
        db::bounded(client.query(IDLE_CHANNELS, &[&idle, &BATCH])).await?.iter().map(|row| row.get(0)).collect();
    let forgotten =
        if channels.is_empty() { 0 } else { db::bounded(client.execute(FORGET_CHANNELS, &[&channels, &idle])).await? };
    Ok((rows, forgotten))
}
