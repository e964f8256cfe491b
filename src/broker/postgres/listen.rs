//! The listener: one connection of its own that `LISTEN`s on `switchyard_outbox` and applies
//! every committed row to this node's hub in `pos` order (docs/outbox.md, "Reading").
//!
//! Phases ([`Phase`]): connect → install the schema if missing → `LISTEN` → catch up from
//! the table (every row after the last one applied) → apply notifications as they come.
//! A lost connection (killed, network cut, restart) goes back to the start after a backoff
//! and catches up again, so nothing is lost and nothing applied twice: the cursor (the last
//! `pos` applied) survives the reconnect, and rows at or below it are skipped.
//!
//! Why a gap in `pos` is safe to step over: positions are taken under a lock each publishing
//! transaction holds until its commit is visible, so when a notification for N arrives, every
//! position below N is decided, and one the table does not have rolled back.
//!
//! The connection's driver never blocks on this loop: notifications go into a bounded buffer,
//! and when it is full they are dropped and a flag set, and the loop reads them from the table
//! instead (PostgreSQL's notification queue is shared by every listener, so a stalled one would
//! fill it for everybody).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config};
use tokio_util::sync::CancellationToken;

use super::db::{self, RawConnection};
use super::record::{self, Kind, Notice, Record};
use super::status::{Phase, Status};
use super::{schema, OutboxError};
use crate::hub::HubRef;

/// Notifications buffered between the connection and the loop; past it, the table is read.
const NOTICE_BUFFER: usize = 4096;
/// Rows read from the table at a time when catching up.
const PAGE: i64 = 1000;
/// How often an idle listener checks that its connection still answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How long that check may take before the connection counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the schema check (or install) may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(30);
/// First pause after a lost connection; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between attempts: a restarted database is found within seconds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Rows after `$1` up to `$2`, in delivery order, `$3` at most.
const FETCH: &str = "SELECT s.pos, o.kind, o.channel, o.ids, o.event, o.data::text, s.\"offset\", s.epoch, \
     extract(epoch FROM s.committed_at)::float8 \
     FROM switchyard_outbox_stamps s JOIN switchyard_outbox o ON o.id = s.id \
     WHERE s.pos > $1 AND s.pos <= $2 ORDER BY s.pos LIMIT $3";

/// The listener's parts.
pub struct Listener {
    pub config: Config,
    pub hub: HubRef,
    pub status: Arc<Status>,
}

/// Aborts the connection's driver when the session ends, however it ends.
struct Driver(tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Listener {
    /// Listens until `shutdown`, reconnecting with backoff whenever the connection is lost.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut cursor: Option<i64> = None;
        let mut backoff = FIRST_BACKOFF;
        let mut down_since: Option<Instant> = None;
        loop {
            let ended = tokio::select! {
                ended = self.session(&mut cursor, &mut backoff, &mut down_since) => ended,
                () = shutdown.cancelled() => return,
            };
            match &ended {
                OutboxError::HubGone => return,
                e if down_since.is_none() => {
                    tracing::warn!(error = %e, "outbox listener disconnected; reconnecting with backoff");
                    down_since = Some(Instant::now());
                }
                e => tracing::debug!(error = %e, "outbox listener cannot connect yet"),
            }
            let first = self.status.phase() == Phase::Connecting;
            self.status.enter(if first { Phase::Connecting } else { Phase::Reconnecting }, Some(ended.to_string()));
            let pause = jittered(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One connection's life; returns why it ended.
    async fn session(
        &self,
        cursor: &mut Option<i64>,
        backoff: &mut Duration,
        down_since: &mut Option<Instant>,
    ) -> OutboxError {
        let (client, connection) = match db::connect(&self.config).await {
            Ok(pair) => pair,
            Err(e) => return e,
        };
        let (tx, mut rx) = mpsc::channel(NOTICE_BUFFER);
        let overflow = Arc::new(AtomicBool::new(false));
        let mut driver = Driver(tokio::spawn(drive(connection, tx, overflow.clone())));
        if let Err(e) = self.start(&client, cursor).await {
            return e;
        }
        if let Some(since) = down_since.take() {
            tracing::info!(down_for = ?since.elapsed(), "outbox listener reconnected and caught up");
        }
        *backoff = FIRST_BACKOFF;
        let mut probe = tokio::time::interval(PROBE_INTERVAL);
        probe.tick().await;
        loop {
            let result = tokio::select! {
                payload = rx.recv() => match payload {
                    Some(payload) => self.notice(&client, cursor, &payload).await,
                    None => return match (&mut driver.0).await {
                        Ok(Err(e)) => e.into(),
                        _ => OutboxError::Closed,
                    },
                },
                _ = probe.tick() => match tokio::time::timeout(PROBE_TIMEOUT, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(OutboxError::Timeout(PROBE_TIMEOUT)),
                },
            };
            if let Err(e) = result {
                return e;
            }
            if overflow.swap(false, Ordering::AcqRel) {
                // What was dropped is in the table; what is still buffered is in it too.
                while rx.try_recv().is_ok() {}
                if let Err(e) = self.fetch(&client, cursor, i64::MAX).await {
                    return e;
                }
            }
        }
    }

    /// Schema, `LISTEN`, the start position (first session) and the catch-up.
    async fn start(&self, client: &Client, cursor: &mut Option<i64>) -> Result<(), OutboxError> {
        // The install may wait for another node's; bounded all the same.
        tokio::time::timeout(INSTALL_TIMEOUT, schema::ensure(client))
            .await
            .map_err(|_| OutboxError::Timeout(INSTALL_TIMEOUT))??;
        db::bounded(client.batch_execute(&format!("LISTEN {}", schema::CHANNEL))).await?;
        // After LISTEN: nothing committed from here on can be missed.
        let asked = Instant::now();
        let row = db::bounded(client.query_one(
            "SELECT extract(epoch FROM clock_timestamp())::float8, \
             (SELECT coalesce(max(pos), 0) FROM switchyard_outbox_stamps)",
            &[],
        ))
        .await?;
        self.status.measured_clock(row.get(0), asked.elapsed(), SystemTime::now());
        let latest: i64 = row.get(1);
        if cursor.is_none() {
            *cursor = Some(latest);
        }
        self.status.enter(Phase::CatchingUp, None);
        self.fetch(client, cursor, i64::MAX).await?;
        self.status.enter(Phase::Listening, None);
        tracing::info!(pos = cursor.unwrap_or(0), "broker listening");
        Ok(())
    }

    /// Applies one notification: at once when it is the next row and carries it, else by
    /// reading every row up to it from the table.
    async fn notice(&self, client: &Client, cursor: &mut Option<i64>, payload: &str) -> Result<(), OutboxError> {
        let notice = match record::parse_notice(payload) {
            Ok(notice) => notice,
            Err(reason) => {
                tracing::warn!(%reason, "a notification on switchyard_outbox was not ours; ignored");
                return Ok(());
            }
        };
        let last = cursor.unwrap_or(0);
        match notice {
            Notice::Full(record) if record.pos == last + 1 => self.apply(cursor, *record),
            Notice::Full(record) if record.pos <= last => Ok(()),
            Notice::Reference(pos) if pos <= last => Ok(()),
            Notice::Full(record) => self.fetch(client, cursor, record.pos).await,
            Notice::Reference(pos) => self.fetch(client, cursor, pos).await,
        }
    }

    /// Applies every row after the cursor up to `until`, a page at a time.
    async fn fetch(&self, client: &Client, cursor: &mut Option<i64>, until: i64) -> Result<(), OutboxError> {
        loop {
            let after = cursor.unwrap_or(0);
            let rows = db::bounded(client.query(FETCH, &[&after, &until, &PAGE])).await?;
            let full = rows.len() as i64 == PAGE;
            for row in rows {
                match read_row(&row)? {
                    Ok(record) => self.apply(cursor, record)?,
                    // Skipped, never retried: a row that cannot be read now never can, and
                    // waiting on it would stop every event behind it.
                    Err((pos, reason)) => {
                        tracing::warn!(pos, %reason, "outbox row skipped");
                        *cursor = Some(pos);
                    }
                }
            }
            if !full {
                // Positions up to `until` that are not in the table rolled back.
                if until != i64::MAX && cursor.is_some_and(|c| c < until) {
                    *cursor = Some(until);
                }
                return Ok(());
            }
        }
    }

    fn apply(&self, cursor: &mut Option<i64>, record: Record) -> Result<(), OutboxError> {
        let hub = self.hub.upgrade().ok_or(OutboxError::HubGone)?;
        let (pos, at) = (record.pos, record.at);
        if let Err(reason) = record.apply(&hub) {
            tracing::warn!(pos, %reason, "outbox row skipped");
        }
        *cursor = Some(pos);
        self.status.applied(at);
        Ok(())
    }
}

/// Reads one row of [`FETCH`]: the record, or (its position, why it cannot be applied) for a
/// row the table's checks let in that this build cannot take (an unknown kind, data
/// serde_json refuses: nested deeper than 128 levels, a lone surrogate). Err: the row's
/// columns themselves could not be read.
fn read_row(row: &tokio_postgres::Row) -> Result<Result<Record, (i64, String)>, OutboxError> {
    let pos: i64 = row.try_get(0)?;
    let kind: String = row.try_get(1)?;
    let data: String = row.try_get(5)?;
    let Some(kind) = Kind::parse(&kind) else {
        return Ok(Err((pos, format!("unknown kind `{kind}`"))));
    };
    let data = match serde_json::from_str(&data) {
        Ok(data) => data,
        Err(e) => return Ok(Err((pos, format!("data is not JSON this node can read: {e}")))),
    };
    Ok(Ok(Record {
        pos,
        kind,
        channel: row.try_get(2)?,
        ids: row.try_get(3)?,
        event: row.try_get(4)?,
        data,
        offset: row.try_get(6)?,
        epoch: row.try_get(7)?,
        at: row.try_get(8)?,
    }))
}

/// Drives the connection, handing notifications to the loop without ever waiting for it.
async fn drive(
    mut connection: RawConnection,
    tx: mpsc::Sender<String>,
    overflow: Arc<AtomicBool>,
) -> Result<(), tokio_postgres::Error> {
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        let message = message?;
        if let AsyncMessage::Notification(n) = &message {
            // A full buffer: drop it and let the loop read the table instead.
            if n.channel() == schema::CHANNEL && tx.try_send(n.payload().into()).is_err() {
                overflow.store(true, Ordering::Release);
            }
        } else if let AsyncMessage::Notice(notice) = &message {
            tracing::debug!(message = notice.message(), "outbox database notice");
        }
    }
    Ok(())
}

/// `pause` ± 25%, so nodes cut off together do not reconnect in lockstep.
fn jittered(pause: Duration) -> Duration {
    let quarter = pause.as_millis() as u64 / 4;
    let spread = (uuid::Uuid::new_v4().as_u128() as u64) % (2 * quarter + 1);
    pause - Duration::from_millis(quarter) + Duration::from_millis(spread)
}
