//! The PostgreSQL broker: the cluster's broker when several Switchyard nodes serve one site.
//! Every event is a row in the `switchyard_outbox` table written inside the publishing
//! transaction (Django's, or one statement of ours for the admin API and socket `publish`);
//! each node `LISTEN`s on a connection of its own and applies what committed, in one order
//! every node shares. The table, the trigger that numbers rows, the `NOTIFY` payload and the
//! migration path are specified in `docs/outbox.md` (schema version [`schema::VERSION`]), the
//! one place they are written down; the install script is read from it at build time.
//!
//! # Ordering: offsets in commit order
//!
//! Concurrent transactions commit out of id order, so the row id cannot be the order. Instead
//! a deferred trigger numbers each row *as its transaction commits*, under a transaction-level
//! advisory lock that is released only once that commit is visible: a global position `pos`
//! (a sequence) and, for channel rows, the channel's next offset (a counter row per channel).
//! So positions and offsets are handed out in commit order, and when a node sees position N+1
//! the transaction that took N has ended; if N is not in the table then, it rolled back and
//! can never appear (a gap is *known gone*, never waited for). A channel's offsets have no gaps
//! at all: its counter rolls back with the transaction. A transaction held open for minutes
//! holds nobody back: its rows are numbered when it commits, after those committed meanwhile.
//! Every node applies rows in `pos` order, so offsets and epochs are the same everywhere, and
//! the hub's recovery invariant holds across nodes. The cost is that publishing commits are
//! numbered one at a time, which PostgreSQL already does for any transaction that `NOTIFY`s.
//! (Holding back across id gaps was the alternative; it must wait on every transaction that
//! might still commit, including unrelated long ones, and cannot tell a rolled-back id from
//! a slow one.)
//!
//! # What is per node
//!
//! Presence, resume tokens and socket caps stay on the node that holds the sockets (broker
//! contract, rule 5): a resume token is unknown to another node, which answers as for an
//! expired one (`recovered: false`, the client resubscribes with `since`). History is kept in
//! every node's memory as its rules say; beyond it, [`Broker::replay`] reads the table.
//!
//! # When the database is away
//!
//! The listener reconnects with backoff and catches up from the table; meanwhile sockets stay
//! open, history stays, `send` fails (`Unavailable`, 503 at the admin API) and `Health` says
//! "reconnecting". Files: `listen` (the listener), `commit` (group commit: this node's
//! concurrent publishes share one transaction, on a connection of their own), `record`
//! (rows ⇄ hub), `schema`, `db` (the query connections), `prune`, `status` (what `Health`
//! reports).

mod commit;
mod db;
mod listen;
mod prune;
mod record;
pub mod schema;
mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::commit::Committer;
use self::db::Db;
use self::status::Status;
use super::{BoxFuture, Broker, BrokerError, Event, Health, Message, Position, Publication, Receipt, Target};
use crate::config::{BrokerConfig, Secret};
use crate::hub::HubRef;

/// Largest `data` of one event (as JSON text), as the table's check says.
pub const MAX_DATA: usize = 1 << 20;

/// What went wrong talking to the outbox; [`OutboxError::to_broker`] decides whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// PostgreSQL refused or the connection failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// It did not answer in time.
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection closed.
    #[error("the connection to PostgreSQL closed")]
    Closed,
    /// The tables are of a version this build cannot use.
    #[error("{0}")]
    Schema(String),
    /// The hub is gone (shutdown).
    #[error("shutting down")]
    HubGone,
    /// The group-commit batch this request was in failed (the reason is the batch's).
    #[error("the publishing transaction failed: {0}")]
    Batch(String),
}

impl OutboxError {
    /// The one place an outbox failure becomes the broker's: a check the item failed (SQLSTATE
    /// class 22, data, or 23, integrity) is the publisher's fault; anything else is the
    /// database being unavailable.
    pub fn to_broker(&self) -> BrokerError {
        let code = match self {
            Self::Postgres(e) => e.code().map(|c| c.code().to_string()),
            _ => None,
        };
        match code.as_deref() {
            Some(code) if code.starts_with("22") || code.starts_with("23") => {
                let detail = match self {
                    Self::Postgres(e) => e.as_db_error().map(|d| d.message().to_string()),
                    _ => None,
                };
                BrokerError::Refused(detail.unwrap_or_else(|| self.to_string()))
            }
            _ => BrokerError::Unavailable(self.to_string()),
        }
    }
}

/// The `postgres` broker.
#[derive(Debug)]
pub struct PostgresBroker {
    hub: HubRef,
    db: Arc<Db>,
    /// The publishing connection's settings, and its group commit.
    publisher: tokio_postgres::Config,
    committer: Committer,
    listen: tokio_postgres::Config,
    status: Arc<Status>,
    retention: Duration,
}

/// The URL could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid outbox database URL: {0}")]
pub struct BadUrl(#[source] tokio_postgres::Error);

impl PostgresBroker {
    /// A broker on the database at `url`, delivering to `hub`; it connects in
    /// [`Broker::background`] (and on the first publish), not here.
    pub fn new(url: &Secret, config: &BrokerConfig, hub: HubRef) -> Result<Self, BadUrl> {
        let parsed: tokio_postgres::Config = url.expose().parse().map_err(BadUrl)?;
        Ok(Self {
            hub,
            db: Arc::new(Db::new(parsed.clone(), db::QUERY_CONNECTIONS, "broker")),
            publisher: db::tuned(parsed.clone(), "publisher"),
            committer: Committer::default(),
            listen: db::tuned(parsed, "listener"),
            status: Arc::new(Status::default()),
            retention: config.retention,
        })
    }

    /// Checks a batch before it reaches the database: a channel needs a rule here.
    fn check(&self, batch: &[Message]) -> Result<Vec<String>, BrokerError> {
        let hub = self.hub.upgrade().ok_or_else(|| BrokerError::Unavailable("shutting down".into()))?;
        batch
            .iter()
            .map(|message| {
                if let Message::Publish(Publication { target: Target::Channel(channel), .. }) = message {
                    if hub.rules().for_channel(channel).is_none() {
                        return Err(BrokerError::Refused(format!("no [[channels]] rule covers `{channel}`")));
                    }
                }
                let item = record::item(message);
                match item["data"].to_string().len() {
                    big if big > MAX_DATA => {
                        Err(BrokerError::Refused(format!("an event's data is {big} bytes; at most {MAX_DATA}")))
                    }
                    _ => Ok(item.to_string()),
                }
            })
            .collect()
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<Vec<Receipt>, BrokerError> {
        let items = self.check(&batch)?;
        let rows = self.committer.publish(items).await.map_err(|e| e.to_broker())?;
        if rows.len() != batch.len() {
            return Err(BrokerError::Unavailable(format!("{} items written, {} numbered", batch.len(), rows.len())));
        }
        let receipts = batch.iter().zip(rows).map(|(message, row)| {
            let offset: Option<i64> = row.get(1);
            let epoch: Option<String> = row.get(2);
            match (message, offset, epoch) {
                (Message::Publish(Publication { target: Target::Channel(_), .. }), Some(offset), Some(epoch)) => {
                    Receipt::Channel(Position { offset: offset as u64, epoch: Arc::from(epoch) })
                }
                _ => Receipt::Sent,
            }
        });
        Ok(receipts.collect())
    }

    async fn position(&self, channel: &str) -> Result<Position, OutboxError> {
        let client = self.db.client().await?;
        let sql = "SELECT coalesce(c.\"offset\", 0), coalesce(c.epoch, switchyard_outbox_epoch($1)) \
                   FROM (SELECT 1) one LEFT JOIN switchyard_channels c ON c.channel = $1";
        let row = db::bounded(client.query_one(sql, &[&channel])).await?;
        let offset: i64 = row.get(0);
        let epoch: String = row.get(1);
        Ok(Position { offset: offset as u64, epoch: Arc::from(epoch) })
    }

    /// Events of `channel` after `after` through `through`, if the channel's rule still keeps
    /// all of them (as many and as recent as its history) and the table has every one.
    async fn events(&self, channel: &str, after: &Position, through: u64) -> Result<Option<Vec<Event>>, OutboxError> {
        let Some(rule) = self.hub.upgrade().and_then(|hub| hub.rules().for_channel(channel)) else {
            return Ok(None);
        };
        let wanted = through.saturating_sub(after.offset);
        if wanted == 0 {
            return Ok(Some(Vec::new()));
        }
        if wanted > rule.history_size as u64 {
            return Ok(None);
        }
        let client = self.db.client().await?;
        let sql = "SELECT s.\"offset\", o.event, o.data::text, \
                   s.committed_at >= clock_timestamp() - make_interval(secs => $5) \
                   FROM switchyard_outbox_stamps s JOIN switchyard_outbox o ON o.id = s.id \
                   WHERE s.channel = $1 AND s.epoch = $2 AND s.\"offset\" > $3 AND s.\"offset\" <= $4 \
                   ORDER BY s.\"offset\"";
        let (from, to) = (after.offset as i64, through as i64);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&channel, &&*after.epoch, &from, &to, &rule.history_ttl.as_secs_f64()];
        let rows = db::bounded(client.query(sql, &params)).await?;
        if rows.len() as u64 != wanted || rows.iter().any(|row| !row.get::<_, bool>(3)) {
            return Ok(None);
        }
        let channel: Arc<str> = Arc::from(channel);
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let offset: i64 = row.get(0);
            let data: String = row.get(2);
            let Ok(data) = serde_json::from_str(&data) else {
                // A row the listener skipped too (docs/outbox.md checks less than serde_json
                // reads): the run cannot be replayed whole, so the subscriber refetches.
                tracing::warn!(%channel, offset, "an outbox row's data cannot be read; no replay");
                return Ok(None);
            };
            events.push(Event {
                channel: channel.clone(),
                position: Position { offset: offset as u64, epoch: after.epoch.clone() },
                event: row.get(1),
                data: Arc::new(data),
            });
        }
        Ok(Some(events))
    }
}

impl Broker for PostgresBroker {
    fn send(&self, batch: Vec<Message>) -> BoxFuture<'_, Result<Vec<Receipt>, BrokerError>> {
        Box::pin(async move {
            let revocations: Vec<_> =
                batch.iter().filter_map(|m| if let Message::Revoke(r) = m { Some(r.clone()) } else { None }).collect();
            let sent = self.publish(batch).await;
            if let (Err(BrokerError::Unavailable(_)), Some(hub)) = (&sent, self.hub.upgrade()) {
                // The other nodes cannot hear of it now (the caller is told 503 and retries),
                // but the sockets here close at once: a revocation is never held back.
                for revocation in &revocations {
                    hub.apply_revocation(revocation);
                }
            }
            sent
        })
    }

    fn origin<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Position, BrokerError>> {
        Box::pin(async move { self.position(channel).await.map_err(|e| e.to_broker()) })
    }

    fn replay<'a>(
        &'a self,
        channel: &'a str,
        after: &'a Position,
        through: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<Event>>, BrokerError>> {
        Box::pin(async move { self.events(channel, after, through).await.map_err(|e| e.to_broker()) })
    }

    fn health(&self) -> Health {
        self.status.health()
    }

    fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        let listener =
            listen::Listener { config: self.listen.clone(), hub: self.hub.clone(), status: self.status.clone() };
        let pruning = prune::run(self.db.clone(), self.retention, shutdown.clone());
        let committing = self.committer.run(self.publisher.clone(), shutdown.clone());
        Some(Box::pin(async move {
            let committing = async {
                if let Some(committing) = committing {
                    committing.await;
                }
            };
            tokio::join!(listener.run(shutdown), pruning, committing);
        }))
    }
}
