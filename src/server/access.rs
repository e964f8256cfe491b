//! One access-log line per request, written when the response body has been sent (or
//! dropped), so the byte count and total time are true for streamed bodies.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::body::{Body, BoxError};

/// What the access line says about a request; filled in as the request goes.
#[derive(Debug)]
pub struct AccessRecord {
    /// When the request head arrived.
    pub started: Instant,
    /// Request method.
    pub method: Method,
    /// Request path (no query: it may carry secrets).
    pub path: String,
    /// Response status.
    pub status: StatusCode,
    /// Time to the upstream's response head, when the request went upstream.
    pub upstream: Option<Duration>,
    /// The downstream peer.
    pub peer: std::net::SocketAddr,
    /// The request's `X-Request-Id` (as sent to Django and returned to the browser).
    pub request_id: http::HeaderValue,
}

/// Milliseconds with two decimals, "-" when absent.
struct Millis(Option<Duration>);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{:.2}", d.as_secs_f64() * 1e3),
            None => f.write_str("-"),
        }
    }
}

pin_project! {
    /// Wraps a response body, counts its bytes, and logs the record when dropped.
    pub struct Logged {
        #[pin]
        inner: Body,
        record: AccessRecord,
        bytes: u64,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let r = &*this.record;
            tracing::info!(
                target: "switchyard::access",
                method = %r.method,
                path = %r.path,
                status = r.status.as_u16(),
                bytes = *this.bytes,
                total_ms = %Millis(Some(r.started.elapsed())),
                upstream_ms = %Millis(r.upstream),
                peer = %r.peer,
                request_id = %r.request_id.to_str().unwrap_or("-"),
            );
        }
    }
}

impl Logged {
    /// Wraps `inner`; the line is written when the body is done or dropped.
    pub fn new(inner: Body, record: AccessRecord) -> Self {
        Self { inner, record, bytes: 0 }
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                *this.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
