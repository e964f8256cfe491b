//! One socket's outgoing queue: bounded in messages and bytes. Replies to the socket's own
//! commands wait for room (back-pressure on that socket's reader); pushes from elsewhere
//! never wait: when the queue is full the socket is evicted as a slow reader (close 4008).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Close code for a socket that could not keep up (the client reconnects and recovers).
pub const SLOW_READER_CLOSE: u16 = 4008;

/// The sending side, held by the hub and the socket's command tasks; cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
}

/// The receiving side, held by the socket's write loop.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    evicted: CancellationToken,
    close: OnceLock<(u16, &'static str)>,
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
    let (tx, rx) = mpsc::channel(messages.max(1));
    let shared = Arc::new(Shared {
        queued_bytes: AtomicUsize::new(0),
        max_bytes: bytes,
        evicted: CancellationToken::new(),
        close: OnceLock::new(),
    });
    (Outbox { tx, shared: shared.clone() }, Inbox { rx, shared })
}

fn size(msg: &Message) -> usize {
    msg.len()
}

impl Outbox {
    /// Queues a push without waiting; a full queue evicts the socket (slow reader).
    pub fn offer(&self, msg: Message) -> Result<(), Refused> {
        let len = size(&msg);
        if self.shared.queued_bytes.load(Ordering::Relaxed) + len > self.shared.max_bytes {
            self.evict(SLOW_READER_CLOSE, "slow reader: too many bytes queued");
            return Err(Refused::Full);
        }
        match self.tx.try_send(msg) {
            Ok(()) => {
                self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.evict(SLOW_READER_CLOSE, "slow reader: too many messages queued");
                Err(Refused::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Refused::Closed),
        }
    }

    /// Queues a reply to the socket's own command, waiting for room.
    pub async fn send(&self, msg: Message) -> Result<(), Refused> {
        let len = size(&msg);
        self.tx.send(msg).await.map_err(|_| Refused::Closed)?;
        self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Asks the socket to close with `code`; the first request wins.
    pub fn evict(&self, code: u16, reason: &'static str) {
        let _ = self.shared.close.set((code, reason));
        self.shared.evicted.cancel();
    }
}

impl Inbox {
    /// The next queued message; None once every sender is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        let msg = self.rx.recv().await?;
        self.shared.queued_bytes.fetch_sub(size(&msg), Ordering::Relaxed);
        Some(msg)
    }

    /// A message already queued, without waiting (to batch writes before one flush).
    pub fn try_recv(&mut self) -> Option<Message> {
        let msg = self.rx.try_recv().ok()?;
        self.shared.queued_bytes.fetch_sub(size(&msg), Ordering::Relaxed);
        Some(msg)
    }

    /// A handle that resolves when someone asks this socket to close, usable beside `recv`.
    pub fn eviction(&self) -> Eviction {
        Eviction { shared: self.shared.clone() }
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
        self.shared.evicted.cancelled().await;
        self.shared.close.get().copied().unwrap_or((SLOW_READER_CLOSE, "evicted"))
    }
}

#[cfg(test)]
mod tests {
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
}
