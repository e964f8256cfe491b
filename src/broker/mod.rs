//! The broker: how what Django (or a socket) publishes reaches the hub of every node.
//! `local` is in-process (one node); `postgres` (another module) is the cluster's broker.
//! The hub owns sockets, channels, history and fan-out; the broker owns ordering across
//! nodes and the durable store, if any.
//!
//! # The contract
//!
//! **In.** Everything that must reach every node goes through [`Broker::send`]: channel
//! publishes, pushes to users / connections / everyone, and revocations (disconnect a user
//! or a session key). `send` resolves when the broker has *accepted* the batch: for `local`
//! that is when the hub has applied it; for a durable broker, when it is committed. Its
//! [`Receipt`]s say, per item, the channel position the event got (or that it was sent).
//!
//! **Out.** The broker applies what it carries by calling the hub, on every node:
//! [`Hub::apply_event`](crate::hub::Hub::apply_event) for a channel event with its
//! [`Position`], [`Hub::apply_push`](crate::hub::Hub::apply_push) for a push to a target,
//! [`Hub::apply_revocation`](crate::hub::Hub::apply_revocation) for a disconnect. (`local`
//! calls [`Hub::append`](crate::hub::Hub::append) instead and lets the hub assign the offset.)
//! Rules a broker must keep:
//! 1. Per channel, events are applied in offset order, each once. An offset that is not the
//!    channel's last + 1 is ignored when lower (a duplicate) and, when higher, makes the hub
//!    forget the channel's history (it cannot claim to cover the gap) and send the channel's
//!    subscribers a `lost` frame with the skipped range (counted in
//!    `switchyard_broker_lost_events_total`); so a broker never skips an offset it may still
//!    deliver: it holds later events back until the gap is filled or known empty, and skips
//!    only what its store no longer has (the postgres outbox pruned it).
//! 2. Offsets and epochs are the same on every node. An epoch names one unbroken run of
//!    offsets: a broker starts a new one only when it can no longer serve the old run's
//!    events (its store lost them), and keeps the old one across a node restart when its
//!    store still has them. The hub treats an event of another epoch as a new run.
//! 3. A channel this node has no room for starts at [`Broker::origin`]: the position of
//!    the last event the broker has for it (offset 0 and a fresh epoch when none).
//! 4. When the hub's in-memory history does not reach back to a subscriber's `since`,
//!    it asks [`Broker::replay`] for the events after it, up to the position the subscriber
//!    joined at; `Ok(None)` means the broker cannot serve them either (`recovered: false`).
//!    The hub keeps the subscriber's live events aside meanwhile, so there is no gap and no
//!    duplicate between the replay and what follows.
//! 5. Presence, resume tokens and socket caps are per node, never carried.
//!
//! **Background.** A broker with work of its own (listening, catching up, pruning) returns
//! it from [`Broker::background`]; the server runs it on one runtime and cancels the token
//! at shutdown.

pub mod local;
pub mod postgres;
pub mod rate;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Names one unbroken run of a channel's offsets; a new epoch means history was lost.
pub type Epoch = Arc<str>;

/// Where a channel stands: the offset of its last event (0 before the first) and its epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The last event's offset; offsets start at 1 and rise by 1.
    pub offset: u64,
    /// The run these offsets belong to.
    pub epoch: Epoch,
}

/// One channel event as the broker delivers it to the hub.
#[derive(Clone, Debug)]
pub struct Event {
    /// The channel's name.
    pub channel: Arc<str>,
    /// Its offset and epoch.
    pub position: Position,
    /// The event name (`"message"` when the publisher gave none).
    pub event: String,
    /// The payload.
    pub data: Arc<Value>,
}

/// Who a push goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A channel's subscribers (recoverable: the event gets an offset).
    Channel(String),
    /// Every socket of these users (pk as a string).
    Users(Vec<String>),
    /// These sockets.
    Connections(Vec<String>),
    /// Every socket on every node.
    Broadcast,
}

/// One thing to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    /// Who gets it.
    pub target: Target,
    /// The event name.
    pub event: String,
    /// The payload.
    pub data: Value,
}

/// Whose sockets to close (and whose cached identity to drop) with 4401.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// Every session of this user (pk as a string): password change, deactivation.
    User(String),
    /// One session key: a logout, or a key Django replaced.
    Session(String),
}

/// One item of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Deliver an event.
    Publish(Publication),
    /// Close sockets and forget identities.
    Revoke(Revocation),
}

/// What became of one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// A channel event, at this position.
    Channel(Position),
    /// A push or a revocation, accepted.
    Sent,
}

/// What a broker could not do; who is at fault decides the log level and the status.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker's store or peer cannot be reached now (503 at the admin API).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The item cannot be carried (too large, bad name): the publisher's fault (400).
    #[error("cannot publish: {0}")]
    Refused(String),
}

/// The broker's state for `/healthz` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    /// The kind, as in `[broker] kind`.
    pub kind: &'static str,
    /// "ok" (local), or for postgres "listening", "catching up", "connecting", "reconnecting".
    pub state: String,
    /// True when events flow (listening or catching up).
    pub ok: bool,
    /// Seconds from an event's commit to its delivery on this node, for the latest event;
    /// while cut off from the store, how long it has been. 0 for `local`.
    pub lag_seconds: f64,
    /// Events this node applied per second, over the last [`rate::WINDOW`] seconds.
    pub events_per_second: f64,
    /// Events (and pushes, revocations) this node applied since it started.
    pub events: u64,
    /// Times the broker lost its store and connected again.
    pub reconnects: u64,
    /// Why the broker is not ok, when it is not (never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The broker interface; see the module doc for the contract.
pub trait Broker: Send + Sync + fmt::Debug {
    /// Accepts a batch, in order; resolves with one receipt per item once accepted.
    fn send(&self, batch: Vec<Message>) -> BoxFuture<'_, Result<Vec<Receipt>, BrokerError>>;

    /// The position a channel this node holds no room for starts at.
    fn origin<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Position, BrokerError>>;

    /// The events of `channel` after `after` up to and including offset `through`, in order,
    /// from the broker's own store; `Ok(None)` when it cannot serve all of them.
    fn replay<'a>(
        &'a self,
        channel: &'a str,
        after: &'a Position,
        through: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<Event>>, BrokerError>>;

    /// The broker's state now.
    fn health(&self) -> Health;

    /// Work the broker runs for the node's life (listening, catching up), if any; it ends
    /// when `shutdown` is cancelled. Default: none.
    fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        let _ = shutdown;
        None
    }
}

/// A fresh epoch: 12 random hex digits, unguessable enough that two runs never share one.
pub fn fresh_epoch() -> Epoch {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Arc::from(&id[..12])
}

/// The broker `[broker]` asks for, delivering to `hub`.
pub fn build(config: &crate::config::BrokerConfig, hub: crate::hub::HubRef) -> Arc<dyn Broker> {
    match (config.kind, &config.database) {
        (crate::config::BrokerKind::Postgres, Some(url)) => {
            match postgres::PostgresBroker::new(url, config, hub.clone()) {
                Ok(broker) => Arc::new(broker),
                // config::check parsed the URL already; this cannot happen, but a broker must exist.
                Err(e) => {
                    tracing::error!(error = %e, "the outbox database URL is unusable; events stay on this node");
                    Arc::new(local::LocalBroker::new(hub))
                }
            }
        }
        _ => Arc::new(local::LocalBroker::new(hub)),
    }
}

/// Reads one push item as backends' `push` entries and `POST /api/publish` write them:
/// a target (`channel`, `user`, `users`, `connection`, `connections` or `broadcast: true`),
/// `event` (default `"message"`) and `data` (default null). Err says what to write instead.
pub fn parse_publication(item: &serde_json::Value) -> Result<Publication, String> {
    let Some(fields) = item.as_object() else {
        return Err("an item is an object like {\"channel\": \"news\", \"event\": \"x\", \"data\": {}}".into());
    };
    let id = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let ids = |key: &str| -> Result<Vec<String>, String> {
        match fields.get(key) {
            Some(Value::Array(list)) if list.len() <= MAX_TARGETS => {
                list.iter().map(|v| id(v).ok_or_else(|| format!("`{key}` holds ids (strings or numbers)"))).collect()
            }
            _ => Err(format!("`{key}` is a list of at most {MAX_TARGETS} ids")),
        }
    };
    let mut targets = Vec::new();
    for key in ["channel", "user", "users", "connection", "connections", "broadcast"] {
        if fields.contains_key(key) {
            targets.push(key);
        }
    }
    let target = match targets.as_slice() {
        ["channel"] => match fields.get("channel").and_then(Value::as_str) {
            Some(name) if crate::config::is_channel_name(name) => Target::Channel(name.to_string()),
            _ => return Err("`channel` is a channel name".into()),
        },
        ["user"] => Target::Users(vec![fields.get("user").and_then(id).ok_or("`user` is an id")?]),
        ["users"] => Target::Users(ids("users")?),
        ["connection"] => {
            Target::Connections(vec![fields.get("connection").and_then(id).ok_or("`connection` is an id")?])
        }
        ["connections"] => Target::Connections(ids("connections")?),
        ["broadcast"] if fields.get("broadcast") == Some(&Value::Bool(true)) => Target::Broadcast,
        ["broadcast"] => return Err("write \"broadcast\": true".into()),
        [] => return Err("an item needs one of channel, user, users, connection, connections, broadcast".into()),
        _ => return Err(format!("an item has one target, not {}", targets.join(" and "))),
    };
    let event = match fields.get("event") {
        None => "message".to_string(),
        Some(Value::String(e)) if !e.is_empty() && e.len() <= 128 => e.clone(),
        Some(_) => return Err("`event` is a name of at most 128 bytes".into()),
    };
    let data = fields.get("data").cloned().unwrap_or(Value::Null);
    Ok(Publication { target, event, data })
}

/// Most users or connections one item may target.
pub const MAX_TARGETS: usize = 10_000;
