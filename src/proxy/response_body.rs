//! The upstream's response body on its way to the downstream, buffered so that the upstream
//! (a gunicorn sync worker) is freed as soon as it has written, whatever the browser's pace.
//!
//! A small body with a `Content-Length` is read whole at once ([`read_small`]). Any other
//! is [`spool`]ed: a task reads the upstream as fast as it writes, into memory up to
//! `response_memory` and then into one unlinked temp file up to `max_response_temp_file`
//! (and the shared `max_temp_disk`), while the downstream body sends what is there at the
//! browser's pace. At those bounds the task waits for the browser: the rest streams.
//! Order is kept: bytes go to memory only while the file holds nothing unsent, so every
//! byte in memory is older than every byte in the file. The task is aborted when the
//! downstream body is dropped (the browser left), and a pause of the upstream longer than
//! `response_timeout` cuts the body, as nginx's proxy_read_timeout does.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, StreamBody};
use smallvec::SmallVec;
use tokio::sync::Notify;

use super::disk::{TempDisk, TempFile};
use crate::body::{self, BoxError};

/// A temp file is read back in pieces up to this large.
const FILE_CHUNK: usize = 64 << 10;

/// The response body broke after its head was sent: the downstream connection is cut.
#[derive(Debug, thiserror::Error)]
pub enum ResponseBodyError {
    /// The upstream paused longer than `response_timeout` in the middle of its body.
    #[error("the upstream paused its response body for longer than {after:?}")]
    UpstreamStalled { after: Duration },
    /// The upstream's body failed (closed early, bad framing).
    #[error("the upstream's response body failed: {0}")]
    UpstreamFailed(String),
    /// Our temp file could not be written or read.
    #[error("cannot buffer the response in a temp file")]
    TempFile(#[source] std::io::Error),
}

/// What a spooled body may hold.
#[derive(Clone, Debug)]
pub struct SpoolLimits {
    /// `[buffering] response_memory`.
    pub memory: usize,
    /// `[buffering] max_response_temp_file`.
    pub max_file: u64,
    /// `[upstream] response_timeout`, between two reads of the upstream's body.
    pub read_timeout: Duration,
}

/// Reads a body whole when its length is known and at most `memory`; gives it back
/// untouched otherwise (or when it is empty: nothing to wait for).
pub async fn read_small<B>(body: B, limits: &SpoolLimits) -> Result<body::Body, ReadSmall<B>>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let small = body.size_hint().exact().is_some_and(|len| len <= limits.memory as u64);
    if !small || body.is_end_stream() {
        return Err(ReadSmall::Unread(body));
    }
    match tokio::time::timeout(limits.read_timeout, Chunks::read(body)).await {
        Ok(Ok(chunks)) => Ok(chunks.boxed()),
        Ok(Err(e)) => {
            Err(ReadSmall::Failed(ResponseBodyError::UpstreamFailed(crate::error_chain(&*e.into()).to_string())))
        }
        Err(_) => Err(ReadSmall::Failed(ResponseBodyError::UpstreamStalled { after: limits.read_timeout })),
    }
}

/// A body read whole, sent on in the pieces it arrived in: one write of them all, no copy
/// into one buffer first.
struct Chunks {
    /// Last piece first, so sending pops; a small body's one or two are kept inline.
    reversed: SmallVec<[Bytes; 2]>,
    len: u64,
}

impl Chunks {
    /// Reads `body` to its end; its trailers are dropped (a body with a length has none).
    async fn read<B: Body<Data = Bytes> + Unpin>(mut body: B) -> Result<Self, B::Error> {
        let mut chunks = Self { reversed: SmallVec::new(), len: 0 };
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                chunks.len += data.len() as u64;
                chunks.reversed.push(data);
            }
        }
        chunks.reversed.reverse();
        Ok(chunks)
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let chunk = this.reversed.pop();
        this.len -= chunk.as_ref().map_or(0, |c| c.len() as u64);
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.reversed.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Why [`read_small`] did not read the body.
pub enum ReadSmall<B> {
    /// Not small, or empty: the body, untouched.
    Unread(B),
    /// It was small, but the upstream failed before it ended (nothing was sent yet).
    Failed(ResponseBodyError),
}

/// Starts reading `upstream` into a spool on the current runtime and returns the body that
/// sends the spool's content downstream.
pub fn spool<B>(upstream: B, limits: SpoolLimits, disk: TempDisk) -> body::Body
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let shared = Arc::new(Shared::default());
    let writer = Writer { shared: shared.clone(), limits, disk };
    let task = AbortOnDrop(tokio::spawn(writer.run(upstream)));
    let reader = Reader { shared, _writer: task };
    let frames = futures_util::stream::unfold(reader, |mut reader| async move {
        let frame = reader.next().await?;
        Some((frame, reader))
    });
    StreamBody::new(frames).boxed()
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Woken when the writer adds bytes or ends.
    data: Notify,
    /// Woken when the reader takes bytes.
    room: Notify,
}

#[derive(Default)]
struct State {
    memory: VecDeque<Bytes>,
    memory_bytes: usize,
    /// The temp file, once one was needed; its unsent bytes are `read..written`.
    file: Option<Arc<TempFile>>,
    read: u64,
    written: u64,
    end: Option<End>,
}

enum End {
    /// The upstream's body ended, with these trailers.
    Done(Option<HeaderMap>),
    Failed(ResponseBodyError),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl Writer ===

/// The task that empties the upstream into the spool.
struct Writer {
    shared: Arc<Shared>,
    limits: SpoolLimits,
    disk: TempDisk,
}

impl Writer {
    async fn run<B>(self, upstream: B)
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut upstream = upstream;
        let end = loop {
            let frame = match tokio::time::timeout(self.limits.read_timeout, upstream.frame()).await {
                Err(_) => break End::Failed(ResponseBodyError::UpstreamStalled { after: self.limits.read_timeout }),
                Ok(None) => break End::Done(None),
                Ok(Some(Err(e))) => {
                    break End::Failed(ResponseBodyError::UpstreamFailed(crate::error_chain(&*e.into()).to_string()))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    if let Err(e) = self.put(data).await {
                        break End::Failed(e);
                    }
                }
                Err(frame) => break End::Done(frame.into_trailers().ok()),
            }
        };
        // The upstream connection goes back to the pool (or closes) here, before the
        // browser has taken the rest.
        drop(upstream);
        self.shared.lock().end = Some(end);
        self.shared.data.notify_one();
    }

    /// Puts `data` in memory, else in the temp file, else waits until the reader made room.
    async fn put(&self, data: Bytes) -> Result<(), ResponseBodyError> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len();
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let (offset, file) = {
                let mut state = self.shared.lock();
                if state.read == state.written && state.written > 0 {
                    // Everything in the file was sent: start it over, give its bytes back.
                    state.read = 0;
                    state.written = 0;
                    if let Some(file) = &state.file {
                        file.release_all();
                    }
                }
                let file_idle = state.read == state.written;
                if file_idle && (state.memory_bytes == 0 || state.memory_bytes + len <= self.limits.memory) {
                    state.memory_bytes += len;
                    state.memory.push_back(data);
                    drop(state);
                    self.shared.data.notify_one();
                    return Ok(());
                }
                (state.written, state.file.clone())
            };
            if let Some(file) = self.room_in_file(file, offset, len as u64).await? {
                file.write_at(offset, data).await.map_err(ResponseBodyError::TempFile)?;
                self.shared.lock().written += len as u64;
                self.shared.data.notify_one();
                return Ok(());
            }
            // At the bounds: the browser's pace decides from here.
            room.await;
        }
    }

    /// The temp file, when `len` more bytes at `offset` stay within both file bounds
    /// (drawing them from the budget); makes the file on first use.
    async fn room_in_file(
        &self,
        file: Option<Arc<TempFile>>,
        offset: u64,
        len: u64,
    ) -> Result<Option<Arc<TempFile>>, ResponseBodyError> {
        if offset + len > self.limits.max_file {
            return Ok(None);
        }
        let file = match file {
            Some(file) => file,
            None => {
                let file = Arc::new(self.disk.create().await.map_err(ResponseBodyError::TempFile)?);
                self.shared.lock().file = Some(file.clone());
                file
            }
        };
        // The file's reservation covers the bytes already in it; draw only what is new.
        let needed = (offset + len).saturating_sub(file.reserved());
        Ok((needed == 0 || file.reserve(needed)).then_some(file))
    }
}

// === impl Reader ===

/// The downstream side: takes what the writer put in the spool, in order.
struct Reader {
    shared: Arc<Shared>,
    _writer: AbortOnDrop,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        loop {
            let data = self.shared.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            let from_file = {
                let mut state = self.shared.lock();
                if let Some(bytes) = state.memory.pop_front() {
                    state.memory_bytes -= bytes.len();
                    drop(state);
                    self.shared.room.notify_one();
                    return Some(Ok(Frame::data(bytes)));
                }
                if state.read < state.written {
                    let n = usize::try_from(state.written - state.read).map_or(FILE_CHUNK, |n| n.min(FILE_CHUNK));
                    state.file.clone().map(|file| (file, state.read, n))
                } else {
                    // The end is given once; after it the body only says it has ended.
                    match state.end.replace(End::Done(None)) {
                        Some(End::Done(None)) => return None,
                        Some(End::Done(Some(trailers))) => return Some(Ok(Frame::trailers(trailers))),
                        Some(End::Failed(e)) => return Some(Err(e.into())),
                        None => {
                            state.end = None;
                            None
                        }
                    }
                }
            };
            if let Some((file, offset, n)) = from_file {
                let bytes = match file.read_at(offset, n).await {
                    Ok(bytes) => bytes,
                    Err(e) => return Some(Err(ResponseBodyError::TempFile(e).into())),
                };
                self.shared.lock().read += n as u64;
                self.shared.room.notify_one();
                return Some(Ok(Frame::data(bytes)));
            }
            data.await;
        }
    }
}

/// Aborts the writer task when the downstream body goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
