//! Opens connections to the upstream, over TCP or a unix socket, for the pool.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::UpstreamUrl;

/// Why no connection to the upstream could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The upstream refused or could not be reached (502).
    #[error("cannot connect to upstream {target}: {source}")]
    Unreachable { target: String, source: io::Error },
    /// Connecting took longer than `connect_timeout` (504).
    #[error("connecting to upstream {target} took longer than {after:?}")]
    TimedOut { target: String, after: Duration },
}

/// Connects to the configured upstream; cheap to clone.
#[derive(Clone, Debug)]
pub struct UpstreamConnector {
    target: Arc<UpstreamUrl>,
    timeout: Duration,
}

impl UpstreamConnector {
    /// A connector for `target` that gives up after `timeout`.
    pub fn new(target: UpstreamUrl, timeout: Duration) -> Self {
        Self { target: Arc::new(target), timeout }
    }

    /// A new connection to the upstream.
    pub async fn connect(&self) -> Result<UpstreamStream, ConnectError> {
        let (target, timeout) = (&self.target, self.timeout);
        let attempt = async {
            match &**target {
                UpstreamUrl::Tcp { authority } => {
                    let stream = TcpStream::connect(authority.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Ok(UpstreamStream::Tcp { inner: stream })
                }
                UpstreamUrl::Unix { path } => Ok(UpstreamStream::Unix { inner: UnixStream::connect(path).await? }),
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(ConnectError::Unreachable { target: target.to_string(), source }),
            Err(_) => Err(ConnectError::TimedOut { target: target.to_string(), after: timeout }),
        }
    }
}

pin_project! {
    /// A connection to the upstream.
    #[project = StreamProj]
    pub enum UpstreamStream {
        /// Over TCP.
        Tcp { #[pin] inner: TcpStream },
        /// Over a unix socket.
        Unix { #[pin] inner: UnixStream },
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.project() {
            StreamProj::Tcp { inner } => inner.poll_read(cx, buf),
            StreamProj::Unix { inner } => inner.poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.project() {
            StreamProj::Tcp { inner } => inner.poll_write(cx, buf),
            StreamProj::Unix { inner } => inner.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.project() {
            StreamProj::Tcp { inner } => inner.poll_flush(cx),
            StreamProj::Unix { inner } => inner.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.project() {
            StreamProj::Tcp { inner } => inner.poll_shutdown(cx),
            StreamProj::Unix { inner } => inner.poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.project() {
            StreamProj::Tcp { inner } => inner.poll_write_vectored(cx, bufs),
            StreamProj::Unix { inner } => inner.poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }
}
