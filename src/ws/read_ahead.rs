//! A socket's reads, shaped for a small tungstenite read buffer. tungstenite reads at most
//! its buffer's size at a time, and an idle socket holds nothing but that buffer, so the
//! buffer is small; but then a large message would cost one read(2) per buffer's worth.
//! So when a read fills the buffer (more is probably waiting: a message is streaming in),
//! the next one reads [`READ_AHEAD`] bytes into a buffer borrowed for as long as it holds
//! any, and tungstenite's small reads are served from it. Idle sockets never hold one.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read at once while a message streams in: one loopback segment, and below malloc's
/// mmap threshold, so borrowing it is a heap allocation, not a system call.
pub const READ_AHEAD: usize = 64 << 10;

/// A stream whose reads go through a borrowed buffer while data streams in.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    /// Read but not yet taken: `ahead[taken..]`. Kept, drained, between the reads of one
    /// stream; None otherwise (the usual, idle state).
    ahead: Option<Vec<u8>>,
    taken: usize,
    /// The last read filled what it was given: read ahead next time.
    streaming: bool,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`; nothing is allocated until a message streams in.
    pub fn new(inner: S) -> Self {
        Self { inner, ahead: None, taken: 0, streaming: false }
    }

    /// Whether a buffer is borrowed (tests).
    #[cfg(test)]
    fn holds(&self) -> bool {
        self.ahead.is_some()
    }

    /// Bytes read ahead and not yet taken.
    fn unread(&self) -> usize {
        self.ahead.as_ref().map_or(0, |ahead| ahead.len() - self.taken)
    }

    /// Copies what was read ahead into `buf`; a drained buffer is kept only while the
    /// stream goes on.
    fn take(&mut self, buf: &mut ReadBuf<'_>) {
        let Some(ahead) = &self.ahead else { return };
        let n = buf.remaining().min(ahead.len() - self.taken);
        buf.put_slice(&ahead[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == ahead.len() && !self.streaming {
            self.ahead = None;
        }
    }
}

impl<S: AsyncRead + Unpin> ReadAhead<S> {
    /// One read of up to [`READ_AHEAD`] bytes into the borrowed buffer. While nothing
    /// comes the buffer is given back: a stalled upload holds none.
    fn poll_read_ahead(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut ahead = self.ahead.take().unwrap_or_else(|| Vec::with_capacity(READ_AHEAD));
        ahead.clear();
        self.taken = 0;
        let mut into = ReadBuf::uninit(ahead.spare_capacity_mut());
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut into))?;
        let n = into.filled().len();
        // SAFETY: `into` is over `ahead`'s spare capacity and reports its first n bytes
        // as initialised: the inner read wrote them.
        unsafe { ahead.set_len(n) };
        self.streaming = n == READ_AHEAD;
        if n > 0 {
            self.ahead = Some(ahead);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unread() == 0 && this.streaming && buf.remaining() < READ_AHEAD {
            ready!(this.poll_read_ahead(cx))?;
        }
        if this.unread() > 0 {
            this.take(buf);
            return Poll::Ready(Ok(()));
        }
        // A read too big to go ahead of: a drained buffer kept for the stream goes back.
        this.ahead = None;
        let wanted = buf.remaining();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.streaming = wanted > 0 && buf.filled().len() - before == wanted;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the reads that reach the stream below.
    struct Counted<S> {
        inner: S,
        reads: usize,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            self.reads += 1;
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_large_message_read_in_small_pieces_takes_few_reads_and_arrives_whole() {
        let sent = pattern(4 * READ_AHEAD + 1000);
        let (mut writer, reader) = tokio::io::duplex(sent.len());
        writer.write_all(&sent).await.unwrap();
        drop(writer);
        let mut stream = ReadAhead::new(Counted { inner: reader, reads: 0 });
        let mut got = Vec::new();
        let mut piece = [0u8; 1024];
        loop {
            match stream.read(&mut piece).await.unwrap() {
                0 => break,
                n => got.extend_from_slice(&piece[..n]),
            }
        }
        assert_eq!(got, sent);
        // One small read, then READ_AHEAD at a time (and the end): not one per KiB.
        assert!(stream.inner.reads <= 8, "{} reads", stream.inner.reads);
        assert!(!stream.holds(), "the borrowed buffer is released once drained");
    }

    #[tokio::test]
    async fn small_messages_are_read_straight_through_and_nothing_is_held() {
        let (mut writer, reader) = tokio::io::duplex(1 << 16);
        let mut stream = ReadAhead::new(Counted { inner: reader, reads: 0 });
        let mut piece = [0u8; 1024];
        for round in 0..3u8 {
            writer.write_all(&[round; 100]).await.unwrap();
            let n = stream.read(&mut piece).await.unwrap();
            assert_eq!(&piece[..n], &[round; 100][..]);
            assert!(!stream.holds());
        }
        assert_eq!(stream.inner.reads, 3);
    }

    #[tokio::test]
    async fn a_read_as_big_as_the_read_ahead_goes_straight_through_and_gives_the_buffer_back() {
        let sent = pattern(3 * READ_AHEAD);
        let (mut writer, reader) = tokio::io::duplex(sent.len());
        writer.write_all(&sent).await.unwrap();
        let mut stream = ReadAhead::new(reader);
        let mut small = [0u8; 1024];
        assert_eq!(stream.read(&mut small).await.unwrap(), 1024);
        // Streaming: this read goes ahead, fills the buffer, and drains it in pieces.
        let mut got = small.to_vec();
        while got.len() < 1024 + READ_AHEAD {
            let n = stream.read(&mut small).await.unwrap();
            got.extend_from_slice(&small[..n]);
        }
        assert!(stream.holds(), "kept while the stream goes on");
        let mut big = vec![0u8; READ_AHEAD];
        let n = stream.read(&mut big).await.unwrap();
        got.extend_from_slice(&big[..n]);
        assert!(!stream.holds(), "a read that needs no buffer gives it back");
        assert_eq!(got, sent[..got.len()]);
    }

    #[tokio::test]
    async fn a_filled_read_followed_by_the_end_reads_ahead_once_and_holds_nothing() {
        let (mut writer, reader) = tokio::io::duplex(1 << 16);
        let mut stream = ReadAhead::new(reader);
        writer.write_all(&[7; 1024]).await.unwrap();
        drop(writer);
        let mut piece = [0u8; 1024];
        assert_eq!(stream.read(&mut piece).await.unwrap(), 1024);
        assert_eq!(stream.read(&mut piece).await.unwrap(), 0);
        assert!(!stream.holds());
    }
}
