//! Group commit: concurrent publishes of this node (admin API, socket `publish`, backend
//! pushes) share one transaction. A publishing commit is numbered under the outbox's lock
//! and waits for its WAL flush while holding it (docs/outbox.md, "What happens at commit"),
//! so commits go one at a time and one event per transaction caps a node at one event per
//! flush. Here, whatever `send`s are waiting when a transaction can start go into it
//! together: one transaction (insert, number at once, read the positions back, commit),
//! one flush, one lock hold. (Not `switchyard_outbox_publish`: v1's finds the positions it
//! returns by reading the whole stamps table, under the lock; see `NUMBERED`.)
//!
//! What stays as it was: each `send` is atomic (all its items commit, or none) and its
//! items get consecutive positions in their order; its receipts are its own. Requests are
//! taken first come, first served, and batches run in that order on one connection of
//! the committer's own (while one commits, the next gathers), so a caller that waits for
//! one `send` before the next sees them numbered in that order.
//!
//! Bounds: at most [`QUEUE`] requests wait; a batch holds at most [`MAX_ITEMS`] items and
//! [`MAX_BYTES`] bytes of item text (a single request larger than that goes alone: it is
//! bounded by the admin API's own limits); one batch is in flight. A batch
//! that PostgreSQL refuses for an item's fault is retried one request at a time, so one bad
//! item fails only its own request.

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, Row};
use tokio_util::sync::CancellationToken;

use super::db;
use super::OutboxError;

/// Requests waiting for a batch; past it, `send` waits (bounded by the query timeout).
pub const QUEUE: usize = 1024;
/// Most items in one batch.
pub const MAX_ITEMS: usize = 256;
/// Most bytes of item JSON in one batch.
pub const MAX_BYTES: usize = 4 << 20;

/// Longest a `send` waits for its batch's answer once queued: its own transaction's bound,
/// the one committing ahead of it, and a retry one request at a time.
const ANSWER_TIMEOUT: std::time::Duration = db::QUERY_TIMEOUT.saturating_mul(4);

/// The batch's rows, in the items' order (what `switchyard_outbox_publish` inserts).
const INSERT: &str = "INSERT INTO switchyard_outbox (kind, channel, ids, event, data) \
     SELECT e.item->>'kind', e.item->>'channel', \
            CASE WHEN json_typeof(e.item->'ids') = 'array' \
                 THEN ARRAY(SELECT json_array_elements_text(e.item->'ids')) END, \
            coalesce(e.item->>'event', 'message'), coalesce(e.item->'data', 'null') \
     FROM json_array_elements($1::json) WITH ORDINALITY AS e(item, n) ORDER BY e.n";
/// Numbers them now (under the numbering lock, held the few statements to the commit).
const STAMP_NOW: &str = "SET CONSTRAINTS switchyard_outbox_stamp IMMEDIATE";
/// Their stamps: the last `$1` positions this session took. The bound is a subquery, run
/// once, so the primary key finds them; v1's `switchyard_outbox_publish` compares with
/// `currval()` row by row instead, which reads the whole table under the lock.
const NUMBERED: &str = "SELECT s.pos, s.\"offset\", s.epoch FROM switchyard_outbox_stamps s \
     WHERE s.pos > (SELECT currval('switchyard_outbox_pos') - $1) ORDER BY s.pos";

/// One `send`: its items as JSON texts, and where its rows go.
struct Request {
    items: Vec<String>,
    bytes: usize,
    reply: oneshot::Sender<Result<Vec<Row>, OutboxError>>,
}

/// The way in to the committer.
#[derive(Debug)]
pub struct Committer {
    tx: mpsc::Sender<Request>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Request>>>,
}

impl Default for Committer {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self { tx, rx: std::sync::Mutex::new(Some(rx)) }
    }
}

impl Committer {
    /// Publishes `items` (JSON texts of `switchyard_outbox_publish` items) in one
    /// transaction, with whatever else is waiting; one row (pos, offset, epoch) per item.
    pub async fn publish(&self, items: Vec<String>) -> Result<Vec<Row>, OutboxError> {
        let bytes = items.iter().map(|i| i.len() + 1).sum();
        let (reply, answer) = oneshot::channel();
        let request = Request { items, bytes, reply };
        match tokio::time::timeout(db::QUERY_TIMEOUT, self.tx.send(request)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(OutboxError::Closed),
            Err(_) => return Err(OutboxError::Timeout(db::QUERY_TIMEOUT)),
        }
        // The committer answers every request it takes (each query is bounded, and a request
        // waits behind at most a few batches); a dropped reply means it stopped (shutdown).
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(answer) => answer.unwrap_or(Err(OutboxError::Closed)),
            Err(_) => Err(OutboxError::Timeout(ANSWER_TIMEOUT)),
        }
    }

    /// The committer's loop, on a connection of its own to `config`, until `shutdown`;
    /// None if it already runs.
    pub fn run(&self, config: Config, shutdown: CancellationToken) -> Option<impl std::future::Future<Output = ()>> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(run(config, rx, shutdown))
    }
}

async fn run(config: Config, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
    let mut carry: Option<Request> = None;
    let mut connection = Connection { config, live: None };
    loop {
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            first = next(&mut rx, &mut carry) => first,
        };
        // Every sender gone: the broker was dropped.
        let Some(first) = first else { break };
        // While this batch commits, the next one gathers in the queue.
        let batch = gather(first, &mut rx, &mut carry);
        commit(&mut connection, batch).await;
    }
    // Requests still queued are dropped: their callers are told the broker closed.
}

async fn next(rx: &mut mpsc::Receiver<Request>, carry: &mut Option<Request>) -> Option<Request> {
    match carry.take() {
        Some(request) => Some(request),
        None => rx.recv().await,
    }
}

/// `first` and whatever else waits, up to the batch bounds; a request that does not fit is
/// kept for the next batch.
fn gather(first: Request, rx: &mut mpsc::Receiver<Request>, carry: &mut Option<Request>) -> Vec<Request> {
    let (mut items, mut bytes) = (first.items.len(), first.bytes);
    let mut batch = vec![first];
    while let Ok(request) = rx.try_recv() {
        if items + request.items.len() > MAX_ITEMS || bytes + request.bytes > MAX_BYTES {
            *carry = Some(request);
            break;
        }
        items += request.items.len();
        bytes += request.bytes;
        batch.push(request);
    }
    batch
}

/// One transaction for the whole batch; on an item's fault, one per request.
async fn commit(connection: &mut Connection, batch: Vec<Request>) {
    let text = |requests: &[Request]| {
        let mut text = String::with_capacity(requests.iter().map(|r| r.bytes).sum::<usize>() + 2);
        text.push('[');
        for (i, item) in requests.iter().flat_map(|r| &r.items).enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(item);
        }
        text.push(']');
        text
    };
    let total: usize = batch.iter().map(|r| r.items.len()).sum();
    let outcome = connection.publish(text(&batch), total).await;
    match outcome {
        Err(e) if batch.len() > 1 && refused(&e) => {
            for request in batch {
                let alone = connection.publish(text(std::slice::from_ref(&request)), request.items.len()).await;
                let _ = request.reply.send(alone);
            }
        }
        Err(e) => {
            let reason = e.to_string();
            let mut e = Some(e);
            for request in batch {
                let _ = request.reply.send(Err(e.take().unwrap_or_else(|| OutboxError::Batch(reason.clone()))));
            }
        }
        Ok(rows) => {
            // Rows come in `pos` order, which is the items' order.
            let mut rows = rows.into_iter();
            for request in batch {
                let mine: Vec<Row> = rows.by_ref().take(request.items.len()).collect();
                let _ = request.reply.send(Ok(mine));
            }
        }
    }
}

/// The committer's own connection, opened on first use and again after it failed.
struct Connection {
    config: Config,
    live: Option<(Client, Driver)>,
}

/// Aborts a connection's driver when it is replaced or the committer ends.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Connection {
    /// Inserts the batch `text` (a JSON array of `count` items), numbers it at once and
    /// commits, in one transaction: one row (pos, offset, epoch) per item, in order.
    async fn publish(&mut self, text: String, count: usize) -> Result<Vec<Row>, OutboxError> {
        let outcome = self.transaction(&text, count as i64).await;
        if outcome.is_err() && self.live.as_ref().is_some_and(|(client, _)| client.is_closed()) {
            self.live = None;
        }
        let rows = outcome?;
        if rows.len() != count {
            return Err(OutboxError::Batch(format!("{count} items written, {} numbered", rows.len())));
        }
        Ok(rows)
    }

    async fn transaction(&mut self, text: &str, count: i64) -> Result<Vec<Row>, OutboxError> {
        if self.live.as_ref().is_none_or(|(client, _)| client.is_closed()) {
            let (client, connection) = db::connect(&self.config).await?;
            let driver = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "outbox publishing connection ended");
                }
            });
            self.live = Some((client, Driver(driver)));
        }
        let Some((client, _)) = self.live.as_mut() else { return Err(OutboxError::Closed) };
        // Bounded as a whole; a transaction cut short is rolled back when it is dropped
        // (tokio-postgres queues the ROLLBACK before anything else this connection sends).
        db::bounded(async {
            let tx = client.transaction().await?;
            tx.query_typed(INSERT, &[(&text, Type::TEXT)]).await?;
            tx.batch_execute(STAMP_NOW).await?;
            let rows = tx.query_typed(NUMBERED, &[(&count, Type::INT8)]).await?;
            tx.commit().await?;
            Ok(rows)
        })
        .await
    }
}

/// The item's fault (a check failed), not the database's.
fn refused(e: &OutboxError) -> bool {
    matches!(e.to_broker(), crate::broker::BrokerError::Refused(_))
}
