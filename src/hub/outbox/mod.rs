//! One socket's outgoing queue: bounded in messages and bytes, holding frames whose bytes
//! are shared with every other subscriber of the same event (serialised once by the hub).
//!
//! Two ways in. Replies to the socket's own commands ([`Outbox::send`]) wait for room: the
//! socket asked for them, so they are back-pressure on its own commands. Pushes from
//! elsewhere ([`Outbox::offer`]) never wait: at the bound the push's slow-reader policy
//! decides, in [`Queue::admit`] and nowhere else:
//! - `disconnect`: the socket is evicted (close 4008; it recovers on reconnect);
//! - `drop_oldest`: this channel's oldest queued events are dropped and a `lost` frame
//!   with the dropped range takes their place;
//! - `latest`: this channel's queued events are dropped and only the new one kept.
//!
//! A plain deque behind a mutex rather than a channel: an idle socket's queue then costs
//! one small allocation instead of a channel's preallocated block (~2 KiB per socket).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::config::SlowReader;
use crate::protocol;
use crate::ws::CloseReason;

/// The sending side, held by the hub and the socket's command tasks; cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The receiving side, held by the socket's write loop; dropping it closes the queue.
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Woken when something is queued (the write loop waits on it).
    data: Notify,
    /// Woken when room is made (senders of replies wait on it).
    room: Notify,
    /// Woken once, when the socket is asked to close.
    evicted: Notify,
    close: OnceLock<CloseReason>,
    /// Set when the write loop is gone or the socket was evicted: nothing more goes in.
    closed: AtomicBool,
}

/// A push to offer: the shared frame and what the slow-reader policy needs to know.
#[derive(Clone, Debug)]
pub struct Push {
    /// The encoded frame, shared with every other recipient.
    pub frame: Message,
    /// The channel and offset, for channel pushes (others are not recoverable).
    pub tag: Option<Tag>,
    /// What to do at the bound.
    pub policy: Policy,
}

/// A channel push's place in its channel.
#[derive(Clone, Debug)]
pub struct Tag {
    /// The channel's name.
    pub channel: Arc<str>,
    /// The event's offset in it.
    pub offset: u64,
    /// The run the offset belongs to.
    pub epoch: crate::broker::Epoch,
}

/// A channel's slow-reader policy and its own bounds within a socket's queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// At the bound: disconnect, drop_oldest or latest.
    pub slow_reader: SlowReader,
    /// Most events of this channel queued at once (None: only the socket's bound).
    pub max_messages: Option<usize>,
    /// Most bytes of this channel queued at once (None: only the socket's bound).
    pub max_bytes: Option<usize>,
}

/// What became of an offered push.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued as it is.
    Queued,
    /// Queued or not, and this many events were dropped for it (`drop_oldest`: a `lost`
    /// frame reports them; `latest`: superseded by the new one).
    Dropped(usize),
    /// This offer evicted the socket (close 4008).
    Evicted,
    /// The socket is gone or already closing; nothing was queued.
    Closed,
}

/// A held push was not queued by [`Outbox::try_queue`].
#[derive(Debug)]
pub enum TryQueue {
    /// No room now; the push is handed back.
    Full(Box<Push>),
    /// The socket is gone or closing.
    Gone,
}

/// A reply could not be queued: the socket is gone or closing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("socket closed")]
pub struct Gone;

/// The socket's bounds, from `[websocket] outbox_messages` / `outbox_bytes`.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Most frames queued.
    pub messages: usize,
    /// Most bytes queued.
    pub bytes: usize,
}

#[derive(Debug)]
struct Queue {
    entries: VecDeque<Entry>,
    bytes: usize,
    bounds: Bounds,
    /// Frames and bytes queued per channel, for channels with bounds of their own.
    per_channel: HashMap<Arc<str>, (usize, usize)>,
    /// `lost` entries queued: not counted against the bound (at most one per channel, so
    /// bounded by the socket's subscriptions).
    markers: usize,
    /// The last position taken by the write loop, per channel (for resume tokens; one
    /// entry per channel the socket was sent something of, so bounded the same way).
    sent: HashMap<Arc<str>, crate::broker::Position>,
}

#[derive(Debug)]
enum Entry {
    Frame {
        frame: Message,
        tag: Option<Tag>,
        counted: bool,
    },
    /// Events of `channel` from `from` to `to` were dropped (`drop_oldest`); encoded when sent.
    Lost {
        channel: Arc<str>,
        from: u64,
        to: u64,
    },
}

/// A queue bounded at `bounds`.
pub fn outbox(bounds: Bounds) -> (Outbox, Inbox) {
    let bounds = Bounds { messages: bounds.messages.max(1), bytes: bounds.bytes };
    let queue = Queue {
        entries: VecDeque::new(),
        bytes: 0,
        bounds,
        per_channel: HashMap::new(),
        markers: 0,
        sent: HashMap::new(),
    };
    let shared = Arc::new(Shared {
        queue: Mutex::new(queue),
        data: Notify::new(),
        room: Notify::new(),
        evicted: Notify::new(),
        close: OnceLock::new(),
        closed: AtomicBool::new(false),
    });
    (Outbox { shared: shared.clone() }, Inbox { shared })
}

// === impl Queue ===

/// What the policy decided for one push at the bound.
enum Admission {
    Queued,
    Dropped(usize),
    Evict,
}

impl Queue {
    fn frames(&self) -> usize {
        self.entries.len() - self.markers
    }

    fn fits(&self, len: usize) -> bool {
        self.frames() < self.bounds.messages && self.bytes + len <= self.bounds.bytes
    }

    fn fits_channel(&self, push: &Push, len: usize) -> bool {
        let Some(tag) = &push.tag else { return true };
        let (frames, bytes) = self.per_channel.get(&tag.channel).copied().unwrap_or_default();
        push.policy.max_messages.is_none_or(|max| frames < max)
            && push.policy.max_bytes.is_none_or(|max| bytes + len <= max)
    }

    /// The one place a push is let in, or the channel's slow-reader policy applied.
    fn admit(&mut self, push: Push) -> Admission {
        let len = push.frame.len();
        if self.fits(len) && self.fits_channel(&push, len) {
            self.push_back(push);
            return Admission::Queued;
        }
        let Some(tag) = push.tag.clone() else { return Admission::Evict };
        match push.policy.slow_reader {
            SlowReader::Disconnect => Admission::Evict,
            SlowReader::Latest => {
                let dropped = self.remove_channel(&tag.channel, usize::MAX).len();
                if self.fits(len) {
                    self.push_back(push);
                    Admission::Dropped(dropped)
                } else {
                    // Everything queued belongs to other channels: this socket is not reading.
                    Admission::Evict
                }
            }
            SlowReader::DropOldest => {
                let mut dropped = Vec::new();
                while !(self.fits(len) && self.fits_channel(&push, len)) {
                    let oldest = self.remove_channel(&tag.channel, 1);
                    if oldest.is_empty() {
                        break;
                    }
                    dropped.extend(oldest);
                }
                let mut offsets: Vec<u64> = dropped.iter().map(|(_, offset)| *offset).collect();
                let at = dropped.first().map(|(at, _)| *at);
                if self.fits(len) && self.fits_channel(&push, len) {
                    self.push_back(push);
                } else {
                    offsets.push(tag.offset);
                }
                let count = offsets.len();
                self.mark_lost(&tag.channel, at, &offsets);
                Admission::Dropped(count)
            }
        }
    }

    fn push_back(&mut self, push: Push) {
        let len = push.frame.len();
        self.bytes += len;
        let counted = push.policy.max_messages.is_some() || push.policy.max_bytes.is_some();
        if let (true, Some(tag)) = (counted, &push.tag) {
            let entry = self.per_channel.entry(tag.channel.clone()).or_default();
            entry.0 += 1;
            entry.1 += len;
        }
        self.entries.push_back(Entry::Frame { frame: push.frame, tag: push.tag, counted });
    }

    /// Removes up to `limit` of `channel`'s oldest frames; gives where each was and its offset.
    fn remove_channel(&mut self, channel: &str, limit: usize) -> Vec<(usize, u64)> {
        let mut removed = Vec::new();
        let mut i = 0;
        while i < self.entries.len() && removed.len() < limit {
            let hit = matches!(&self.entries[i], Entry::Frame { tag: Some(t), .. } if &*t.channel == channel);
            if !hit {
                i += 1;
                continue;
            }
            if let Some(Entry::Frame { frame, tag: Some(tag), counted }) = self.entries.remove(i) {
                self.forget(&frame, &tag, counted);
                removed.push((i + removed.len(), tag.offset));
            }
        }
        removed
    }

    fn forget(&mut self, frame: &Message, tag: &Tag, counted: bool) {
        self.bytes -= frame.len();
        if counted {
            if let Some(entry) = self.per_channel.get_mut(&tag.channel) {
                entry.0 -= 1;
                entry.1 -= frame.len();
                if entry.0 == 0 {
                    self.per_channel.remove(&tag.channel);
                }
            }
        }
    }

    /// Records dropped `offsets` of `channel` in a `lost` entry: the one already queued for
    /// it (ranges of one channel only grow, in order), or a new one where the first dropped
    /// frame was (`at`), so the client learns of the gap before any later event.
    fn mark_lost(&mut self, channel: &Arc<str>, at: Option<usize>, offsets: &[u64]) {
        let (Some(&low), Some(&high)) = (offsets.iter().min(), offsets.iter().max()) else { return };
        for entry in &mut self.entries {
            if let Entry::Lost { channel: c, from, to } = entry {
                if c == channel {
                    *from = (*from).min(low);
                    *to = (*to).max(high);
                    return;
                }
            }
        }
        let at = at.unwrap_or(self.entries.len()).min(self.entries.len());
        self.entries.insert(at, Entry::Lost { channel: channel.clone(), from: low, to: high });
        self.markers += 1;
    }

    fn pop(&mut self) -> Option<Message> {
        match self.entries.pop_front()? {
            Entry::Frame { frame, tag, counted } => {
                if let Some(tag) = &tag {
                    self.forget(&frame, tag, counted);
                    let position = crate::broker::Position { offset: tag.offset, epoch: tag.epoch.clone() };
                    self.sent.insert(tag.channel.clone(), position);
                } else {
                    self.bytes -= frame.len();
                }
                Some(frame)
            }
            Entry::Lost { channel, from, to } => {
                self.markers -= 1;
                Some(Message::text(protocol::lost(&channel, from, to)))
            }
        }
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere must not take this socket's queue down with it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pop(&self) -> Option<Message> {
        let frame = self.lock().pop()?;
        // Every waiter re-checks: a reply and a subscriber's replay may both be waiting.
        self.room.notify_waiters();
        Some(frame)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

// === impl Outbox ===

impl Outbox {
    /// Queues a push without waiting; at the bound its policy decides (see the module doc).
    pub fn offer(&self, push: Push) -> Offer {
        let shared = &self.shared;
        if shared.is_closed() {
            return Offer::Closed;
        }
        let admission = shared.lock().admit(push);
        match admission {
            Admission::Queued => {
                shared.data.notify_one();
                Offer::Queued
            }
            Admission::Dropped(n) => {
                shared.data.notify_one();
                Offer::Dropped(n)
            }
            Admission::Evict if self.evict(CloseReason::SlowReader) => Offer::Evicted,
            Admission::Evict => Offer::Closed,
        }
    }

    /// Queues a reply to the socket's own command, waiting while the queue is at its bound
    /// (a reply larger than the byte bound goes in once the queue is empty).
    pub async fn send(&self, frame: Message) -> Result<(), Gone> {
        let shared = &self.shared;
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if shared.is_closed() {
                return Err(Gone);
            }
            {
                let mut queue = shared.lock();
                if queue.fits(frame.len()) || (queue.frames() == 0) {
                    queue.push_back(Push { frame, tag: None, policy: Policy::default() });
                    drop(queue);
                    shared.data.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Queues a push only if it fits now, without applying any policy (a subscriber's
    /// replay, released as room allows).
    pub fn try_queue(&self, push: Push) -> Result<(), TryQueue> {
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(TryQueue::Gone);
        }
        let mut queue = shared.lock();
        let len = push.frame.len();
        if !(queue.fits(len) && queue.fits_channel(&push, len)) && queue.frames() > 0 {
            return Err(TryQueue::Full(Box::new(push)));
        }
        queue.push_back(push);
        drop(queue);
        shared.data.notify_one();
        Ok(())
    }

    /// Resolves once the write loop has taken a frame (room was made) or the socket is gone.
    pub async fn until_room(&self) {
        let shared = &self.shared;
        let room = shared.room.notified();
        tokio::pin!(room);
        room.as_mut().enable();
        if shared.is_closed() || shared.lock().frames() == 0 {
            return;
        }
        room.await;
    }

    /// Asks the socket to close with `reason`; true for the request that won (later ones,
    /// and requests to a socket already gone, change nothing).
    pub fn evict(&self, reason: CloseReason) -> bool {
        let shared = &self.shared;
        if shared.is_closed() || shared.close.set(reason).is_err() {
            return false;
        }
        shared.closed.store(true, Ordering::Release);
        shared.evicted.notify_one();
        shared.room.notify_waiters();
        true
    }

    /// Tells the socket that events `from..=to` of `channel` will never come: a `lost` entry
    /// behind what is queued (merged into the channel's queued one, if any; not counted
    /// against the bound, at most one per channel).
    pub fn lost(&self, channel: &Arc<str>, from: u64, to: u64) {
        let shared = &self.shared;
        if shared.is_closed() {
            return;
        }
        shared.lock().mark_lost(channel, None, &[from, to]);
        shared.data.notify_one();
    }

    /// The position of the last event of `channel` the write loop took.
    pub fn sent(&self, channel: &str) -> Option<crate::broker::Position> {
        self.shared.lock().sent.get(channel).cloned()
    }

    /// Frames queued now (tests, metrics).
    pub fn queued(&self) -> usize {
        self.shared.lock().frames()
    }
}

// === impl Inbox ===

impl Inbox {
    /// The next queued frame, waiting for one.
    pub async fn recv(&mut self) -> Message {
        let shared = &self.shared;
        loop {
            let data = shared.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            if let Some(frame) = shared.pop() {
                return frame;
            }
            data.await;
        }
    }

    /// A frame already queued, without waiting (to batch writes before one flush).
    pub fn try_recv(&mut self) -> Option<Message> {
        self.shared.pop()
    }

    /// A handle that resolves when someone asks this socket to close, usable beside `recv`.
    pub fn eviction(&self) -> Eviction {
        Eviction { shared: self.shared.clone() }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.room.notify_waiters();
        let mut queue = self.shared.lock();
        queue.entries.clear();
        queue.per_channel.clear();
        queue.bytes = 0;
        queue.markers = 0;
    }
}

/// Waits for an eviction of one socket.
#[derive(Debug)]
pub struct Eviction {
    shared: Arc<Shared>,
}

impl Eviction {
    /// Resolves when someone asked the socket to close; gives the reason.
    pub async fn wait(&self) -> CloseReason {
        loop {
            let evicted = self.shared.evicted.notified();
            tokio::pin!(evicted);
            evicted.as_mut().enable();
            if let Some(reason) = self.shared.close.get() {
                return reason.clone();
            }
            evicted.await;
        }
    }
}

#[cfg(test)]
mod tests;
