//! Plain-HTTP forwarding against an in-test upstream: status, headers, streaming, limits,
//! failures, shutdown.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::*;
use tokio::sync::mpsc;

/// An upstream that answers with a JSON object of the request headers it saw.
async fn header_echo() -> Upstream {
    upstream(|req: Request<hyper::body::Incoming>| async move {
        let mut seen = serde_json::Map::new();
        for (name, value) in req.headers() {
            let entry = seen.entry(name.as_str().to_string()).or_insert_with(|| serde_json::json!([]));
            entry.as_array_mut().unwrap().push(value.to_str().unwrap_or("").into());
        }
        Response::new(bytes_body(serde_json::Value::Object(seen).to_string()))
    })
    .await
}

/// An upstream that holds each request at `gate`, then answers 200 with `text`.
async fn held_upstream(gate: &Gate, text: &'static str) -> Upstream {
    let gate = gate.clone();
    upstream(move |_| {
        let gate = gate.clone();
        async move {
            gate.pass().await;
            reply(200, text)
        }
    })
    .await
}

async fn seen_headers(request: Request<switchyard::body::Body>) -> serde_json::Value {
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_slice(&read_body(response).await).unwrap()
}

#[tokio::test]
async fn upstream_status_headers_and_body_pass_unchanged() {
    let up = upstream(|_| async {
        let mut r = reply(418, "short and stout");
        r.headers_mut().insert("x-teapot", "yes".parse().unwrap());
        r.headers_mut().append("set-cookie", "a=1".parse().unwrap());
        r.headers_mut().append("set-cookie", "b=2".parse().unwrap());
        r
    })
    .await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let response = client().get(url(sy.plain_addrs[0], "/x").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.headers()["x-teapot"], "yes");
    assert_eq!(response.headers().get_all("set-cookie").iter().count(), 2);
    assert_eq!(read_body(response).await, "short and stout");
}

#[tokio::test]
async fn path_query_method_and_body_reach_the_upstream() {
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        let line = format!("{} {}", req.method(), req.uri());
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Response::new(bytes_body(format!("{line} {}", String::from_utf8_lossy(&body))))
    })
    .await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let request = Request::put(url(sy.plain_addrs[0], "/a/b?c=d&e=%20")).body(bytes_body("payload")).unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(read_body(response).await, "PUT /a/b?c=d&e=%20 payload");
}

#[tokio::test]
async fn chunked_request_body_reaches_the_upstream_with_its_length() {
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        let chunked = req.headers().get("transfer-encoding").is_some_and(|v| v == "chunked");
        let declared = req.headers().get("content-length").map(|v| v.to_str().unwrap().to_string());
        let len = req.into_body().collect().await.unwrap().to_bytes().len();
        Response::new(bytes_body(format!("chunked={chunked} declared={declared:?} len={len}")))
    })
    .await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, switchyard::body::BoxError>>(4);
    let body = StreamBody::new(tokio_stream_from(rx)).boxed();
    let request = Request::post(url(sy.plain_addrs[0], "/upload")).body(body).unwrap();
    let sending = tokio::spawn(async move {
        for _ in 0..10 {
            tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 1000])))).await.unwrap();
        }
    });
    let response = client().request(request).await.unwrap();
    sending.await.unwrap();
    assert_eq!(read_body(response).await, "chunked=false declared=Some(\"10000\") len=10000");
}

/// A chunked response: "first;" at once, "second" once `release` turns true.
async fn held_stream(mut release: tokio::sync::watch::Receiver<bool>) -> Response<switchyard::body::Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, switchyard::body::BoxError>>(2);
    tokio::spawn(async move {
        tx.send(Ok(Frame::data(Bytes::from_static(b"first;")))).await.unwrap();
        let _ = release.wait_for(|r| *r).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"second")))).await.unwrap();
    });
    Response::new(StreamBody::new(tokio_stream_from(rx)).boxed())
}

#[tokio::test]
async fn chunked_response_streams_before_the_upstream_finishes() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let up = upstream(move |_| held_stream(release_rx.clone())).await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let response = client().get(url(sy.plain_addrs[0], "/stream").parse().unwrap()).await.unwrap();
    let mut body = response.into_body();
    // The first chunk arrives while the upstream still holds the second one back.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first;");
    release_tx.send(true).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "second");
}

#[tokio::test]
async fn trailers_pass_through_when_the_downstream_accepts_them() {
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        let te = req.headers().get("te").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, switchyard::body::BoxError>>(2);
        tokio::spawn(async move {
            tx.send(Ok(Frame::data(Bytes::from(format!("te={te}"))))).await.unwrap();
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", "abc123".parse().unwrap());
            tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
        });
        let mut response = Response::new(StreamBody::new(tokio_stream_from(rx)).boxed());
        response.headers_mut().insert("trailer", "x-checksum".parse().unwrap());
        response
    })
    .await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let request = Request::get(url(sy.plain_addrs[0], "/t")).header("te", "trailers").body(bytes_body("")).unwrap();
    let response = client().request(request).await.unwrap();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["x-checksum"], "abc123");
    assert_eq!(collected.to_bytes(), "te=trailers");
}

#[tokio::test]
async fn slow_upstream_is_504() {
    // The upstream holds every request at a gate the test never opens.
    let gate = Gate::default();
    let up = held_upstream(&gate, "too late").await;
    let sy = start_switchyard(&minimal_config(&up.url, "response_timeout = \"200ms\"")).await;
    let started = std::time::Instant::now();
    let response = client().get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(String::from_utf8_lossy(&read_body(response).await).contains("took too long"));
}

#[tokio::test]
async fn upstream_down_is_502() {
    let down = Refusing::new();
    let sy = start_switchyard(&minimal_config(&down.url(), "")).await;
    let response = client().get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(String::from_utf8_lossy(&read_body(response).await).contains("bad gateway"));
}

#[tokio::test]
async fn declared_body_over_the_limit_is_413_without_reaching_upstream() {
    let (up, calls) = counting_upstream(None).await;
    let sy = start_switchyard(&minimal_config(&up.url, "max_request_body = \"1KiB\"")).await;
    let request = Request::post(url(sy.plain_addrs[0], "/")).body(bytes_body(vec![b'x'; 2048])).unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let reason = String::from_utf8_lossy(&read_body(response).await).into_owned();
    assert!(reason.contains("request body too large"), "{reason:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let up = upstream(|req: Request<hyper::body::Incoming>| async move {
        match req.into_body().collect().await {
            Ok(_) => reply(200, "whole body read"),
            Err(_) => reply(400, "body broke"),
        }
    })
    .await;
    let sy = start_switchyard(&minimal_config(&up.url, "max_request_body = \"4KiB\"")).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, switchyard::body::BoxError>>(4);
    tokio::spawn(async move {
        for _ in 0..8 {
            if tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 1024])))).await.is_err() {
                break;
            }
        }
    });
    let request =
        Request::post(url(sy.plain_addrs[0], "/")).body(StreamBody::new(tokio_stream_from(rx)).boxed()).unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let reason = String::from_utf8_lossy(&read_body(response).await).into_owned();
    assert!(reason.contains("request body too large"), "{reason:?}");
}

#[tokio::test]
async fn spoofed_switchyard_headers_never_reach_the_upstream() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let request = Request::get(url(sy.plain_addrs[0], "/"))
        .header("x-switchyard-user", "{\"id\": \"1\"}")
        .header("X-Switchyard-Signature", "t=1,v1=00")
        .body(bytes_body(""))
        .unwrap();
    let seen = seen_headers(request).await;
    let names: Vec<&String> = seen.as_object().unwrap().keys().collect();
    assert!(names.iter().all(|n| !n.starts_with("x-switchyard-")), "{names:?}");
}

#[tokio::test]
async fn duplicate_cookie_headers_are_merged_into_one() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let request = Request::get(url(sy.plain_addrs[0], "/"))
        .header("cookie", "csrftoken=abc")
        .header("cookie", "sessionid=k3y")
        .body(bytes_body(""))
        .unwrap();
    let seen = seen_headers(request).await;
    assert_eq!(seen["cookie"], serde_json::json!(["csrftoken=abc; sessionid=k3y"]));
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let request = Request::get(url(sy.plain_addrs[0], "/"))
        .header("host", "shop.example")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("connection", "x-drop-me")
        .header("x-drop-me", "1")
        .body(bytes_body(""))
        .unwrap();
    let seen = seen_headers(request).await;
    assert_eq!(seen["host"], serde_json::json!(["shop.example"]));
    assert_eq!(seen["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(seen["x-forwarded-proto"], serde_json::json!(["http"]));
    assert_eq!(seen["x-forwarded-host"], serde_json::json!(["shop.example"]));
    assert!(seen.get("x-drop-me").is_none());
}

#[tokio::test]
async fn forwarding_headers_from_a_trusted_proxy_are_believed() {
    let up = header_echo().await;
    let config = minimal_config(&up.url, "").replace("[upstream]", "trusted_proxies = [\"127.0.0.0/8\"]\n[upstream]");
    let sy = start_switchyard(&config).await;
    let request = Request::get(url(sy.plain_addrs[0], "/"))
        .header("host", "shop.example")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .body(bytes_body(""))
        .unwrap();
    let seen = seen_headers(request).await;
    assert_eq!(seen["x-forwarded-for"], serde_json::json!(["203.0.113.7, 127.0.0.1"]));
    assert_eq!(seen["x-forwarded-proto"], serde_json::json!(["https"]));
}

#[tokio::test]
async fn unix_socket_upstream_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let up = unix_upstream(&dir.path().join("up.sock"), |_| async { reply(200, "over a unix socket") }).await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let response = client().get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(read_body(response).await, "over a unix socket");
}

#[tokio::test]
async fn websocket_upgrade_without_a_route_is_404() {
    let up = upstream(|_| async { reply(200, "should not be reached") }).await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let request = Request::get(url(sy.plain_addrs[0], "/ws/"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(bytes_body(""))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_stops_accepting() {
    let gate = Gate::default();
    let up = held_upstream(&gate, "finished").await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let addr = sy.plain_addrs[0];
    let in_flight = tokio::spawn(async move { client().get(url(addr, "/slow").parse().unwrap()).await });
    gate.until_waiting(1).await;
    let stopping = tokio::spawn(sy.shutdown(Duration::from_secs(20)));
    // The request is still held upstream while shutdown has begun: no new connections.
    eventually("the listener is closed", || async { tokio::net::TcpStream::connect(addr).await.is_err() }).await;
    assert!(!in_flight.is_finished(), "the in-flight request ended before the upstream answered");
    gate.open();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(read_body(response).await, "finished");
    assert_eq!(stopping.await.unwrap(), switchyard::server::Shutdown::Clean);
}

#[tokio::test]
async fn shutdown_cuts_requests_that_outlive_the_grace_period() {
    let gate = Gate::default();
    let up = held_upstream(&gate, "never").await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let addr = sy.plain_addrs[0];
    let in_flight = tokio::spawn(async move { client().get(url(addr, "/").parse().unwrap()).await });
    gate.until_waiting(1).await;
    let outcome = sy.shutdown(Duration::from_millis(200)).await;
    assert_eq!(outcome, switchyard::server::Shutdown::Cut);
    // Cut mid-exchange: the request was sent and the connection closed before any answer.
    let err = in_flight.await.unwrap().expect_err("the cut request must fail");
    let cause = std::iter::successors(std::error::Error::source(&err), |e| e.source())
        .find_map(|e| e.downcast_ref::<hyper::Error>())
        .unwrap_or_else(|| panic!("not a broken exchange: {err:?}"));
    assert!(cause.is_incomplete_message(), "{cause:?}");
}

#[tokio::test]
async fn plain_requests_are_redirected_to_https_when_asked() {
    let up = upstream(|_| async { reply(200, "plain") }).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = switchyard::devcert::write(dir.path(), switchyard::devcert::Overwrite::Refuse).unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nredirect_to_https = true\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n[upstream]\nurl = \"{}\"\n",
        cert.cert.display(),
        cert.key.display(),
        up.url
    );
    // The TLS listener binds port 0: the redirect must name the port it got.
    let sy = start_switchyard(&config).await;
    let tls_port = sy.tls_addrs[0].port();
    let request = Request::post(url(sy.plain_addrs[0], "/login/?next=/a"))
        .header("host", "localhost:8080")
        .body(bytes_body(""))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()["location"], format!("https://localhost:{tls_port}/login/?next=/a"));
}

/// Adapts an mpsc receiver to a `Stream` for `StreamBody`.
fn tokio_stream_from<T>(mut rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn connect_timeout_is_504() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so connecting
    // hangs (the first retry comes after a second) instead of being refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let full = socket.listen(0).unwrap();
    let _queued = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sy = start_switchyard(&minimal_config(&format!("http://{addr}"), "connect_timeout = \"300ms\"")).await;
    let started = std::time::Instant::now();
    let response = client().get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let reason = String::from_utf8_lossy(&read_body(response).await).into_owned();
    assert!(reason.contains("took too long"), "{reason:?}");
    drop(full);
}

#[tokio::test]
async fn the_access_line_names_method_path_status_bytes_times_and_peer() {
    let logs = support::logs::capture("switchyard::access=info");
    let up = upstream(|_| async { reply(418, "short and stout") }).await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let tcp = tokio::net::TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    let peer = tcp.local_addr().unwrap().to_string();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = Request::get("/teapot/brew?token=s3cret").header("host", "x").body(bytes_body("")).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(read_body(response).await, "short and stout");
    // The line is written once the body has gone: wait for it.
    let line = wait_for("the access line", || {
        let found = logs.lines().into_iter().find(|l| l["target"] == "switchyard::access");
        std::future::ready(found)
    })
    .await;
    let fields = &line["fields"];
    assert_eq!(fields["method"], "GET", "{line}");
    assert_eq!(fields["path"], "/teapot/brew", "the query may hold secrets: {line}");
    assert!(!line.to_string().contains("s3cret"), "{line}");
    assert_eq!(fields["status"], 418, "{line}");
    assert_eq!(fields["bytes"], 15, "{line}");
    assert_eq!(fields["peer"], peer.as_str(), "{line}");
    for time in ["total_ms", "upstream_ms"] {
        let ms: f64 = fields[time].as_str().unwrap_or_default().parse().unwrap_or_else(|_| panic!("{time}: {line}"));
        assert!(ms >= 0.0, "{line}");
    }
}

#[tokio::test]
async fn many_requests_share_one_pooled_upstream_connection() {
    let up = upstream(|_| async { reply(200, "pooled") }).await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    // One downstream connection, so every request is served by the same worker's pool.
    let tcp = tokio::net::TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    for i in 0..20 {
        let request = Request::get(format!("/r{i}")).header("host", "site.example").body(bytes_body("")).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(read_body(response).await, "pooled");
    }
    assert_eq!(up.connections(), 1, "the upstream saw a connection per request, not one kept alive");
}

/// A raw upstream that answers one request per connection with a keep-alive "ok", then
/// waits `close_after` (or, with `None`, for us to close) and reports when the connection
/// ended, counted from its answer.
async fn one_answer_upstream(close_after: Option<Duration>) -> (String, mpsc::UnboundedReceiver<Duration>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (ended_tx, ended_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let ended = ended_tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
                let answered = tokio::time::Instant::now();
                match close_after {
                    Some(after) => tokio::time::sleep(after).await,
                    None => while !matches!(stream.read(&mut buf).await, Ok(0) | Err(_)) {},
                }
                let _ = ended.send(answered.elapsed());
            });
        }
    });
    (url, ended_rx)
}

#[tokio::test]
async fn a_keep_alive_the_upstream_dropped_while_idle_is_not_the_browsers_error() {
    // As gunicorn's keep-alive timeout does: each connection takes one request, then closes.
    let (up, mut ended) = one_answer_upstream(Some(Duration::from_millis(50))).await;
    let sy = start_switchyard(&minimal_config(&up, "")).await;
    for i in 0..3 {
        let response = client().get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i} was blamed on a closed keep-alive");
        assert_eq!(read_body(response).await, "ok");
        tokio::time::timeout(PATIENCE, ended.recv()).await.expect("the upstream closed its connection");
    }
}

#[tokio::test]
async fn an_idle_pooled_connection_is_closed_after_pool_idle_timeout() {
    let (up, mut ended) = one_answer_upstream(None).await;
    let sy = start_switchyard(&minimal_config(&up, "pool_idle_timeout = \"300ms\"")).await;
    let response = client().get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(read_body(response).await, "ok");
    let kept = tokio::time::timeout(PATIENCE, ended.recv()).await.expect("the idle connection was closed").unwrap();
    assert!(kept >= Duration::from_millis(250), "closed after {kept:?}, before pool_idle_timeout");
}

#[tokio::test]
async fn a_streamed_response_keeps_its_connection_and_the_next_request_gets_another() {
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let up = upstream(move |req| {
        let release = release_rx.clone();
        async move {
            match req.uri().path() {
                "/stream" => held_stream(release).await,
                _ => reply(200, "quick"),
            }
        }
    })
    .await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let get = |path: &str| client().get(url(sy.plain_addrs[0], path).parse().unwrap());
    let mut stream = get("/stream").await.unwrap().into_body();
    assert_eq!(stream.frame().await.unwrap().unwrap().into_data().unwrap(), "first;");
    // The stream's connection is not lent out while its body is open.
    let quick = tokio::time::timeout(PATIENCE, get("/quick")).await.expect("queued behind a stream").unwrap();
    assert_eq!(read_body(quick).await, "quick");
    assert_eq!(up.connections(), 2);
    release_tx.send(true).unwrap();
    assert_eq!(stream.collect().await.unwrap().to_bytes(), "second");
    // Both went back to the pool once their bodies ended: no third connection.
    for _ in 0..3 {
        assert_eq!(read_body(get("/quick").await.unwrap()).await, "quick");
    }
    assert_eq!(up.connections(), 2);
}
