//! Bodies stream with bounded memory: 100 MiB up and down through the real binary must not
//! raise its peak resident set by more than a few MiB.

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
    let chunk = Bytes::from(vec![b'z'; CHUNK]);
    let chunks = total / CHUNK as u64;
    let stream = futures_util::stream::iter((0..chunks).map(move |_| Ok(Frame::data(chunk.clone()))));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_up_and_down_keeps_rss_bounded() {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let up = upstream(move |req: Request<hyper::body::Incoming>| {
        let counter = counter.clone();
        async move {
            if req.method() == http::Method::POST {
                counter.store(drain(req.into_body()).await, Ordering::SeqCst);
                return reply(200, "stored");
            }
            let total = if req.uri().path() == "/warm" { WARM } else { TOTAL };
            Response::new(big_body(total))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let sy = binary::spawn(dir.path(), &minimal_config(&up.url, "max_request_body = \"1GiB\""));
    let pid = sy.child.id();
    // Warm up both ways on several connections, so every worker thread has served a
    // stream and its allocator has its working heap before the baseline is read.
    for _ in 0..4 {
        let (a, b) = (client(), client());
        let up = Request::post(url(sy.plain[0], "/warm")).body(big_body(WARM)).unwrap();
        let (up, down) = tokio::join!(a.request(up), b.get(url(sy.plain[0], "/warm").parse().unwrap()));
        drain(up.unwrap().into_body()).await;
        drain(down.unwrap().into_body()).await;
    }
    let (_, baseline) = binary::memory_kib(pid);

    let upload = Request::post(url(sy.plain[0], "/upload")).body(big_body(TOTAL)).unwrap();
    let response = client().request(upload).await.unwrap();
    assert_eq!(read_body(response).await, "stored");
    assert_eq!(received.load(Ordering::SeqCst), TOTAL);

    let download = client().get(url(sy.plain[0], "/download").parse().unwrap()).await.unwrap();
    assert_eq!(drain(download.into_body()).await, TOTAL);

    let (rss, peak) = binary::memory_kib(pid);
    println!("switchyard RSS: baseline peak {baseline} KiB, after 2x100 MiB peak {peak} KiB, now {rss} KiB");
    assert!(
        peak.saturating_sub(baseline) < ALLOWED_GROWTH_KIB,
        "peak RSS grew by {} KiB streaming 100 MiB each way",
        peak - baseline
    );
}
