//! Every door closes: a downstream connection that is not serving a request is closed once
//! it has been quiet for too long. Before its first request (protocol detection, a partial
//! or complete HTTP/2 preface, a TLS connection that says nothing after its handshake) the
//! bound is `header_read_timeout`; between requests (HTTP/1.1 keep-alive, HTTP/2 with no
//! stream open) it is `idle_timeout`. A request in flight, its response body included,
//! holds the door open however long it takes; the phases' own timeouts bound those.
//!
//! One timer per connection, re-armed only when it fires: a request costs two atomic
//! operations and a clock read.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::Notify;

use tokio::time::Instant;

/// One connection's activity, shared by its requests.
#[derive(Clone, Debug)]
pub struct Activity {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    opened: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    /// When the last request ended, in milliseconds since `opened`.
    last_end_ms: AtomicU64,
    /// Woken when the last request in flight ends.
    ended: Notify,
    /// Woken when the first request begins.
    first: Notify,
}

/// Held while a request (and its response body) is in flight; its drop marks the end.
#[derive(Debug)]
pub struct InFlight {
    inner: Arc<Inner>,
}

impl Activity {
    /// A connection opened now.
    pub fn new() -> Self {
        let inner = Inner {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_end_ms: AtomicU64::new(0),
            ended: Notify::new(),
            first: Notify::new(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Marks a request as started; it ends when the guard is dropped.
    pub fn begin(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        if !self.inner.served.swap(true, Ordering::AcqRel) {
            self.inner.first.notify_waiters();
        }
        InFlight { inner: self.inner.clone() }
    }

    /// Resolves once the connection's first request has begun.
    pub async fn first_request(&self) {
        let first = self.inner.first.notified();
        tokio::pin!(first);
        first.as_mut().enable();
        if !self.inner.served.load(Ordering::Acquire) {
            first.await;
        }
    }

    /// Resolves when the connection has been quiet too long: no first request within
    /// `first_request`, or no request in flight for `idle`.
    pub async fn quiet(&self, first_request: Duration, idle: Duration) {
        let inner = &self.inner;
        let timer = tokio::time::sleep_until(inner.opened + first_request);
        tokio::pin!(timer);
        tokio::select! {
            () = timer.as_mut() => if !inner.served.load(Ordering::Acquire) {
                return;
            },
            () = self.first_request() => {}
        }
        // From here on the timer is left alone while requests come and go: when it fires,
        // the deadline is worked out again from the last request's end, and the timer moved
        // on to it. A deadline only ever moves later, so the timer never fires after it.
        loop {
            self.settled().await;
            let deadline = inner.opened + Duration::from_millis(inner.last_end_ms.load(Ordering::Acquire)) + idle;
            if deadline <= Instant::now() {
                return;
            }
            timer.as_mut().reset(deadline);
            timer.as_mut().await;
        }
    }

    /// Resolves once no request is in flight.
    async fn settled(&self) {
        loop {
            let ended = self.inner.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.inner.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let since_open = u64::try_from(self.inner.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_end_ms.store(since_open, Ordering::Release);
        if self.inner.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.ended.notify_one();
        }
    }
}

pin_project! {
    /// A response body that keeps its request in flight until it has been sent (or dropped).
    pub struct Held<B> {
        #[pin]
        inner: B,
        _in_flight: InFlight,
    }
}

impl<B> Held<B> {
    /// Holds `in_flight` for as long as `inner` lives.
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Self { inner, _in_flight: in_flight }
    }
}

impl<B: Body<Data = Bytes>> Body for Held<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_first_request_is_quiet_after_first_request_time() {
        let activity = Activity::new();
        let started = Instant::now();
        activity.quiet(Duration::from_secs(3), Duration::from_secs(10)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_the_connection_and_idleness_counts_from_its_end() {
        let activity = Activity::new();
        let request = activity.begin();
        let watching = tokio::spawn({
            let activity = activity.clone();
            async move { activity.quiet(Duration::from_secs(3), Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!watching.is_finished(), "a request in flight holds the connection open");
        drop(request);
        let ended = Instant::now();
        watching.await.unwrap();
        assert!(ended.elapsed() >= Duration::from_secs(10) && ended.elapsed() < Duration::from_secs(11));
    }
}
