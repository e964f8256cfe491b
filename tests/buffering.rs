//! Request and response buffering against an in-test upstream: bodies arrive whole and
//! intact through memory and temp files, the upstream is freed before a slow browser has
//! read, the bounds hold, and streaming stays available (per route, `X-Accel-Buffering: no`).
//! The gunicorn worker scenarios are in `tests/buffering_gunicorn.rs`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

type Sender = mpsc::Sender<Result<Frame<Bytes>, switchyard::body::BoxError>>;

/// A body fed through a channel: the test decides when each chunk goes and when it ends.
fn channel_body() -> (Sender, switchyard::body::Body) {
    let (tx, mut rx) = mpsc::channel(4);
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (tx, StreamBody::new(stream).boxed())
}

/// `n` bytes of a pattern that shows any reordering or loss.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// An upstream that answers with what it saw: framing headers, then the body's bytes.
async fn body_echo() -> Upstream {
    upstream(|req: Request<Incoming>| async move {
        let length = req.headers().get("content-length").map(|v| v.to_str().unwrap().to_string());
        let chunked = req.headers().get("transfer-encoding").is_some();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut response = Response::new(bytes_body(body));
        response.headers_mut().insert("x-seen-length", format!("{length:?} chunked={chunked}").parse().unwrap());
        response
    })
    .await
}

/// A body of `n` pattern bytes in 64 KiB pieces; `done` fires when its last piece is taken.
fn big_pattern_body(n: usize, done: oneshot::Sender<()>) -> switchyard::body::Body {
    let data = Bytes::from(pattern(n));
    let mut done = Some(done);
    let mut offset = 0;
    let stream = futures_util::stream::poll_fn(move |_| {
        if offset >= data.len() {
            if let Some(done) = done.take() {
                let _ = done.send(());
            }
            return std::task::Poll::Ready(None);
        }
        let end = (offset + (64 << 10)).min(data.len());
        let piece = data.slice(offset..end);
        offset = end;
        std::task::Poll::Ready(Some(Ok::<_, switchyard::body::BoxError>(Frame::data(piece))))
    });
    StreamBody::new(stream).boxed()
}

#[tokio::test]
async fn large_request_body_spills_to_a_temp_file_and_arrives_whole_with_its_length() {
    let up = body_echo().await;
    let sy =
        start_switchyard(&format!("{}[buffering]\nrequest_memory = \"1KiB\"\n", minimal_config(&up.url, ""))).await;
    let (tx, body) = channel_body();
    let sent = pattern(300_000);
    let chunks = sent.clone();
    tokio::spawn(async move {
        for chunk in chunks.chunks(7_000) {
            tx.send(Ok(Frame::data(Bytes::copy_from_slice(chunk)))).await.unwrap();
        }
    });
    let request = Request::post(url(sy.plain_addrs[0], "/upload")).body(body).unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.headers()["x-seen-length"], "Some(\"300000\") chunked=false");
    assert!(read_body(response).await == sent, "the body arrived changed");
}

#[tokio::test]
async fn request_trailers_never_reach_the_upstream() {
    let up = upstream(|req: Request<Incoming>| async move {
        let collected = req.into_body().collect().await.unwrap();
        let trailers = format!("{:?}", collected.trailers().map(|t| t.keys().collect::<Vec<_>>()));
        Response::new(bytes_body(format!("{trailers} {}", String::from_utf8_lossy(&collected.to_bytes()))))
    })
    .await;
    // Streamed too: buffering would drop them by construction, the route shows the rule.
    let config = format!(
        "{}[[routes]]\npath = \"/stream/*\"\nwebsocket = \"deny\"\nbuffering = false\n",
        minimal_config(&up.url, "")
    );
    let sy = start_switchyard(&config).await;
    for path in ["/buffered", "/stream/x"] {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            tx.send(Ok(Frame::data(Bytes::from_static(b"data")))).await.unwrap();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-switchyard-user", "1".parse().unwrap());
            trailers.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
            tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
        });
        let request = Request::post(url(sy.plain_addrs[0], path)).header("te", "trailers").body(body).unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(read_body(response).await, "None data", "{path}");
    }
}

#[tokio::test]
async fn response_larger_than_memory_goes_through_a_temp_file_intact() {
    let up = upstream(|_| async {
        let (done, _) = oneshot::channel();
        Response::new(big_pattern_body(4 << 20, done))
    })
    .await;
    let sy =
        start_switchyard(&format!("{}[buffering]\nresponse_memory = \"1KiB\"\n", minimal_config(&up.url, ""))).await;
    let response = client().get(url(sy.plain_addrs[0], "/big").parse().unwrap()).await.unwrap();
    assert!(read_body(response).await == pattern(4 << 20), "the body arrived changed");
}

#[tokio::test]
async fn upstream_is_freed_before_a_browser_that_reads_nothing() {
    let (done_tx, done_rx) = oneshot::channel();
    let done_tx = Arc::new(std::sync::Mutex::new(Some(done_tx)));
    let up = upstream(move |_| {
        let done = done_tx.lock().unwrap().take().expect("one request");
        async move { Response::new(big_pattern_body(32 << 20, done)) }
    })
    .await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let mut browser = tokio::net::TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    browser.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // The browser reads nothing; 32 MiB is far more than the sockets between us hold.
    tokio::time::timeout(Duration::from_secs(20), done_rx)
        .await
        .expect("the upstream finished writing while the browser read nothing")
        .unwrap();
    drop(browser);
}

#[tokio::test]
async fn response_past_the_temp_file_limit_streams_intact() {
    let up = upstream(|_| async {
        let (done, _) = oneshot::channel();
        Response::new(big_pattern_body(1 << 20, done))
    })
    .await;
    let extra = "[buffering]\nresponse_memory = \"1KiB\"\nmax_response_temp_file = \"0B\"\n";
    let sy = start_switchyard(&format!("{}{extra}", minimal_config(&up.url, ""))).await;
    let response = client().get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
    assert!(read_body(response).await == pattern(1 << 20), "the body arrived changed");
}

#[tokio::test]
async fn request_body_past_the_temp_disk_limit_is_503_and_never_reaches_the_upstream() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let up = upstream(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { reply(200, "reached") }
    })
    .await;
    let extra = "[buffering]\nrequest_memory = \"1KiB\"\nmax_temp_disk = \"2KiB\"\n";
    let sy = start_switchyard(&format!("{}{extra}", minimal_config(&up.url, ""))).await;
    let request = Request::post(url(sy.plain_addrs[0], "/")).body(bytes_body(vec![b'x'; 8 << 10])).unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The budget came back: a body that fits goes through.
    let request = Request::post(url(sy.plain_addrs[0], "/")).body(bytes_body(vec![b'x'; 2 << 10])).unwrap();
    assert_eq!(client().request(request).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn x_accel_buffering_no_streams_and_is_not_passed_on() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let up = upstream(move |_| {
        let mut release = release_rx.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                tx.send(Ok(Frame::data(Bytes::from_static(b"first;")))).await.unwrap();
                let _ = release.wait_for(|r| *r).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"second")))).await.unwrap();
            });
            let mut response = Response::new(body);
            response.headers_mut().insert("x-accel-buffering", "no".parse().unwrap());
            response
        }
    })
    .await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let response = client().get(url(sy.plain_addrs[0], "/events").parse().unwrap()).await.unwrap();
    assert!(response.headers().get("x-accel-buffering").is_none());
    let mut body = response.into_body();
    assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "first;");
    release_tx.send(true).unwrap();
    assert_eq!(body.collect().await.unwrap().to_bytes(), "second");
}

/// The upstream answers at once, before reading the body: only a streamed request body
/// lets the browser see that answer while its upload is still open.
#[tokio::test]
async fn route_with_buffering_off_streams_the_request_body() {
    let up = upstream(|req: Request<Incoming>| async move {
        let chunked = req.headers().get("transfer-encoding").is_some();
        tokio::spawn(async move { drop(req.into_body().collect().await) });
        Response::new(bytes_body(format!("answered early, chunked={chunked}")))
    })
    .await;
    let config = format!(
        "{}[[routes]]\npath = \"/uploads/*\"\nwebsocket = \"deny\"\nbuffering = false\n",
        minimal_config(&up.url, "")
    );
    let sy = start_switchyard(&config).await;
    let (tx, body) = channel_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"part one")))).await.unwrap();
    let request = Request::post(url(sy.plain_addrs[0], "/uploads/big")).body(body).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(request))
        .await
        .expect("the answer came while the upload was still open")
        .unwrap();
    assert_eq!(read_body(response).await, "answered early, chunked=true");
    drop(tx);
}

#[tokio::test]
async fn request_body_that_pauses_past_body_read_timeout_is_408_and_never_reaches_the_upstream() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let up = upstream(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { reply(200, "reached") }
    })
    .await;
    let sy = start_switchyard(
        &minimal_config(&up.url, "").replace("[upstream]", "body_read_timeout = \"300ms\"\n[upstream]"),
    )
    .await;
    let (tx, body) = channel_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"a start, then silence")))).await.unwrap();
    let request = Request::post(url(sy.plain_addrs[0], "/")).body(body).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    drop(tx);
}

/// A steady upload that takes longer than `response_timeout` is the browser's time, not
/// Django's: buffered or streamed, Django's clock starts once the body has been sent.
#[tokio::test]
async fn slow_upload_longer_than_response_timeout_is_not_a_504() {
    let up = body_echo().await;
    let config = format!(
        "{}[[routes]]\npath = \"/stream/*\"\nwebsocket = \"deny\"\nbuffering = false\n",
        minimal_config(&up.url, "response_timeout = \"300ms\"")
    );
    let sy = start_switchyard(&config).await;
    for path in ["/buffered", "/stream/x"] {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            // 8 pieces, 100 ms apart: the upload takes 800 ms, more than response_timeout.
            for _ in 0..8 {
                tx.send(Ok(Frame::data(Bytes::from(vec![b'u'; 1000])))).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let request = Request::post(url(sy.plain_addrs[0], path)).body(body).unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(read_body(response).await.len(), 8000, "{path}");
    }
}

/// Raw bytes: a chunked body with a chunk size that is not hex is the browser's fault.
#[tokio::test]
async fn malformed_chunked_body_is_400_and_never_reaches_the_upstream() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let up = upstream(move |req: Request<Incoming>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let _ = req.into_body().collect().await;
            reply(200, "reached")
        }
    })
    .await;
    let config = format!(
        "{}[[routes]]\npath = \"/stream/*\"\nwebsocket = \"deny\"\nbuffering = false\n",
        minimal_config(&up.url, "")
    );
    let sy = start_switchyard(&config).await;
    for path in ["/buffered", "/stream/x"] {
        let mut stream = tokio::net::TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{path}: {answer}");
        assert!(answer.contains("malformed"), "{path}: {answer}");
        if path == "/buffered" {
            // Read whole first, a malformed body never reaches the upstream.
            assert_eq!(calls.load(Ordering::SeqCst), 0);
        }
    }
}
