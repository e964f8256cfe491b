//! Group commit: concurrent publishes of this node (admin API, socket `publish`, backend
//! pushes) share one transaction. A publishing commit is numbered under the outbox's lock
//! and waits for its WAL flush while holding it (docs/outbox.md, "What happens at commit"),
//! so commits go one at a time and one event per transaction caps a node at one event per
//! flush. Here, whatever `send`s are waiting when a transaction can start go into it
//! together: one `switchyard_outbox_publish` call, one flush, one lock hold.
//!
//! What stays as it was: each `send` is atomic (all its items commit, or none) and its
//! items get consecutive positions in their order; its receipts are its own. Requests are
//! taken first come, first served, and batches run in that order on one connection
//! (pipelined: the next batch is on the wire while the previous one commits), so a caller
//! that waits for one `send` before the next sees them numbered in that order.
//!
//! Bounds: at most [`QUEUE`] requests wait; a batch holds at most [`MAX_ITEMS`] items and
//! [`MAX_BYTES`] bytes of item text (a single request larger than that goes alone: it is
//! bounded by the admin API's own limits); at most [`DEPTH`] batches are in flight. A batch
//! that PostgreSQL refuses for an item's fault is retried one request at a time, so one bad
//! item fails only its own request.

use std::sync::Arc;

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::Type;
use tokio_postgres::Row;
use tokio_util::sync::CancellationToken;

use super::db::{self, Db};
use super::OutboxError;

/// Requests waiting for a batch; past it, `send` waits (bounded by the query timeout).
pub const QUEUE: usize = 1024;
/// Most items in one batch.
pub const MAX_ITEMS: usize = 256;
/// Most bytes of item JSON in one batch.
pub const MAX_BYTES: usize = 4 << 20;
/// Batches on the wire at once: one committing, one waiting right behind it.
pub const DEPTH: usize = 2;

/// Longest a `send` waits for its batch's answer once queued: its own query's bound and
/// the one ahead of it on the wire.
const ANSWER_TIMEOUT: std::time::Duration = db::QUERY_TIMEOUT.saturating_mul(DEPTH as u32 + 1);

const PUBLISH: &str = "SELECT pos, \"offset\", epoch FROM switchyard_outbox_publish($1::json)";

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

    /// The committer's loop, on `db`, until `shutdown`; None if it already runs.
    pub fn run(&self, db: Arc<Db>, shutdown: CancellationToken) -> Option<impl std::future::Future<Output = ()>> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(run(db, rx, shutdown))
    }
}

async fn run(db: Arc<Db>, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
    let mut carry: Option<Request> = None;
    let mut in_flight = FuturesOrdered::new();
    loop {
        let room = in_flight.len() < DEPTH;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            first = next(&mut rx, &mut carry), if room => {
                let Some(first) = first else { break };
                let batch = gather(first, &mut rx, &mut carry);
                in_flight.push_back(commit(db.clone(), batch));
            }
        }
    }
    // Shutdown, or every sender is gone: finish what is on the wire (each query is bounded);
    // requests still queued are dropped, and their callers told the broker closed.
    while in_flight.next().await.is_some() {}
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
async fn commit(db: Arc<Db>, batch: Vec<Request>) {
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
    let outcome = publish(&db, text(&batch)).await;
    match outcome {
        Err(e) if batch.len() > 1 && refused(&e) => {
            for request in batch {
                let alone = publish(&db, text(std::slice::from_ref(&request))).await;
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
        Ok(mut rows) => {
            let total: usize = batch.iter().map(|r| r.items.len()).sum();
            if rows.len() != total {
                let reason = format!("{total} items written, {} numbered", rows.len());
                for request in batch {
                    let _ = request.reply.send(Err(OutboxError::Batch(reason.clone())));
                }
                return;
            }
            // Rows come in `pos` order, which is the items' order.
            let mut rest = rows.split_off(0).into_iter();
            for request in batch {
                let mine: Vec<Row> = rest.by_ref().take(request.items.len()).collect();
                let _ = request.reply.send(Ok(mine));
            }
        }
    }
}

async fn publish(db: &Db, text: String) -> Result<Vec<Row>, OutboxError> {
    let client = db.client().await?;
    // Typed: one round trip, no statement to prepare and close.
    db::bounded(client.query_typed(PUBLISH, &[(&text, Type::TEXT)])).await
}

/// The item's fault (a check failed), not the database's.
fn refused(e: &OutboxError) -> bool {
    matches!(e.to_broker(), crate::broker::BrokerError::Refused(_))
}
