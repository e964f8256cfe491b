//! One channel's room, behind its own lock: its position (offset and epoch), its history,
//! its subscribers and its presence. Everything that must be atomic for the recovery
//! invariant happens under that lock: an event is numbered, stored and fanned out in one
//! step, and a subscriber joins by reading history from its `since` and joining live in one
//! step, so no event falls between the replay and the live stream, and none comes twice.
//!
//! A new subscriber is *held* until its subscribe reply is queued: its replay and any live
//! event that arrives meanwhile wait in its held list (bounded), and [`Room::release`]
//! moves them to its outbox as room allows. So the reply always comes before the first push.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::filter::Filter;
use super::outbox::{Offer, Outbox, Push, Tag, TryQueue};
use super::rules::Rule;
use super::{ConnId, Stats};
use crate::broker::{Event, Position};
use crate::django::User;
use crate::protocol;
use crate::ws::CloseReason;

/// A room with no subscribers and no history is dropped after this long unused (its
/// position is then forgotten: a later subscriber starts a new epoch).
pub const IDLE_ROOM_KEEP: Duration = Duration::from_secs(300);

/// One channel.
#[derive(Debug)]
pub struct Room {
    /// The channel's name.
    pub name: Arc<str>,
    /// The rule its history, presence and slow-reader policy follow.
    pub rule: Arc<Rule>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    position: Position,
    history: VecDeque<Stored>,
    subscribers: HashMap<ConnId, Subscriber>,
    /// Users present (pk → their sockets here, and the user for `join` frames).
    present: HashMap<Arc<str>, (usize, Arc<User>)>,
    anonymous: usize,
    /// Last publish, join or query: idle rooms are dropped some time after it.
    touched: Instant,
}

#[derive(Debug)]
struct Stored {
    offset: u64,
    at: Instant,
    frame: Utf8Bytes,
    data: Arc<Value>,
}

#[derive(Debug)]
struct Subscriber {
    outbox: Outbox,
    filter: Option<Filter>,
    user: Option<Arc<User>>,
    /// Frames waiting for the subscribe reply (None once live).
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    frames: VecDeque<Push>,
    /// Most frames held before the socket counts as a slow reader.
    cap: usize,
}

/// How a subscriber asked to join.
#[derive(Debug)]
pub struct Joining {
    /// The socket.
    pub conn: ConnId,
    /// Its queue.
    pub outbox: Outbox,
    /// Its user, for presence.
    pub user: Option<Arc<User>>,
    /// A compiled filter, if any.
    pub filter: Option<Filter>,
    /// The last position the client saw, if it asks to recover.
    pub since: Option<Position>,
    /// Most frames that may wait for the reply beyond the replay (the socket's bound).
    pub hold: usize,
}

/// The outcome of a join.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// Joined at `position`; `recovered` answers `since` (None when none was given).
    Ready { position: Position, recovered: Option<bool> },
    /// Joined at `position`, but history here does not reach back to `after`: the events
    /// after it up to `position` must come from the broker ([`Room::fill`]).
    NeedsReplay { position: Position, after: Position },
}

/// What one event's fan-out did, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Frames queued (or held for a subscriber being answered).
    pub delivered: u64,
    /// Events dropped by `drop_oldest` / `latest`.
    pub dropped: u64,
    /// Sockets this event evicted as slow readers.
    pub evicted: u64,
}

impl Room {
    /// An empty room starting after `position`.
    pub fn new(name: Arc<str>, rule: Arc<Rule>, position: Position) -> Self {
        let state = State {
            position,
            history: VecDeque::new(),
            subscribers: HashMap::new(),
            present: HashMap::new(),
            anonymous: 0,
            touched: Instant::now(),
        };
        Self { name, rule, state: Mutex::new(state) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel's position now.
    pub fn position(&self) -> Position {
        let mut state = self.lock();
        state.touched = Instant::now();
        state.position.clone()
    }

    /// Subscribers here now.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers.len()
    }

    /// Numbers the next event (the local broker), stores and fans it out; gives its position.
    pub fn append(&self, event: &str, data: Arc<Value>, stats: &Stats) -> Position {
        let mut state = self.lock();
        let position = Position { offset: state.position.offset + 1, epoch: state.position.epoch.clone() };
        self.publish_locked(&mut state, position.clone(), event, data, stats);
        position
    }

    /// Applies an event numbered by the broker (see the contract in `broker`): a duplicate
    /// is ignored, another epoch starts a new run, a gap forgets history.
    pub fn apply(&self, event: &Event, stats: &Stats) {
        let mut state = self.lock();
        let current = &state.position;
        let next = event.position.offset;
        if event.position.epoch == current.epoch {
            if next <= current.offset {
                return;
            }
            if next > current.offset + 1 {
                // The broker no longer has them (pruned before this node read them): the
                // subscribers are told the range, never left a silent gap.
                let (from, to) = (current.offset + 1, next - 1);
                tracing::warn!(channel = %self.name, from, to, "broker lost events; subscribers told, history forgotten");
                state.history.clear();
                self.lost_locked(&mut state, from, to);
                stats.broker_lost.fetch_add(to - from + 1, std::sync::atomic::Ordering::Relaxed);
            }
        } else {
            state.history.clear();
        }
        self.publish_locked(&mut state, event.position.clone(), &event.event, event.data.clone(), stats);
    }

    fn publish_locked(&self, state: &mut State, position: Position, event: &str, data: Arc<Value>, stats: &Stats) {
        let now = Instant::now();
        let frame: Utf8Bytes = protocol::channel_push(&self.name, event, &data, &position).into();
        let tag = Tag { channel: self.name.clone(), offset: position.offset, epoch: position.epoch.clone() };
        let push = Push { frame: Message::Text(frame.clone()), tag: Some(tag), policy: self.rule.policy };
        state.position = position;
        state.touched = now;
        if self.rule.history_size > 0 {
            state.history.push_back(Stored { offset: state.position.offset, at: now, frame, data: data.clone() });
            while state.history.len() > self.rule.history_size {
                state.history.pop_front();
            }
            self.prune(state, now);
        }
        let mut fanout = Fanout::default();
        for sub in state.subscribers.values_mut() {
            if sub.filter.as_ref().is_some_and(|f| !f.matches(&data)) {
                continue;
            }
            sub.deliver(push.clone(), &mut fanout);
        }
        stats.record(self.rule.policy.slow_reader, fanout);
    }

    /// Tells every subscriber that events `from..=to` will never come (a `lost` frame, in
    /// order before the next push: queued behind what it has, or held with a joiner's frames).
    fn lost_locked(&self, state: &mut State, from: u64, to: u64) {
        for sub in state.subscribers.values_mut() {
            match sub.held.as_mut() {
                Some(held) => {
                    let frame = Message::text(protocol::lost(&self.name, from, to));
                    held.frames.push_back(Push { frame, tag: None, policy: Default::default() });
                    held.cap += 1;
                }
                None => sub.outbox.lost(&self.name, from, to),
            }
        }
    }

    fn prune(&self, state: &mut State, now: Instant) {
        let ttl = self.rule.history_ttl;
        while state.history.front().is_some_and(|e| now.duration_since(e.at) >= ttl) {
            state.history.pop_front();
        }
    }

    /// Joins a subscriber (held until [`Room::release`]); see [`Joined`].
    pub fn join(&self, joining: Joining) -> Joined {
        let mut state = self.lock();
        let now = Instant::now();
        self.prune(&mut state, now);
        state.touched = now;
        let position = state.position.clone();
        let (replay, outcome) = match &joining.since {
            None => (VecDeque::new(), Joined::Ready { position: position.clone(), recovered: None }),
            Some(since) => match self.recover(&state, since, joining.filter.as_ref()) {
                Recovery::Covered(frames) => {
                    (frames, Joined::Ready { position: position.clone(), recovered: Some(true) })
                }
                Recovery::Lost => {
                    (VecDeque::new(), Joined::Ready { position: position.clone(), recovered: Some(false) })
                }
                Recovery::AskBroker => {
                    (VecDeque::new(), Joined::NeedsReplay { position: position.clone(), after: since.clone() })
                }
            },
        };
        let cap = replay.len() + joining.hold.max(1);
        let subscriber = Subscriber {
            outbox: joining.outbox,
            filter: joining.filter,
            user: joining.user.clone(),
            held: Some(Held { frames: replay, cap }),
        };
        if let Some(old) = state.subscribers.insert(joining.conn.clone(), subscriber) {
            self.absent(&mut state, old.user.as_ref(), &joining.conn);
        }
        self.present(&mut state, joining.user.as_ref(), &joining.conn);
        outcome
    }

    /// What history can do for a subscriber that last saw `since`.
    fn recover(&self, state: &State, since: &Position, filter: Option<&Filter>) -> Recovery {
        let now = &state.position;
        if since.epoch != now.epoch || since.offset > now.offset {
            return Recovery::Lost;
        }
        if since.offset == now.offset {
            return Recovery::Covered(VecDeque::new());
        }
        let reaches = state.history.front().is_some_and(|first| first.offset <= since.offset + 1);
        if !reaches {
            return Recovery::AskBroker;
        }
        let frames = state
            .history
            .iter()
            .filter(|e| e.offset > since.offset)
            .filter(|e| filter.is_none_or(|f| f.matches(&e.data)))
            .map(|e| self.stored_push(e, &now.epoch))
            .collect();
        Recovery::Covered(frames)
    }

    fn stored_push(&self, e: &Stored, epoch: &crate::broker::Epoch) -> Push {
        let tag = Tag { channel: self.name.clone(), offset: e.offset, epoch: epoch.clone() };
        Push { frame: Message::Text(e.frame.clone()), tag: Some(tag), policy: self.rule.policy }
    }

    /// Puts the broker's replay (events after the join's `after`, up to where the subscriber
    /// joined) ahead of what was held meanwhile. Returns false when the subscriber left or
    /// the events do not line up (the caller answers `recovered: false`).
    pub fn fill(&self, conn: &ConnId, joined_at: &Position, events: &[Event]) -> bool {
        let mut state = self.lock();
        let Some(sub) = state.subscribers.get_mut(conn) else { return false };
        let Some(held) = sub.held.as_mut() else { return false };
        let lined_up =
            events.iter().all(|e| e.position.epoch == joined_at.epoch && e.position.offset <= joined_at.offset)
                && events.windows(2).all(|w| w[1].position.offset == w[0].position.offset + 1)
                && events.last().is_none_or(|e| e.position.offset == joined_at.offset);
        if !lined_up {
            return false;
        }
        let pushes: Vec<Push> = events
            .iter()
            .filter(|e| sub.filter.as_ref().is_none_or(|f| f.matches(&e.data)))
            .map(|e| {
                let frame = Message::text(protocol::channel_push(&self.name, &e.event, &e.data, &e.position));
                let tag =
                    Tag { channel: self.name.clone(), offset: e.position.offset, epoch: e.position.epoch.clone() };
                Push { frame, tag: Some(tag), policy: self.rule.policy }
            })
            .collect();
        held.cap += pushes.len();
        for push in pushes.into_iter().rev() {
            held.frames.push_front(push);
        }
        true
    }

    /// Moves a held subscriber's frames to its outbox as room allows, then makes it live.
    /// Called once its subscribe reply is queued. Returns when it is live or gone.
    pub async fn release(&self, conn: &ConnId) {
        loop {
            let outbox = {
                let mut state = self.lock();
                let Some(sub) = state.subscribers.get_mut(conn) else { return };
                let Some(held) = sub.held.as_mut() else { return };
                while let Some(push) = held.frames.pop_front() {
                    match sub.outbox.try_queue(push) {
                        Ok(()) => {}
                        Err(TryQueue::Full(push)) => {
                            held.frames.push_front(*push);
                            break;
                        }
                        Err(TryQueue::Gone) => return,
                    }
                }
                if held.frames.is_empty() {
                    sub.held = None;
                    return;
                }
                sub.outbox.clone()
            };
            outbox.until_room().await;
        }
    }

    /// Removes a subscriber; true when it was here.
    pub fn leave(&self, conn: &ConnId) -> bool {
        let mut state = self.lock();
        let Some(sub) = state.subscribers.remove(conn) else { return false };
        state.touched = Instant::now();
        self.absent(&mut state, sub.user.as_ref(), conn);
        true
    }

    /// Counts a subscriber in presence; the first socket of a user tells the others.
    fn present(&self, state: &mut State, user: Option<&Arc<User>>, conn: &ConnId) {
        if !self.rule.presence {
            return;
        }
        let Some(user) = user else {
            state.anonymous += 1;
            return;
        };
        let entry = state.present.entry(Arc::from(user.id.as_str())).or_insert_with(|| (0, user.clone()));
        entry.0 += 1;
        if entry.0 == 1 {
            self.announce(state, "join", user, conn);
        }
    }

    /// Uncounts a subscriber; the last socket of a user tells the others it left.
    fn absent(&self, state: &mut State, user: Option<&Arc<User>>, conn: &ConnId) {
        if !self.rule.presence {
            return;
        }
        let Some(user) = user else {
            state.anonymous = state.anonymous.saturating_sub(1);
            return;
        };
        let Some(entry) = state.present.get_mut(user.id.as_str()) else { return };
        entry.0 -= 1;
        if entry.0 == 0 {
            state.present.remove(user.id.as_str());
            self.announce(state, "leave", user, conn);
        }
    }

    fn announce(&self, state: &mut State, kind: &str, user: &User, except: &ConnId) {
        let frame = Message::text(protocol::presence(kind, &self.name, user));
        let push = Push { frame, tag: None, policy: Default::default() };
        let mut fanout = Fanout::default();
        for (id, sub) in state.subscribers.iter_mut() {
            if id != except {
                sub.deliver(push.clone(), &mut fanout);
            }
        }
    }

    /// Who is here: the users (once each) and how many sockets in all, anonymous included.
    pub fn presence(&self) -> (Vec<Arc<User>>, usize) {
        let mut state = self.lock();
        state.touched = Instant::now();
        let users = state.present.values().map(|(_, u)| u.clone()).collect();
        (users, state.subscribers.len())
    }

    /// The events kept after `after` (all kept when None), oldest first, at most `limit`,
    /// with the position now.
    pub fn history(&self, after: Option<u64>, limit: usize) -> (Vec<Value>, Position) {
        let mut state = self.lock();
        let now = Instant::now();
        self.prune(&mut state, now);
        state.touched = now;
        let events = state
            .history
            .iter()
            .filter(|e| after.is_none_or(|a| e.offset > a))
            .take(limit)
            .filter_map(|e| serde_json::from_str::<Value>(&e.frame).ok())
            .filter_map(|mut frame| frame.get_mut("push").map(Value::take))
            .collect();
        (events, state.position.clone())
    }

    /// Forgets expired history; true when the room is idle and may be dropped.
    pub fn sweep(&self, now: Instant) -> bool {
        let mut state = self.lock();
        self.prune(&mut state, now);
        let keep = IDLE_ROOM_KEEP.max(self.rule.history_ttl);
        state.subscribers.is_empty() && state.history.is_empty() && now.duration_since(state.touched) >= keep
    }
}

enum Recovery {
    Covered(VecDeque<Push>),
    Lost,
    AskBroker,
}

impl Subscriber {
    /// Queues (or holds) one push; counts what happened.
    fn deliver(&mut self, push: Push, fanout: &mut Fanout) {
        if let Some(held) = self.held.as_mut() {
            if held.frames.len() < held.cap {
                held.frames.push_back(push);
                fanout.delivered += 1;
            } else if self.outbox.evict(CloseReason::SlowReader) {
                fanout.evicted += 1;
            }
            return;
        }
        match self.outbox.offer(push) {
            Offer::Queued => fanout.delivered += 1,
            Offer::Dropped(n) => {
                fanout.delivered += 1;
                fanout.dropped += n as u64;
            }
            Offer::Evicted => fanout.evicted += 1,
            Offer::Closed => {}
        }
    }
}
