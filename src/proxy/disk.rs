//! Temp files for buffered bodies: each is unlinked the moment it is made (nothing is left
//! behind, whatever happens to the process), and every byte in one counts against one
//! budget shared by every worker thread (`[buffering] max_temp_disk`). Reads and writes are
//! positional and run on tokio's blocking pool, so a worker's runtime never waits on disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// The budget every temp file draws on; cheap to clone.
#[derive(Clone, Debug)]
pub struct TempDisk {
    inner: Arc<Budget>,
}

#[derive(Debug)]
struct Budget {
    dir: PathBuf,
    limit: u64,
    used: AtomicU64,
}

/// One unlinked temp file and the bytes it has drawn from the budget; dropping it closes
/// the file (the disk space goes with it) and gives the bytes back. Shareable: one task
/// may write while another reads what was written before.
#[derive(Debug)]
pub struct TempFile {
    file: Arc<File>,
    budget: Arc<Budget>,
    reserved: AtomicU64,
}

impl TempDisk {
    /// A budget of `limit` bytes for temp files made in `dir`.
    pub fn new(dir: PathBuf, limit: u64) -> Self {
        Self { inner: Arc::new(Budget { dir, limit, used: AtomicU64::new(0) }) }
    }

    /// Bytes all temp files hold now.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// A new, already unlinked temp file holding nothing yet.
    pub async fn create(&self) -> io::Result<TempFile> {
        let dir = self.inner.dir.clone();
        let file =
            tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir)).await.map_err(io::Error::other)??;
        Ok(TempFile { file: Arc::new(file), budget: self.inner.clone(), reserved: AtomicU64::new(0) })
    }
}

impl Budget {
    /// Takes `n` bytes from the budget, or nothing when they are not there.
    fn take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

impl TempFile {
    /// Draws `n` more bytes from the budget for this file; false when the budget is spent.
    pub fn reserve(&self, n: u64) -> bool {
        let taken = self.budget.take(n);
        if taken {
            self.reserved.fetch_add(n, Ordering::AcqRel);
        }
        taken
    }

    /// Gives everything this file drew back (its content is no longer needed and will be
    /// overwritten from offset 0).
    pub fn release_all(&self) {
        self.budget.give_back(self.reserved.swap(0, Ordering::AcqRel));
    }

    /// Bytes this file has drawn from the budget.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    /// Writes `data` at `offset`.
    pub async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.write_all_at(&data, offset)).await.map_err(io::Error::other)?
    }

    /// Reads exactly `len` bytes at `offset` (they were written before).
    pub async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(len);
            file.read_exact_at(&mut buf, offset)?;
            Ok(buf.freeze())
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn temp_files_are_unlinked_and_draw_on_one_budget() {
        let dir = tempfile::tempdir().unwrap();
        let disk = TempDisk::new(dir.path().to_path_buf(), 10);
        let a = disk.create().await.unwrap();
        let b = disk.create().await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temp files must not have names");
        assert!(a.reserve(6));
        assert!(!b.reserve(5), "6 + 5 is past the budget of 10");
        assert!(b.reserve(4));
        a.write_at(0, Bytes::from_static(b"abcdef")).await.unwrap();
        assert_eq!(a.read_at(2, 3).await.unwrap(), "cde");
        drop(a);
        assert_eq!(disk.used(), 4);
        assert!(b.reserve(6));
    }
}
