//! The hub: which sockets are open and whose they are (the registry), the channels they
//! subscribe to (one [`Room`] per channel, each with its own lock), and delivery to them by
//! channel, connection, user, route and to everyone. Also the per-user and per-address
//! socket caps and the per-user hook sequence numbers. All of it is per node; what crosses
//! nodes goes through the broker (see `broker` for the contract).
//!
//! Locks, always taken in this order and never held across an await: the registry's or the
//! rooms map's (briefly, never both), then one room's, then one socket queue's (fan-out
//! queues to each subscriber under the room's lock, which is what keeps events in order).
//!
//! Files: `outbox` (one socket's bounded queue and the slow-reader policy), `room` (one
//! channel), `rules` (`[[channels]]` compiled), `filter` (subscription filters).

pub mod filter;
pub mod outbox;
pub mod resume;
pub mod room;
pub mod rules;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub use self::filter::{BadFilter, Filter};
pub use self::outbox::{outbox, Bounds, Eviction, Inbox, Offer, Outbox, Policy, Push};
pub use self::room::{Joined, Joining, Room};
pub use self::rules::{Action, Rule, Rules, Verdict};
use crate::broker::{Broker, Event, Position, Revocation, Target};
use crate::config::{Config, SlowReader};
use crate::django::{SessionBridge, User};
use crate::protocol;
use crate::ws::CloseReason;

/// A connection id (a UUID) shared without copying.
pub type ConnId = Arc<str>;

/// Most rooms kept; past it, idle rooms are dropped early (rooms with subscribers stay:
/// they are bounded by sockets × `max_subscriptions`).
pub const MAX_IDLE_ROOMS: usize = 100_000;
/// Hook sequence counters of users with no socket are forgotten after this long.
const SEQ_IDLE: Duration = Duration::from_secs(3600);
/// Most hook sequence counters kept.
const SEQ_CAPACITY: u64 = 1_000_000;

/// Shared handle; clones see the same sockets and channels.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A handle that does not keep the hub alive (for the broker, which the hub owns).
#[derive(Clone, Debug)]
pub struct HubRef(Weak<Inner>);

/// The hub's slice of the config.
#[derive(Clone, Debug)]
pub struct HubSettings {
    /// Most sockets per user.
    pub max_per_user: usize,
    /// Most sockets per client address.
    pub max_per_ip: usize,
    /// Each socket's queue bounds.
    pub bounds: Bounds,
    /// Most channels per socket.
    pub max_subscriptions: usize,
    /// How long a closed socket's resume token stays usable.
    pub resume_ttl: Duration,
}

struct Inner {
    registry: Mutex<Registry>,
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    /// Swapped whole by a reload; rooms keep the rule they were made with.
    rules: arc_swap::ArcSwap<Rules>,
    /// Swapped whole by a reload (caps, queue bounds and subscription limit of new sockets).
    settings: arc_swap::ArcSwap<HubSettings>,
    broker: Arc<dyn Broker>,
    bridge: Option<SessionBridge>,
    tokens: resume::Tokens,
    seq: moka::sync::Cache<String, Arc<AtomicU64>>,
    stats: Stats,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("broker", &self.broker).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Registry {
    sockets: HashMap<ConnId, Member>,
    by_user: HashMap<Arc<str>, HashSet<ConnId>>,
    by_session: HashMap<Arc<str>, HashSet<ConnId>>,
    by_route: HashMap<Arc<str>, HashSet<ConnId>>,
    user_slots: HashMap<Arc<str>, usize>,
    ip_slots: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Member {
    outbox: Outbox,
    user: Option<Arc<User>>,
    session: Option<Arc<str>>,
    route: Arc<str>,
    /// Subscribed channels: where each was joined and its filter (for resume tokens).
    channels: HashMap<Arc<str>, (Position, Option<Filter>)>,
}

/// Counters the admin listener exports; updated with relaxed atomics on the hot path.
#[derive(Debug, Default)]
pub struct Stats {
    /// Channel events published (once per event, whatever the fan-out).
    pub events: AtomicU64,
    /// Frames queued to sockets for channel events.
    pub deliveries: AtomicU64,
    /// Pushes to users, connections and everyone, per recipient socket.
    pub direct_deliveries: AtomicU64,
    /// Events dropped per policy: [drop_oldest, latest].
    pub dropped: [AtomicU64; 2],
    /// Sockets evicted as slow readers per policy: [disconnect, drop_oldest, latest].
    pub slow_closes: [AtomicU64; 3],
    /// Channel events the broker skipped because its store no longer had them (pruned
    /// before this node read them), once per event; subscribers got a `lost` frame.
    pub broker_lost: AtomicU64,
    /// Messages read from sockets.
    pub messages_in: AtomicU64,
    /// Messages written to sockets.
    pub messages_out: AtomicU64,
    /// Commands run, by [`CommandKind`] and outcome: 0 is ok, then `ErrorCode::ALL` + 1.
    pub commands: [[AtomicU64; 9]; 2],
}

/// Where a command ran, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// A built-in.
    Builtin = 0,
    /// An `http` backend.
    Http = 1,
}

impl CommandKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Http => "http",
        }
    }
}

impl Stats {
    /// Counts one command's outcome.
    pub fn command(&self, kind: CommandKind, outcome: Result<(), crate::protocol::ErrorCode>) {
        let i = match outcome {
            Ok(()) => 0,
            Err(code) => crate::protocol::ErrorCode::ALL.iter().position(|c| *c == code).map_or(0, |i| i + 1),
        };
        self.commands[kind as usize][i].fetch_add(1, Ordering::Relaxed);
    }
}

impl Stats {
    fn record(&self, policy: SlowReader, fanout: room::Fanout) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.deliveries.fetch_add(fanout.delivered, Ordering::Relaxed);
        if fanout.dropped > 0 {
            let i = if policy == SlowReader::Latest { 1 } else { 0 };
            self.dropped[i].fetch_add(fanout.dropped, Ordering::Relaxed);
        }
        if fanout.evicted > 0 {
            self.slow_closes[policy_index(policy)].fetch_add(fanout.evicted, Ordering::Relaxed);
        }
    }
}

fn policy_index(policy: SlowReader) -> usize {
    match policy {
        SlowReader::Disconnect => 0,
        SlowReader::DropOldest => 1,
        SlowReader::Latest => 2,
    }
}

/// A socket cap was reached (429 before the upgrade).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapExceeded {
    /// The user holds `max_per_user` sockets already.
    #[error("too many sockets for this user")]
    User,
    /// The client address holds `max_per_ip` sockets already.
    #[error("too many sockets from this address")]
    Address,
}

/// Why a subscribe did not happen.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The socket is subscribed to `max_subscriptions` channels already.
    #[error("subscribed to too many channels (at most {0})")]
    TooMany(usize),
    /// No `[[channels]]` rule covers the channel.
    #[error("no channel rule allows `{0}`")]
    NoRule(String),
    /// The socket is gone.
    #[error("socket closed")]
    Gone,
    /// The broker could not answer for the channel's start.
    #[error("broker unavailable")]
    Broker,
}

/// A channel a subscribe joined.
#[derive(Debug, PartialEq, Eq)]
pub struct Subscribed {
    /// Where the channel stood when the socket joined.
    pub position: Position,
    /// The answer to `since` (None when none was given).
    pub recovered: Option<bool>,
}

/// A reserved place under the caps; released on drop.
#[derive(Debug)]
pub struct Slot {
    hub: Hub,
    user: Option<Arc<str>>,
    ip: IpAddr,
}

/// A registered socket; unregistered (its subscriptions left, its slot released) on drop.
#[derive(Debug)]
pub struct Registration {
    id: ConnId,
    _slot: Slot,
}

impl HubSettings {
    /// The hub's slice of `config`.
    pub fn new(config: &Config) -> Self {
        let ws = &config.websocket;
        Self {
            max_per_user: ws.max_per_user,
            max_per_ip: ws.max_per_ip,
            bounds: Bounds { messages: ws.outbox_messages, bytes: ws.outbox_bytes },
            max_subscriptions: ws.max_subscriptions,
            resume_ttl: ws.resume_ttl,
        }
    }
}

impl HubRef {
    /// The hub, unless it is gone (shutdown).
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl Hub {
    /// An empty hub; `broker` builds the broker from a handle back to the hub.
    pub fn new(
        settings: HubSettings,
        rules: Rules,
        bridge: Option<SessionBridge>,
        broker: impl FnOnce(HubRef) -> Arc<dyn Broker>,
    ) -> Self {
        let tokens = resume::Tokens::new(settings.resume_ttl);
        let inner = Arc::new_cyclic(|weak| Inner {
            registry: Mutex::default(),
            rooms: Mutex::default(),
            rules: arc_swap::ArcSwap::from_pointee(rules),
            settings: arc_swap::ArcSwap::from_pointee(settings),
            broker: broker(HubRef(weak.clone())),
            tokens,
            bridge,
            seq: moka::sync::Cache::builder().max_capacity(SEQ_CAPACITY).time_to_idle(SEQ_IDLE).build(),
            stats: Stats::default(),
        });
        Self { inner }
    }

    /// The hub `config` asks for, with its broker.
    pub fn from_config(config: &Config, bridge: Option<SessionBridge>) -> Self {
        Self::new(HubSettings::new(config), Rules::new(&config.channels), bridge, |hub| {
            crate::broker::build(&config.broker, hub)
        })
    }

    /// A hub with the local broker, no rules and no bridge (tests).
    pub fn local(settings: HubSettings, rules: Rules) -> Self {
        Self::new(settings, rules, None, |hub| Arc::new(crate::broker::local::LocalBroker::new(hub)))
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere must not take every socket down with it.
        self.inner.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Room>>> {
        self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The broker events travel through.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    /// The channel rules in force (a reload may replace them; hold the Arc for one decision).
    pub fn rules(&self) -> Arc<Rules> {
        self.inner.rules.load_full()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Each socket's queue bounds.
    pub fn bounds(&self) -> Bounds {
        self.inner.settings.load().bounds
    }

    /// Puts a reloaded config's channel rules and limits in force, then closes with 1012
    /// ([`CloseReason::Reloaded`]) every socket whose route is not among `routes` (the
    /// [`RoutePath::key`](crate::config::RoutePath::key)s still configured) or that is
    /// subscribed to a channel no rule covers any more. Every other socket keeps what it was
    /// admitted with. Returns how many sockets were closed.
    pub fn reload(&self, settings: HubSettings, rules: Rules, routes: &HashSet<String>) -> usize {
        self.inner.settings.store(Arc::new(settings));
        self.inner.rules.store(Arc::new(rules));
        let rules = self.rules();
        let registry = self.registry();
        let gone = |m: &&Member| {
            !routes.contains(&*m.route) || m.channels.keys().any(|channel| rules.for_channel(channel).is_none())
        };
        registry.sockets.values().filter(gone).filter(|m| m.outbox.evict(CloseReason::Reloaded)).count()
    }

    // === sockets ===

    /// Takes a place for a socket of `user` from `ip`, or says which cap is reached.
    pub fn reserve(&self, user: Option<&str>, ip: IpAddr) -> Result<Slot, CapExceeded> {
        let mut registry = self.registry();
        let settings = self.inner.settings.load();
        let user: Option<Arc<str>> = user.map(Arc::from);
        if let Some(user) = &user {
            if registry.user_slots.get(user).copied().unwrap_or(0) >= settings.max_per_user {
                return Err(CapExceeded::User);
            }
        }
        if registry.ip_slots.get(&ip).copied().unwrap_or(0) >= settings.max_per_ip {
            return Err(CapExceeded::Address);
        }
        if let Some(user) = &user {
            *registry.user_slots.entry(user.clone()).or_default() += 1;
        }
        *registry.ip_slots.entry(ip).or_default() += 1;
        Ok(Slot { hub: self.clone(), user, ip })
    }

    /// Registers an open socket so pushes can reach it; `session` is its session cookie's
    /// value (the key revocations name).
    pub fn register(&self, slot: Slot, socket: Socket) -> Registration {
        let mut registry = self.registry();
        let id = socket.id.clone();
        if let Some(user) = &socket.user {
            registry.by_user.entry(Arc::from(user.id.as_str())).or_default().insert(id.clone());
        }
        if let Some(session) = &socket.session {
            registry.by_session.entry(session.clone()).or_default().insert(id.clone());
        }
        registry.by_route.entry(socket.route.clone()).or_default().insert(id.clone());
        let member = Member {
            outbox: socket.outbox,
            user: socket.user,
            session: socket.session,
            route: socket.route,
            channels: HashMap::new(),
        };
        registry.sockets.insert(id.clone(), member);
        Registration { id, _slot: slot }
    }

    /// Queues `msg` for every socket on `route` except `except` (broadcast routes).
    pub fn deliver_to_route(&self, route: &str, except: &str, msg: &Message) -> usize {
        let outboxes: Vec<Outbox> = {
            let registry = self.registry();
            let members = registry.by_route.get(route).into_iter().flatten();
            members
                .filter(|id| &***id != except)
                .filter_map(|id| registry.sockets.get(id).map(|m| m.outbox.clone()))
                .collect()
        };
        self.offer_direct(outboxes, msg.clone())
    }

    /// Delivers a push to a connection, users or everyone on this node (the broker calls
    /// this on every node); a channel target goes to [`Hub::append`] / [`Hub::apply_event`].
    pub fn apply_push(&self, target: &Target, event: &str, data: &Value) -> usize {
        let outboxes: Vec<Outbox> = {
            let registry = self.registry();
            let of = |id: &str| registry.sockets.get(id).map(|m| m.outbox.clone());
            match target {
                Target::Connections(ids) => ids.iter().filter_map(|id| of(id)).collect(),
                Target::Users(users) => users
                    .iter()
                    .flat_map(|u| registry.by_user.get(u.as_str()).into_iter().flatten())
                    .filter_map(|id| of(id))
                    .collect(),
                Target::Broadcast => registry.sockets.values().map(|m| m.outbox.clone()).collect(),
                Target::Channel(_) => Vec::new(),
            }
        };
        self.offer_direct(outboxes, Message::text(protocol::push(event, data)))
    }

    fn offer_direct(&self, outboxes: Vec<Outbox>, frame: Message) -> usize {
        let mut delivered = 0;
        for outbox in outboxes {
            let push = Push { frame: frame.clone(), tag: None, policy: Policy::default() };
            match outbox.offer(push) {
                Offer::Queued | Offer::Dropped(_) => delivered += 1,
                Offer::Evicted => {
                    self.inner.stats.slow_closes[0].fetch_add(1, Ordering::Relaxed);
                }
                Offer::Closed => {}
            }
        }
        self.inner.stats.direct_deliveries.fetch_add(delivered as u64, Ordering::Relaxed);
        delivered
    }

    /// Drops the revoked identity from the session bridge's cache and closes its sockets
    /// with 4401 (the broker calls this on every node). Returns how many were closed.
    pub fn apply_revocation(&self, revocation: &Revocation) -> usize {
        if let Some(bridge) = &self.inner.bridge {
            match revocation {
                Revocation::User(id) => bridge.invalidate_user(id),
                Revocation::Session(key) => bridge.forget_session(key),
            }
        }
        let registry = self.registry();
        let ids = match revocation {
            Revocation::User(id) => registry.by_user.get(id.as_str()),
            Revocation::Session(key) => registry.by_session.get(key.as_str()),
        };
        let members: Vec<&Member> = ids.into_iter().flatten().filter_map(|id| registry.sockets.get(id)).collect();
        members.iter().filter(|m| m.outbox.evict(CloseReason::Revoked)).count()
    }

    /// Closes every socket of `user` with `reason`; returns how many.
    pub fn close_user(&self, user: &str, reason: CloseReason) -> usize {
        let registry = self.registry();
        let ids = registry.by_user.get(user).into_iter().flatten();
        let members: Vec<&Member> = ids.filter_map(|id| registry.sockets.get(id)).collect();
        members.iter().filter(|m| m.outbox.evict(reason.clone())).count()
    }

    /// The next hook sequence number for `key` (a user id, or a connection id when anonymous).
    pub fn next_seq(&self, key: &str) -> u64 {
        let counter = self.inner.seq.get_with_by_ref(key, || Arc::new(AtomicU64::new(0)));
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Forgets `key`'s sequence counter (an anonymous connection's, after its last hook).
    pub fn forget_seq(&self, key: &str) {
        self.inner.seq.invalidate(key);
    }

    /// Sockets open on this node.
    pub fn len(&self) -> usize {
        self.registry().sockets.len()
    }

    /// True when no socket is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sockets open per route group.
    pub fn sockets_by_route(&self) -> Vec<(Arc<str>, usize)> {
        self.registry().by_route.iter().map(|(route, ids)| (route.clone(), ids.len())).collect()
    }

    /// Channels (rooms) this node holds.
    pub fn channels_held(&self) -> usize {
        self.rooms().len()
    }

    /// Sockets evicted as slow readers, every policy together.
    pub fn slow_evictions(&self) -> u64 {
        self.inner.stats.slow_closes.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    // === channels ===

    /// The room of `channel`, made at the broker's origin when this node has none; None
    /// when no rule covers the channel.
    pub async fn room(&self, channel: &str) -> Result<Arc<Room>, SubscribeError> {
        if let Some(room) = self.rooms().get(channel) {
            return Ok(room.clone());
        }
        let Some(rule) = self.rules().for_channel(channel) else {
            return Err(SubscribeError::NoRule(channel.to_string()));
        };
        let origin = self.inner.broker.origin(channel).await.map_err(|e| {
            tracing::warn!(channel, error = %e, "broker cannot say where the channel starts");
            SubscribeError::Broker
        })?;
        Ok(self.room_at(channel, rule, origin))
    }

    /// The room of `channel` if this node has one.
    pub fn existing_room(&self, channel: &str) -> Option<Arc<Room>> {
        self.rooms().get(channel).cloned()
    }

    /// The room, or a new one starting after `origin` (someone may have made it meanwhile).
    fn room_at(&self, channel: &str, rule: Arc<Rule>, origin: Position) -> Arc<Room> {
        let mut rooms = self.rooms();
        if let Some(room) = rooms.get(channel) {
            return room.clone();
        }
        if rooms.len() >= MAX_IDLE_ROOMS {
            let now = Instant::now();
            rooms.retain(|_, room| !room.sweep(now + room::IDLE_ROOM_KEEP.max(room.rule.history_ttl)));
        }
        let name: Arc<str> = Arc::from(channel);
        let room = Arc::new(Room::new(name.clone(), rule, origin));
        rooms.insert(name, room.clone());
        room
    }

    /// Numbers, stores and fans out an event (the local broker); None when no rule covers
    /// the channel.
    pub fn append(&self, channel: &str, event: &str, data: Arc<Value>) -> Option<Position> {
        let room = match self.existing_room(channel) {
            Some(room) => room,
            None => {
                let rule = self.rules().for_channel(channel)?;
                let origin = Position { offset: 0, epoch: crate::broker::fresh_epoch() };
                self.room_at(channel, rule, origin)
            }
        };
        Some(room.append(event, data, &self.inner.stats))
    }

    /// Applies an event the broker numbered (see the broker contract); an event for a
    /// channel no rule covers is ignored.
    pub fn apply_event(&self, event: &Event) {
        let room = match self.existing_room(&event.channel) {
            Some(room) => room,
            None => {
                let Some(rule) = self.rules().for_channel(&event.channel) else { return };
                let before = Position { offset: event.position.offset - 1, epoch: event.position.epoch.clone() };
                self.room_at(&event.channel, rule, before)
            }
        };
        room.apply(event, &self.inner.stats);
    }

    /// Joins socket `conn` to `channel`, recovering from `since` if given. The socket stays
    /// held (no push reaches it) until [`Hub::release`], called once the reply is queued.
    pub async fn subscribe(
        &self,
        conn: &ConnId,
        channel: &str,
        since: Option<Position>,
        filter: Option<Filter>,
    ) -> Result<Subscribed, SubscribeError> {
        let room = self.room(channel).await?;
        let (outbox, user) = {
            let mut registry = self.registry();
            let max = self.inner.settings.load().max_subscriptions;
            let member = registry.sockets.get_mut(conn).ok_or(SubscribeError::Gone)?;
            if !member.channels.contains_key(channel) && member.channels.len() >= max {
                return Err(SubscribeError::TooMany(max));
            }
            (member.outbox.clone(), member.user.clone())
        };
        let kept_filter = filter.clone();
        let hold = self.inner.settings.load().bounds.messages;
        let joining = Joining { conn: conn.clone(), outbox, user, filter, since, hold };
        let joined = room.join(joining);
        let at = match &joined {
            Joined::Ready { position, .. } | Joined::NeedsReplay { position, .. } => position.clone(),
        };
        if let Some(member) = self.registry().sockets.get_mut(conn) {
            member.channels.insert(room.name.clone(), (at, kept_filter));
        } else {
            room.leave(conn);
            return Err(SubscribeError::Gone);
        }
        match joined {
            Joined::Ready { position, recovered } => Ok(Subscribed { position, recovered }),
            Joined::NeedsReplay { position, after } => {
                let replay = self.inner.broker.replay(channel, &after, position.offset).await;
                let recovered = match replay {
                    Ok(Some(events)) => room.fill(conn, &position, &events),
                    Ok(None) => false,
                    Err(e) => {
                        tracing::warn!(channel, error = %e, "broker replay failed");
                        false
                    }
                };
                Ok(Subscribed { position, recovered: Some(recovered) })
            }
        }
    }

    /// Lets a held subscriber's frames go, in order, once its subscribe reply is queued.
    pub async fn release(&self, conn: &ConnId, channel: &str) {
        if let Some(room) = self.existing_room(channel) {
            room.release(conn).await;
        }
    }

    /// Leaves `channel`; true when the socket was subscribed.
    pub fn unsubscribe(&self, conn: &ConnId, channel: &str) -> bool {
        if let Some(member) = self.registry().sockets.get_mut(conn) {
            member.channels.remove(channel);
        }
        self.existing_room(channel).is_some_and(|room| room.leave(conn))
    }

    /// Parks socket `conn`'s subscriptions under its resume `token` (called as it closes,
    /// before its registration goes): each at the last position its queue sent.
    pub fn park(&self, conn: &ConnId, token: &str) {
        let session = {
            let registry = self.registry();
            let Some(member) = registry.sockets.get(conn) else { return };
            let channels = member
                .channels
                .iter()
                .map(|(channel, (joined, filter))| {
                    let sent =
                        member.outbox.sent(channel).filter(|p| p.epoch == joined.epoch && p.offset > joined.offset);
                    resume::Parked {
                        channel: channel.clone(),
                        position: sent.unwrap_or_else(|| joined.clone()),
                        filter: filter.clone(),
                    }
                })
                .collect();
            resume::Session { user: member.user.as_ref().map(|u| Arc::from(u.id.as_str())), channels }
        };
        self.inner.tokens.park(token, session);
    }

    /// The resume tokens of this node.
    pub fn tokens(&self) -> &resume::Tokens {
        &self.inner.tokens
    }

    /// The channels this node has rooms for: name, subscribers, position.
    pub fn channels(&self) -> Vec<(Arc<str>, usize, Position)> {
        let rooms: Vec<Arc<Room>> = self.rooms().values().cloned().collect();
        rooms.into_iter().map(|r| (r.name.clone(), r.subscribers(), r.position())).collect()
    }

    /// Forgets expired history and drops idle rooms; called periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let rooms: Vec<Arc<Room>> = self.rooms().values().cloned().collect();
        let idle: Vec<Arc<str>> = rooms.iter().filter(|r| r.sweep(now)).map(|r| r.name.clone()).collect();
        if idle.is_empty() {
            return;
        }
        let mut map = self.rooms();
        for name in idle {
            // Re-checked under the map's lock: a subscriber may have joined meanwhile.
            if map.get(&name).is_some_and(|r| r.sweep(now)) {
                map.remove(&name);
            }
        }
    }
}

/// What the registry needs to know about a new socket.
#[derive(Debug)]
pub struct Socket {
    /// The connection id.
    pub id: ConnId,
    /// The hub's group for its route (broadcast routes deliver to it).
    pub route: Arc<str>,
    /// Its queue.
    pub outbox: Outbox,
    /// Its user, if any.
    pub user: Option<Arc<User>>,
    /// Its session cookie's value, if any: revocations of that session close it.
    pub session: Option<Arc<str>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut registry = self.hub.registry();
        if let Some(user) = &self.user {
            decrement(&mut registry.user_slots, user);
        }
        decrement(&mut registry.ip_slots, &self.ip);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let hub = &self._slot.hub;
        let member = {
            let mut registry = hub.registry();
            let Some(member) = registry.sockets.remove(&self.id) else { return };
            if let Some(user) = &member.user {
                remove_from(&mut registry.by_user, &user.id, &self.id);
            }
            if let Some(session) = &member.session {
                remove_from(&mut registry.by_session, session, &self.id);
            }
            remove_from(&mut registry.by_route, &member.route, &self.id);
            member
        };
        for channel in member.channels.keys() {
            if let Some(room) = hub.existing_room(channel) {
                room.leave(&self.id);
            }
        }
    }
}

fn decrement<K, Q>(map: &mut HashMap<Q, usize>, key: &K)
where
    K: std::hash::Hash + Eq + ?Sized,
    Q: std::hash::Hash + Eq + std::borrow::Borrow<K>,
{
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

fn remove_from(map: &mut HashMap<Arc<str>, HashSet<ConnId>>, key: &str, id: &ConnId) {
    if let Some(set) = map.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
