//! The downstream's request body on its way to the upstream.
//!
//! [`Downstream`] wraps what hyper hands us: it stops at `max_request_body` (413), gives up
//! when the browser pauses longer than `body_read_timeout` between two reads (408), tags a
//! malformed body (bad chunk size, overlong chunk extension, oversized trailers) as the
//! browser's fault (400), and drops request trailers: they could carry `X-Switchyard-*` or
//! `X-Forwarded-For` past the header rules, and WSGI has no way to hand them to Django.
//!
//! [`buffer`] reads such a body whole before the upstream is contacted: memory up to
//! `request_memory`, then one unlinked temp file, so Django gets the body at loopback speed
//! with a `Content-Length`, and a slow upload never holds a gunicorn worker.
//! [`Sent`] tells the proxy when the body has gone out, which is when the upstream's clock
//! starts.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, StreamBody};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::disk::{TempDisk, TempFile};
use crate::body::{self, BoxError};

/// A temp file is read back in pieces this large.
const FILE_CHUNK: usize = 64 << 10;

/// Why a request body cannot be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The body went past `max_request_body` (the browser's doing: 413).
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The browser paused longer than `body_read_timeout` (408).
    #[error("the request body paused for longer than {after:?}")]
    ReadTimeout { after: Duration },
    /// The body is not valid HTTP framing (the browser's doing: 400).
    #[error("malformed request body")]
    Malformed(#[source] BoxError),
    /// Every temp file together would pass `max_temp_disk` (ours: 503).
    #[error("no room for the request body within max_temp_disk ({limit} bytes)")]
    TempDiskFull { limit: u64 },
    /// A temp file could not be made, written or read (ours: 503).
    #[error("cannot buffer the request body in a temp file")]
    TempFile(#[source] std::io::Error),
}

impl RequestBodyError {
    /// An owned copy of this error as found inside another (its sources become text).
    pub fn copied(&self) -> Self {
        match self {
            Self::TooLarge { limit } => Self::TooLarge { limit: *limit },
            Self::ReadTimeout { after } => Self::ReadTimeout { after: *after },
            Self::Malformed(source) => Self::Malformed(crate::error_chain(&**source).to_string().into()),
            Self::TempDiskFull { limit } => Self::TempDiskFull { limit: *limit },
            Self::TempFile(e) => Self::TempFile(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// What [`Downstream`] and [`buffer`] enforce.
#[derive(Clone, Debug)]
pub struct BodyLimits {
    /// `[upstream] max_request_body`.
    pub max: u64,
    /// `[server] body_read_timeout`.
    pub read_timeout: Duration,
    /// `[buffering] request_memory`.
    pub memory: usize,
    /// `[buffering] max_temp_disk`, for the error message.
    pub disk_limit: u64,
}

pin_project! {
    /// The downstream's body with the limits above applied; see the module doc.
    pub struct Downstream<B> {
        #[pin]
        inner: B,
        #[pin]
        pause: Sleep,
        waiting: bool,
        remaining: u64,
        limit: u64,
        read_timeout: Duration,
    }
}

impl<B> Downstream<B> {
    /// Wraps `inner` under `limits`.
    pub fn new(inner: B, limits: &BodyLimits) -> Self {
        Self {
            inner,
            pause: tokio::time::sleep(limits.read_timeout),
            waiting: false,
            remaining: limits.max,
            limit: limits.max,
            read_timeout: limits.read_timeout,
        }
    }
}

impl<B> Body for Downstream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            // The clock runs only while we wait on the browser, not while the upstream is
            // slow to take what we already have.
            if !*this.waiting {
                this.pause.as_mut().reset(Instant::now() + *this.read_timeout);
                *this.waiting = true;
            }
            let frame = match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    ready!(this.pause.as_mut().poll(cx));
                    let after = *this.read_timeout;
                    return Poll::Ready(Some(Err(RequestBodyError::ReadTimeout { after }.into())));
                }
            };
            *this.waiting = false;
            let frame = match frame {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(RequestBodyError::Malformed(e.into()).into()))),
                Some(Ok(frame)) => frame,
            };
            let Some(data) = frame.data_ref() else {
                // Trailers: dropped (see the module doc); the body ends with them.
                continue;
            };
            let len = data.len() as u64;
            if len > *this.remaining {
                return Poll::Ready(Some(Err(RequestBodyError::TooLarge { limit: *this.limit }.into())));
            }
            *this.remaining -= len;
            return Poll::Ready(Some(Ok(frame)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body read whole: its bytes (in memory or a temp file) and its length.
pub struct Buffered {
    /// The body to send upstream, which replays what was read.
    pub body: body::Body,
    /// Its length, for `Content-Length`.
    pub len: u64,
}

/// Reads `body` whole under `limits`: memory first, then one temp file from `disk`.
pub async fn buffer<B>(body: B, limits: &BodyLimits, disk: &TempDisk) -> Result<Buffered, RequestBodyError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(Downstream::new(body, limits));
    let mut memory = BytesMut::new();
    let mut spill: Option<(TempFile, u64)> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(own_error)?;
        let Ok(data) = frame.into_data() else { continue };
        if spill.is_none() && memory.len() + data.len() <= limits.memory {
            memory.extend_from_slice(&data);
            continue;
        }
        let (file, written) = match &mut spill {
            Some(spill) => spill,
            None => {
                let file = disk.create().await.map_err(RequestBodyError::TempFile)?;
                let mut written = 0;
                append_to(&file, &mut written, std::mem::take(&mut memory).freeze(), limits).await?;
                spill.insert((file, written))
            }
        };
        append_to(file, written, data, limits).await?;
    }
    Ok(match spill {
        None => {
            let len = memory.len() as u64;
            Buffered { body: Full::new(memory.freeze()).map_err(|never| match never {}).boxed(), len }
        }
        Some((file, len)) => Buffered { body: replay(file, len), len },
    })
}

async fn append_to(
    file: &TempFile,
    written: &mut u64,
    data: Bytes,
    limits: &BodyLimits,
) -> Result<(), RequestBodyError> {
    if data.is_empty() {
        return Ok(());
    }
    let len = data.len() as u64;
    if !file.reserve(len) {
        return Err(RequestBodyError::TempDiskFull { limit: limits.disk_limit });
    }
    file.write_at(*written, data).await.map_err(RequestBodyError::TempFile)?;
    *written += len;
    Ok(())
}

/// The error [`Downstream`] raised, back in its own type.
fn own_error(e: BoxError) -> RequestBodyError {
    match e.downcast::<RequestBodyError>() {
        Ok(own) => *own,
        Err(other) => RequestBodyError::Malformed(other),
    }
}

/// A body that reads `len` bytes back from `file`, a piece at a time; the file (and its
/// share of the budget) goes when the body is dropped.
fn replay(file: TempFile, len: u64) -> body::Body {
    let pieces = futures_util::stream::try_unfold((file, 0u64), move |(file, offset)| async move {
        if offset >= len {
            return Ok(None);
        }
        let n = usize::try_from(len - offset).map_or(FILE_CHUNK, |left| left.min(FILE_CHUNK));
        let data = file.read_at(offset, n).await.map_err(|e| BoxError::from(RequestBodyError::TempFile(e)))?;
        Ok(Some((Frame::data(data), (file, offset + n as u64))))
    });
    StreamBody::new(pieces).boxed()
}

pin_project! {
    /// Passes `inner` through and reports, once, when its last frame has been taken (or
    /// it is dropped): the request has then been sent.
    pub struct Sent<B> {
        #[pin]
        inner: B,
        done: Option<oneshot::Sender<()>>,
    }

    impl<B> PinnedDrop for Sent<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(done) = this.project().done.take() {
                let _ = done.send(());
            }
        }
    }
}

impl<B: Body> Sent<B> {
    /// Wraps `inner`; the receiver resolves when it has been sent.
    pub fn new(inner: B) -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let done = if inner.is_end_stream() {
            let _ = tx.send(());
            None
        } else {
            Some(tx)
        };
        (Self { inner, done }, rx)
    }
}

impl<B: Body> Body for Sent<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            None | Some(Err(_)) => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
        };
        if ended {
            if let Some(done) = this.done.take() {
                let _ = done.send(());
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
