//! The hub: which sockets are open, whose they are, and delivery to them by connection, by
//! user, by route and to everyone. Also the per-user and per-address socket caps and the
//! per-user hook sequence numbers. All of it is per node (see DESIGN.md, "Publishing").
//!
//! Channels, history and presence arrive with the hub issue; this part addresses sockets.

pub mod outbox;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_tungstenite::tungstenite::Message;

pub use self::outbox::{outbox, Eviction, Inbox, Outbox, Refused, SLOW_READER_CLOSE};

/// A connection id (a UUID) shared without copying.
pub type ConnId = Arc<str>;

/// Shared handle; clones see the same sockets.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    max_per_user: usize,
    max_per_ip: usize,
    slow_evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    sockets: HashMap<ConnId, Member>,
    by_user: HashMap<Arc<str>, HashSet<ConnId>>,
    by_route: HashMap<Arc<str>, HashSet<ConnId>>,
    user_slots: HashMap<Arc<str>, usize>,
    ip_slots: HashMap<IpAddr, usize>,
    seq: HashMap<Arc<str>, u64>,
}

#[derive(Debug)]
struct Member {
    outbox: Outbox,
    user: Option<Arc<str>>,
    route: Arc<str>,
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

/// A reserved place under the caps; released on drop.
#[derive(Debug)]
pub struct Slot {
    hub: Hub,
    user: Option<Arc<str>>,
    ip: IpAddr,
}

/// A registered socket; unregistered (and its slot released) on drop.
#[derive(Debug)]
pub struct Registration {
    id: ConnId,
    _slot: Slot,
}

/// Who a push goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One socket.
    Connection(String),
    /// Every socket of one user (pk as a string).
    User(String),
    /// Every socket on this node.
    Broadcast,
}

impl Hub {
    /// An empty hub with the configured caps.
    pub fn new(max_per_user: usize, max_per_ip: usize) -> Self {
        let inner = Inner { state: Mutex::default(), max_per_user, max_per_ip, slow_evictions: AtomicU64::new(0) };
        Self { inner: Arc::new(inner) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take every socket down with it.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a socket of `user` from `ip`, or says which cap is reached.
    pub fn reserve(&self, user: Option<&str>, ip: IpAddr) -> Result<Slot, CapExceeded> {
        let mut state = self.state();
        let user: Option<Arc<str>> = user.map(Arc::from);
        if let Some(user) = &user {
            if state.user_slots.get(user).copied().unwrap_or(0) >= self.inner.max_per_user {
                return Err(CapExceeded::User);
            }
        }
        if state.ip_slots.get(&ip).copied().unwrap_or(0) >= self.inner.max_per_ip {
            return Err(CapExceeded::Address);
        }
        if let Some(user) = &user {
            *state.user_slots.entry(user.clone()).or_default() += 1;
        }
        *state.ip_slots.entry(ip).or_default() += 1;
        Ok(Slot { hub: self.clone(), user, ip })
    }

    /// Registers an open socket so pushes can reach it.
    pub fn register(&self, slot: Slot, id: ConnId, route: Arc<str>, outbox: Outbox) -> Registration {
        let mut state = self.state();
        if let Some(user) = &slot.user {
            state.by_user.entry(user.clone()).or_default().insert(id.clone());
        }
        state.by_route.entry(route.clone()).or_default().insert(id.clone());
        state.sockets.insert(id.clone(), Member { outbox, user: slot.user.clone(), route });
        Registration { id, _slot: slot }
    }

    /// Queues `msg` for the target's sockets; returns how many took it.
    pub fn deliver(&self, target: &Target, msg: &Message) -> usize {
        let outboxes: Vec<Outbox> = {
            let state = self.state();
            match target {
                Target::Connection(id) => {
                    state.sockets.get(id.as_str()).map(|m| m.outbox.clone()).into_iter().collect()
                }
                Target::User(user) => state
                    .by_user
                    .get(user.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|id| state.sockets.get(id).map(|m| m.outbox.clone()))
                    .collect(),
                Target::Broadcast => state.sockets.values().map(|m| m.outbox.clone()).collect(),
            }
        };
        self.offer_all(outboxes, msg)
    }

    /// Queues `msg` for every socket on `route` except `except`.
    pub fn deliver_to_route(&self, route: &str, except: &str, msg: &Message) -> usize {
        let outboxes: Vec<Outbox> = {
            let state = self.state();
            let members = state.by_route.get(route).into_iter().flatten();
            members
                .filter(|id| &***id != except)
                .filter_map(|id| state.sockets.get(id).map(|m| m.outbox.clone()))
                .collect()
        };
        self.offer_all(outboxes, msg)
    }

    fn offer_all(&self, outboxes: Vec<Outbox>, msg: &Message) -> usize {
        let mut delivered = 0;
        for outbox in outboxes {
            match outbox.offer(msg.clone()) {
                Ok(()) => delivered += 1,
                Err(Refused::Full) => {
                    self.inner.slow_evictions.fetch_add(1, Ordering::Relaxed);
                }
                Err(Refused::Closed) => {}
            }
        }
        delivered
    }

    /// Closes every socket of `user` with `code` (revocation); returns how many.
    pub fn close_user(&self, user: &str, code: u16, reason: &'static str) -> usize {
        let state = self.state();
        let ids = state.by_user.get(user).into_iter().flatten();
        let members: Vec<&Member> = ids.filter_map(|id| state.sockets.get(id)).collect();
        members.iter().for_each(|m| m.outbox.evict(code, reason));
        members.len()
    }

    /// The next hook sequence number for `key` (a user id, or a connection id when anonymous).
    pub fn next_seq(&self, key: &str) -> u64 {
        let mut state = self.state();
        let seq = state.seq.entry(Arc::from(key)).or_default();
        *seq += 1;
        *seq
    }

    /// Sockets open on this node.
    pub fn len(&self) -> usize {
        self.state().sockets.len()
    }

    /// True when no socket is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sockets evicted because their queue was full.
    pub fn slow_evictions(&self) -> u64 {
        self.inner.slow_evictions.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.hub.state();
        if let Some(user) = &self.user {
            decrement(&mut state.user_slots, user);
        }
        decrement(&mut state.ip_slots, &self.ip);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self._slot.hub.state();
        let Some(member) = state.sockets.remove(&self.id) else { return };
        if let Some(user) = &member.user {
            remove_from(&mut state.by_user, user, &self.id);
        }
        remove_from(&mut state.by_route, &member.route, &self.id);
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
