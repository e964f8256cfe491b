//! Header, Host and method rules through real sockets: forwarding claims from untrusted
//! peers, underscore names, trailers over HTTP/2, one set of forwarding facts for proxied
//! requests and backend calls alike, Host required and unambiguous, CONNECT refused, an
//! unasked upstream 101 refused, and an upstream's conflicting framing never cutting a body.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use support::ws::{command, welcome};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that answers with a JSON object of the request headers (and trailers) it
/// saw; as a command backend its reply's `result` is that object too.
async fn header_echo() -> Upstream {
    upstream(|req: Request<Incoming>| async move {
        let mut seen = serde_json::Map::new();
        for (name, value) in req.headers() {
            seen.insert(name.as_str().to_string(), value.to_str().unwrap_or("").into());
        }
        let collected = req.into_body().collect().await.unwrap();
        if let Some(trailers) = collected.trailers() {
            seen.insert("trailers".into(), trailers.keys().map(|k| k.as_str()).collect::<Vec<_>>().into());
        }
        let seen = serde_json::Value::Object(seen);
        Response::new(bytes_body(json!({"result": seen}).to_string()))
    })
    .await
}

/// Sends raw bytes and returns what came back before the server stopped sending.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer[..n]).to_string()
}

async fn seen(sy: &switchyard::server::Running, request: &str) -> serde_json::Value {
    let answer = raw(sy.plain_addrs[0], request).await;
    let body = answer.split_once("\r\n\r\n").expect("a whole response").1;
    serde_json::from_str::<serde_json::Value>(body).unwrap_or_else(|_| panic!("{answer}"))["result"].clone()
}

#[tokio::test]
async fn forwarding_claims_and_underscore_names_from_an_untrusted_peer_never_reach_django() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let seen = seen(
        &sy,
        "GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Scheme: https\r\nX-Client-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX_Switchyard_User: 1\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n",
    )
    .await;
    let names: Vec<&String> = seen.as_object().unwrap().keys().collect();
    for gone in ["x-real-ip", "x-forwarded-port", "x-forwarded-ssl", "x-forwarded-scheme", "x-client-ip", "forwarded"] {
        assert!(!names.iter().any(|n| *n == gone), "{gone} reached Django: {names:?}");
    }
    assert!(names.iter().all(|n| !n.contains('_')), "{names:?}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn connection_naming_host_keeps_host() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let seen = seen(&sy, "GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: Host, close\r\n\r\n").await;
    assert_eq!(seen["host"], "shop.example");
}

#[tokio::test]
async fn request_without_host_is_400() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let answer = raw(sy.plain_addrs[0], "GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 ") && answer.contains("Host header is required"), "{answer}");
}

#[tokio::test]
async fn request_with_two_hosts_is_400() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let answer = raw(sy.plain_addrs[0], "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 ") && answer.contains("more than one Host"), "{answer}");
}

#[tokio::test]
async fn connect_is_405() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let answer = raw(sy.plain_addrs[0], "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
}

/// An HTTP/2 connection (prior knowledge, no TLS needed) to Switchyard.
async fn http2(sy: &switchyard::server::Running) -> hyper::client::conn::http2::SendRequest<switchyard::body::Body> {
    let tcp = TcpStream::connect(sy.plain_addrs[0]).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn http2_authority_and_host_that_disagree_is_400() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let mut h2 = http2(&sy).await;
    let request = Request::get("http://a.example/").header("host", "b.example").body(bytes_body("")).unwrap();
    let response = h2.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let request = Request::get("http://a.example/").header("host", "a.example").body(bytes_body("")).unwrap();
    assert_eq!(h2.send_request(request).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn request_trailers_over_http2_never_reach_django() {
    let up = header_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let mut h2 = http2(&sy).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, switchyard::body::BoxError>>(2);
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))).boxed();
    tokio::spawn(async move {
        tx.send(Ok(Frame::data(Bytes::from_static(b"data")))).await.unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-switchyard-user", "1".parse().unwrap());
        trailers.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
    });
    let request = Request::post("http://a.example/").body(body).unwrap();
    let response = h2.send_request(request).await.unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&read_body(response).await).unwrap();
    assert!(seen["result"].get("trailers").is_none(), "{seen}");
    assert_eq!(seen["result"]["x-forwarded-for"], "127.0.0.1");
}

/// Behind a trusted proxy, Django's pages and the command views are told the same
/// scheme and chain: both come from one place.
#[tokio::test]
async fn proxied_requests_and_backend_calls_carry_the_same_forwarding_facts() {
    let up = header_echo().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\"]\n[upstream]\nurl = \"{url}\"\n[backends]\nsecret_env = \"SY_SECRET\"\n[commands.\"t.*\"]\nbackend = \"http\"\nurl = \"{url}/ws/commands/{{command}}/\"\n[[routes]]\npath = \"/ws/\"\norigins = [\"https://shop.example\"]\n",
        url = up.url
    );
    let env: std::collections::HashMap<&str, &str> = [("SY_SECRET", "s")].into();
    let config = Arc::new(switchyard::config::parse(&config, "t.toml", std::path::Path::new("."), &env).unwrap());
    let sy = switchyard::server::start(config).await.unwrap();
    let claims = [("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")];
    let mut request = Request::get(url(sy.plain_addrs[0], "/page"));
    for (k, v) in claims {
        request = request.header(k, v);
    }
    let page: serde_json::Value = serde_json::from_slice(
        &read_body(client().request(request.body(bytes_body("")).unwrap()).await.unwrap()).await,
    )
    .unwrap();
    let mut headers = vec![("origin", "https://shop.example")];
    headers.extend(claims);
    let mut socket = support::ws::connect_with(sy.plain_addrs[0], "/ws/", &headers).await.unwrap();
    welcome(&mut socket).await;
    let call = command(&mut socket, json!({"id": 1, "t.echo": {}})).await;
    let call = &call["t.echo"]["result"];
    assert_eq!(page["result"]["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(call["x-forwarded-for"], page["result"]["x-forwarded-for"]);
    assert_eq!(call["x-forwarded-proto"], "https");
    assert_eq!(call["x-forwarded-proto"], page["result"]["x-forwarded-proto"]);
}

/// An upstream on a raw socket that answers every request with `answer`.
async fn raw_upstream(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn upstream_101_to_a_plain_request_is_502() {
    let up = raw_upstream(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n").await;
    let sy = start_switchyard(&minimal_config(&up, "")).await;
    let response = client().get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
}

/// 66 bytes in chunks under a `Content-Length: 3`: the chunked framing wins and the
/// length never travels, so the browser gets every byte and the connection stays usable.
#[tokio::test]
async fn upstream_content_length_beside_chunked_never_cuts_the_body() {
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n21\r\n0123456789abcdef0123456789abcdef!\r\n21\r\n0123456789abcdef0123456789abcdef!\r\n0\r\n\r\n";
    let up = raw_upstream(ANSWER).await;
    for buffering in ["true", "false"] {
        let extra = format!("[buffering]\nresponses = {buffering}\n");
        let sy = start_switchyard(&format!("{}{extra}", minimal_config(&up, ""))).await;
        let client = client();
        for _ in 0..2 {
            let response = client.get(url(sy.plain_addrs[0], "/").parse().unwrap()).await.unwrap();
            assert!(response.headers().get("content-length").is_none_or(|v| v != "3"), "buffering = {buffering}");
            assert_eq!(read_body(response).await.len(), 66, "buffering = {buffering}");
        }
    }
}
