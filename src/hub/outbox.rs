//! One socket's outgoing queue: bounded in messages and bytes. Replies to the socket's own
//! commands wait for room (back-pressure on that socket's reader); pushes from elsewhere
//! never wait: when the queue is full the socket is evicted as a slow reader (close 4008).
//!
//! A plain deque behind a mutex rather than a channel: an idle socket's queue then costs
//! one small allocation instead of a channel's preallocated block (~2 KiB per socket).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// Close code for a socket that could not keep up (the client reconnects and recovers).
pub const SLOW_READER_CLOSE: u16 = 4008;

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
    max_messages: usize,
    max_bytes: usize,
    /// Woken when a message is queued (the write loop waits on it).
    data: Notify,
    /// Woken when room is made (senders of replies wait on it).
    room: Notify,
    /// Woken once, when the socket is asked to close.
    evicted: Notify,
    close: OnceLock<(u16, &'static str)>,
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Message>,
    bytes: usize,
}

/// The message was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The queue is at its bound; the socket has been evicted.
    #[error("outgoing queue full")]
    Full,
    /// The socket is gone.
    #[error("socket closed")]
    Closed,
}

/// A queue bounded at `messages` messages and `bytes` bytes.
pub fn outbox(messages: usize, bytes: usize) -> (Outbox, Inbox) {
    let shared = Arc::new(Shared {
        queue: Mutex::default(),
        max_messages: messages.max(1),
        max_bytes: bytes,
        data: Notify::new(),
        room: Notify::new(),
        evicted: Notify::new(),
        close: OnceLock::new(),
        closed: AtomicBool::new(false),
    });
    (Outbox { shared: shared.clone() }, Inbox { shared })
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, queue: &mut Queue, msg: Message) {
        queue.bytes += msg.len();
        queue.messages.push_back(msg);
        self.data.notify_one();
    }

    fn pop(&self) -> Option<Message> {
        let msg = {
            let mut queue = self.lock();
            let msg = queue.messages.pop_front()?;
            queue.bytes -= msg.len();
            msg
        };
        self.room.notify_one();
        Some(msg)
    }
}

impl Outbox {
    /// Queues a push without waiting; a full queue evicts the socket (slow reader).
    pub fn offer(&self, msg: Message) -> Result<(), Refused> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let mut queue = shared.lock();
        if queue.messages.len() >= shared.max_messages {
            drop(queue);
            self.evict(SLOW_READER_CLOSE, "slow reader: too many messages queued");
            return Err(Refused::Full);
        }
        if queue.bytes + msg.len() > shared.max_bytes {
            drop(queue);
            self.evict(SLOW_READER_CLOSE, "slow reader: too many bytes queued");
            return Err(Refused::Full);
        }
        shared.push(&mut queue, msg);
        Ok(())
    }

    /// Queues a reply to the socket's own command, waiting for room (the byte bound does not
    /// apply: the socket asked for this reply).
    pub async fn send(&self, msg: Message) -> Result<(), Refused> {
        let shared = &self.shared;
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if shared.closed.load(Ordering::Acquire) {
                return Err(Refused::Closed);
            }
            {
                let mut queue = shared.lock();
                if queue.messages.len() < shared.max_messages {
                    shared.push(&mut queue, msg);
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Asks the socket to close with `code`; the first request wins.
    pub fn evict(&self, code: u16, reason: &'static str) {
        if self.shared.close.set((code, reason)).is_ok() {
            self.shared.evicted.notify_one();
        }
    }
}

impl Inbox {
    /// The next queued message, waiting for one.
    pub async fn recv(&mut self) -> Option<Message> {
        let shared = &self.shared;
        loop {
            let data = shared.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            if let Some(msg) = shared.pop() {
                return Some(msg);
            }
            data.await;
        }
    }

    /// A message already queued, without waiting (to batch writes before one flush).
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
        self.shared.lock().messages.clear();
    }
}

/// Waits for an eviction of one socket.
#[derive(Debug)]
pub struct Eviction {
    shared: Arc<Shared>,
}

impl Eviction {
    /// Resolves when someone asked the socket to close; gives the code and reason.
    pub async fn wait(&self) -> (u16, &'static str) {
        loop {
            if let Some(close) = self.shared.close.get() {
                return *close;
            }
            self.shared.evicted.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn full_queue_evicts_with_4008() {
        let (outbox, inbox) = outbox(2, 1 << 20);
        assert_eq!(outbox.offer(Message::text("a")), Ok(()));
        assert_eq!(outbox.offer(Message::text("b")), Ok(()));
        assert_eq!(outbox.offer(Message::text("c")), Err(Refused::Full));
        assert_eq!(inbox.eviction().wait().await, (SLOW_READER_CLOSE, "slow reader: too many messages queued"));
    }

    #[tokio::test]
    async fn byte_bound_applies_to_pushes() {
        let (outbox, mut inbox) = outbox(100, 10);
        assert_eq!(outbox.offer(Message::text("12345678")), Ok(()));
        assert_eq!(outbox.offer(Message::text("123")), Err(Refused::Full));
        assert_eq!(inbox.recv().await.unwrap(), Message::text("12345678"));
    }

    #[tokio::test]
    async fn draining_frees_room() {
        let (outbox, mut inbox) = outbox(1, 100);
        outbox.offer(Message::text("a")).unwrap();
        inbox.recv().await.unwrap();
        assert_eq!(outbox.offer(Message::text("b")), Ok(()));
        assert!(inbox.try_recv().is_some());
    }

    #[tokio::test]
    async fn a_reply_waits_for_room_then_goes_in_order() {
        let (outbox, mut inbox) = outbox(1, 100);
        outbox.offer(Message::text("first")).unwrap();
        let sender = outbox.clone();
        let waiting = tokio::spawn(async move { sender.send(Message::text("second")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "send did not wait for room");
        assert_eq!(inbox.recv().await.unwrap(), Message::text("first"));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(inbox.recv().await.unwrap(), Message::text("second"));
    }

    #[tokio::test]
    async fn a_waiting_reply_fails_when_the_socket_goes() {
        let (outbox, inbox) = outbox(1, 100);
        outbox.offer(Message::text("first")).unwrap();
        let waiting = tokio::spawn(async move { outbox.send(Message::text("second")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(inbox);
        assert_eq!(waiting.await.unwrap(), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn recv_wakes_for_a_message_queued_later() {
        let (outbox, mut inbox) = outbox(4, 100);
        let reader = tokio::spawn(async move { inbox.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        outbox.offer(Message::text("late")).unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), Message::text("late"));
    }
}
