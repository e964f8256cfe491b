//! Bodies pass with bounded memory: 100 MiB up and down through the real binary, to a
//! downstream that reads as fast as it can and to one that reads slowly, must not raise
//! its peak resident set by more than a few MiB.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::binary;
use support::*;

const TOTAL: u64 = 100 << 20;
/// A warm-up body: big enough that every worker thread's allocator has grown its heap.
const WARM: u64 = 8 << 20;
const CHUNK: usize = 64 << 10;
/// Peak RSS growth allowed for 100 MiB each way: buffers, not bodies.
const ALLOWED_GROWTH_KIB: u64 = 8 << 10;

/// A body of `total` bytes produced chunk by chunk, never held whole.
fn big_body(total: u64) -> switchyard::body::Body {
    counted_body(total, Arc::new(AtomicU64::new(0)))
}

/// [`big_body`], adding each chunk's size to `produced` as it is handed over.
fn counted_body(total: u64, produced: Arc<AtomicU64>) -> switchyard::body::Body {
    let chunk = Bytes::from(vec![b'z'; CHUNK]);
    let chunks = total / CHUNK as u64;
    let stream = futures_util::stream::iter((0..chunks).map(move |_| {
        produced.fetch_add(CHUNK as u64, Ordering::SeqCst);
        Ok(Frame::data(chunk.clone()))
    }));
    StreamBody::new(stream).boxed()
}

/// Drains a body, counting its bytes without keeping them.
async fn drain<B>(mut body: B) -> u64
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            n += data.len() as u64;
        }
    }
    n
}

/// The binary in front of an upstream that stores POSTs and sends `TOTAL` bytes on GET
/// (`WARM` on /warm), warmed up both ways; gives the process, its peak RSS baseline, the
/// bytes the upstream received, and the bytes it has produced for GETs so far.
struct Warm {
    _up: Upstream,
    _dir: tempfile::TempDir,
    sy: binary::Process,
    baseline: u64,
    received: Arc<AtomicU64>,
    produced: Arc<AtomicU64>,
}

async fn warm_binary() -> Warm {
    let received = Arc::new(AtomicU64::new(0));
    let produced = Arc::new(AtomicU64::new(0));
    let (counter, production) = (received.clone(), produced.clone());
    let up = upstream(move |req: Request<hyper::body::Incoming>| {
        let (counter, production) = (counter.clone(), production.clone());
        async move {
            if req.method() == http::Method::POST {
                counter.store(drain(req.into_body()).await, Ordering::SeqCst);
                return reply(200, "stored");
            }
            if req.uri().path() == "/warm" {
                return Response::new(big_body(WARM));
            }
            Response::new(counted_body(TOTAL, production))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let sy = binary::spawn(dir.path(), &minimal_config(&up.url, "max_request_body = \"1GiB\""));
    // Warm up both ways on several connections, so every worker thread has served a
    // stream and its allocator has its working heap before the baseline is read.
    for _ in 0..4 {
        let (a, b) = (client(), client());
        let up = Request::post(url(sy.plain[0], "/warm")).body(big_body(WARM)).unwrap();
        let (up, down) = tokio::join!(a.request(up), b.get(url(sy.plain[0], "/warm").parse().unwrap()));
        drain(up.unwrap().into_body()).await;
        drain(down.unwrap().into_body()).await;
    }
    let (_, baseline) = binary::memory_kib(sy.child.id());
    Warm { _up: up, _dir: dir, sy, baseline, received, produced }
}

impl Warm {
    /// Fails when the peak RSS grew by the allowed amount or more since the baseline.
    fn assert_peak_bounded(&self, what: &str) {
        let (rss, peak) = binary::memory_kib(self.sy.child.id());
        println!("switchyard RSS: baseline peak {} KiB, after {what} peak {peak} KiB, now {rss} KiB", self.baseline);
        assert!(
            peak.saturating_sub(self.baseline) < ALLOWED_GROWTH_KIB,
            "peak RSS grew by {} KiB: {what}",
            peak - self.baseline
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_up_and_down_keeps_rss_bounded() {
    let w = warm_binary().await;
    let upload = Request::post(url(w.sy.plain[0], "/upload")).body(big_body(TOTAL)).unwrap();
    let response = client().request(upload).await.unwrap();
    assert_eq!(read_body(response).await, "stored");
    assert_eq!(w.received.load(Ordering::SeqCst), TOTAL);

    let download = client().get(url(w.sy.plain[0], "/download").parse().unwrap()).await.unwrap();
    assert_eq!(drain(download.into_body()).await, TOTAL);
    w.assert_peak_bounded("streaming 100 MiB each way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_downstream_does_not_grow_memory() {
    let w = warm_binary().await;
    let download = client().get(url(w.sy.plain[0], "/download").parse().unwrap()).await.unwrap();
    let mut body = download.into_body();
    // The reader pauses after every MiB (pacing, not synchronisation: it is what makes it
    // slow), so the upstream, which produces as fast as it is asked, runs ahead of it.
    let (mut read, mut since_pause, mut most_ahead) = (0u64, 0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            read += data.len() as u64;
            since_pause += data.len() as u64;
        }
        if since_pause >= 1 << 20 {
            since_pause = 0;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            most_ahead = most_ahead.max(w.produced.load(Ordering::SeqCst).saturating_sub(read));
        }
    }
    assert_eq!(read, TOTAL);
    // The scene is what the name says only if data piled up somewhere behind the reader.
    assert!(most_ahead >= 2 << 20, "the upstream was at most {most_ahead} bytes ahead: the reader was not slow");
    w.assert_peak_bounded("100 MiB to a slow reader");
}
