//! Switchyard's log as a signal for in-process tests: what it logged is often the only
//! outward sign that something happened (a revalidation skipped during an outage, a hook
//! that failed), and waiting for that line replaces guessing how long it takes.
//!
//! The capture is the calling thread's default subscriber, so it sees what Switchyard
//! logs from tasks on the test's runtime (`#[tokio::test]` runs them on this thread), and
//! tests in one process (plain `cargo test`) do not see each other's lines.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::PATIENCE;

/// The captured lines (JSON, one object per line); stops capturing when dropped.
pub struct Logs {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

/// Starts capturing this thread's log at `filter` (an `EnvFilter` directive: "debug",
/// "switchyard=debug", …).
pub fn capture(filter: &str) -> Logs {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(Sink(buffer.clone()))
        .finish();
    Logs { buffer, _guard: tracing::subscriber::set_default(subscriber) }
}

/// [`capture`] in the text format people read (`[log] format = "text"`); read it with
/// [`Logs::text`].
pub fn capture_text(filter: &str) -> Logs {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(Sink(buffer.clone()))
        .finish();
    Logs { buffer, _guard: tracing::subscriber::set_default(subscriber) }
}

impl Logs {
    /// Everything so far, as written.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Every line so far, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.buffer.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// How many lines so far have a message containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| message(l).is_some_and(|m| m.contains(needle))).count()
    }

    /// Waits (bounded by [`PATIENCE`]) until `n` lines have a message containing `needle`.
    pub async fn until(&self, n: usize, needle: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.count(needle) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} log lines with {needle:?} within {PATIENCE:?}; the log:\n{}",
                String::from_utf8_lossy(&self.buffer.lock().unwrap())
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A line's message.
pub fn message(line: &serde_json::Value) -> Option<&str> {
    line["fields"]["message"].as_str()
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Sink;

    fn make_writer(&'a self) -> Sink {
        self.clone()
    }
}
