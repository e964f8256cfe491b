//! The keep-alive connections one worker holds to the upstream, and the checkout that
//! reuses them.
//!
//! Each worker thread has a pool of its own, so a checkout is an uncontended lock and a
//! pop, and the connection's I/O runs in a task on the same thread. A connection goes back
//! to the pool only once its response body has been read to the end, so no request ever
//! waits behind another's stream. The most recently used is taken first; the others age
//! out after `pool_idle_timeout`, checked at checkout and by one sweep per pool.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::connector::{ConnectError, UpstreamConnector};
use crate::body::Body;

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection broke during the exchange (closed early, sent garbage), or the
    /// request body failed while it was being sent.
    #[error("upstream exchange failed")]
    Exchange(#[source] hyper::Error),
}

/// One worker's connections to the upstream; clones share them.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connector: UpstreamConnector,
    max_idle: usize,
    idle_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Oldest first: a checkout pops the newest.
    idle: Vec<Idle>,
    sweeping: bool,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    /// An empty pool that keeps at most `max_idle` connections, each for `idle_timeout`.
    pub fn new(connector: UpstreamConnector, max_idle: usize, idle_timeout: Duration) -> Self {
        let state = Mutex::new(State::default());
        Self { inner: Arc::new(Inner { connector, max_idle, idle_timeout, state }) }
    }

    /// Sends `req` on a pooled connection, or a new one. A request that a reused
    /// connection closed before taking is sent again on another, so a keep-alive the
    /// upstream dropped while idle is never the browser's error.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<PooledBody>, PoolError> {
        loop {
            let (mut sender, reused) = self.checkout().await?;
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let lease = Some(Lease { pool: self.clone(), sender });
                    return Ok(response.map(|body| PooledBody { body, lease, ended: false }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(PoolError::Exchange(e.into_error())),
                },
            }
        }
    }

    async fn checkout(&self) -> Result<(SendRequest<Body>, bool), PoolError> {
        while let Some(mut sender) = self.pop() {
            if sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        // Boxed: connecting is rare, and its state would otherwise be in every request's.
        Ok((Box::pin(self.open()).await?, false))
    }

    /// A new connection, its I/O driven by a task of its own.
    async fn open(&self) -> Result<SendRequest<Body>, PoolError> {
        let io = self.inner.connector.connect().await?;
        let (sender, connection) = http1::handshake(TokioIo::new(io)).await.map_err(PoolError::Exchange)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// The newest idle connection that is still open and young enough.
    fn pop(&self) -> Option<SendRequest<Body>> {
        let mut state = self.lock();
        while let Some(idle) = state.idle.pop() {
            if !idle.sender.is_closed() && idle.since.elapsed() < self.inner.idle_timeout {
                return Some(idle.sender);
            }
        }
        None
    }

    fn put_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut state = self.lock();
        if state.idle.len() >= self.inner.max_idle {
            return;
        }
        state.idle.push(Idle { sender, since: Instant::now() });
        if !state.sweeping {
            // A body dropped off the runtime (as it shuts down) has no sweep to start; the
            // next put-back on a worker starts one.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                state.sweeping = true;
                runtime.spawn(sweep(Arc::downgrade(&self.inner)));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned pool is still a valid list.
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Closes connections idle for longer than `idle_timeout` while the pool has any, so a
/// quiet worker does not hold the upstream's sockets; ends with the pool.
async fn sweep(pool: Weak<Inner>) {
    loop {
        let Some(timeout) = pool.upgrade().map(|inner| inner.idle_timeout) else { return };
        tokio::time::sleep(timeout).await;
        let Some(inner) = pool.upgrade() else { return };
        let mut state = inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.idle.retain(|idle| !idle.sender.is_closed() && idle.since.elapsed() < timeout);
        if state.idle.is_empty() {
            state.sweeping = false;
            return;
        }
    }
}

/// A connection lent to one exchange.
struct Lease {
    pool: Pool,
    sender: SendRequest<Body>,
}

impl Lease {
    /// Returns the connection to its pool, once.
    fn give_back(lease: &mut Option<Lease>) {
        if let Some(lease) = lease.take() {
            lease.pool.put_back(lease.sender);
        }
    }
}

pin_project_lite::pin_project! {
    /// The upstream's response body; gives its connection back to the pool once read to
    /// the end (a body dropped unread closes the connection instead).
    pub struct PooledBody {
        #[pin]
        body: Incoming,
        lease: Option<Lease>,
        ended: bool,
    }

    impl PinnedDrop for PooledBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.ended || this.body.is_end_stream() {
                Lease::give_back(this.lease);
            }
        }
    }
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").field("ended", &self.ended).finish_non_exhaustive()
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.body.as_mut().poll_frame(cx));
        match &frame {
            None => *this.ended = true,
            Some(Ok(_)) => *this.ended = this.body.is_end_stream(),
            // A broken exchange leaves the connection unusable.
            Some(Err(_)) => drop(this.lease.take()),
        }
        if *this.ended {
            Lease::give_back(this.lease);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
