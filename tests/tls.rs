//! TLS listeners: HTTP/2 and HTTP/1.1 clients that trust the dev certificate's CA, and a
//! WebSocket over TLS (wss) end to end.

mod support;

use http::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A TLS connector that trusts only the dev CA and offers `alpn`.
fn connector(ca: &std::path::Path, alpn: &[&[u8]]) -> TlsConnector {
    support::tls::connector(&[ca], alpn)
}

async fn tls_switchyard(upstream_url: &str) -> (switchyard::server::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    switchyard::devcert::write(dir.path(), switchyard::devcert::Overwrite::Refuse).unwrap();
    let config = format!(
        "[server]\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"localhost.pem\"\nkey = \"localhost-key.pem\"\n[upstream]\nurl = \"{upstream_url}\"\n[[routes]]\npath = \"/ws/\"\n"
    );
    let sy = switchyard::server::start(config_in(dir.path(), &config)).await.unwrap();
    (sy, dir)
}

/// An upstream that says which protocol, Host and scheme it saw, and its Cookie fields.
async fn protocol_echo() -> Upstream {
    upstream(|req: Request<hyper::body::Incoming>| async move {
        let header = |name: &str| req.headers().get(name).map(|h| h.to_str().unwrap().to_string()).unwrap_or_default();
        let (host, proto) = (header("host"), header("x-forwarded-proto"));
        let cookies: Vec<&str> = req.headers().get_all("cookie").iter().map(|v| v.to_str().unwrap()).collect();
        let cookie = format!("{} field(s): {}", cookies.len(), cookies.join(" | "));
        hyper::Response::new(bytes_body(format!("{:?} host={host} proto={proto} cookie={cookie}", req.version())))
    })
    .await
}

#[tokio::test]
async fn http2_client_over_tls_trusting_the_dev_ca_is_served() {
    let up = protocol_echo().await;
    let (sy, dir) = tls_switchyard(&up.url).await;
    let tcp = TcpStream::connect(sy.tls_addrs[0]).await.unwrap();
    let tls = connector(&dir.path().join("localhost-ca.pem"), &[b"h2"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the dev certificate is trusted for localhost");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let port = sy.tls_addrs[0].port();
    let request = Request::get(format!("https://localhost:{port}/page"))
        .header("cookie", "a=1")
        .header("cookie", "sessionid=abc")
        .body(bytes_body(""))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    // The upstream speaks HTTP/1.1 and sees the :authority as Host, https as the scheme,
    // and the two HTTP/2 cookie fields as the one Cookie header HTTP/1.1 allows.
    let text = String::from_utf8(read_body(response).await.to_vec()).unwrap();
    assert_eq!(text, format!("HTTP/1.1 host=localhost:{port} proto=https cookie=1 field(s): a=1; sessionid=abc"));
}

#[tokio::test]
async fn http1_client_over_tls_is_served() {
    let up = protocol_echo().await;
    let (sy, dir) = tls_switchyard(&up.url).await;
    let tcp = TcpStream::connect(sy.tls_addrs[0]).await.unwrap();
    let tls = connector(&dir.path().join("localhost-ca.pem"), &[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = Request::get("/page").header("host", "localhost").body(bytes_body("")).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(read_body(response).await, "HTTP/1.1 host=localhost proto=https cookie=0 field(s): ");
}

#[tokio::test]
async fn certificate_for_another_name_is_refused_by_the_client() {
    let up = protocol_echo().await;
    let (sy, dir) = tls_switchyard(&up.url).await;
    let tcp = TcpStream::connect(sy.tls_addrs[0]).await.unwrap();
    let result = connector(&dir.path().join("localhost-ca.pem"), &[b"h2"])
        .connect(ServerName::try_from("example.com").unwrap(), tcp)
        .await;
    assert!(result.is_err(), "a certificate for localhost must not pass as example.com");
}

#[tokio::test]
async fn unusable_certificate_fails_the_start_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let config = "[server]\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n";
    let err = switchyard::server::start(config_in(dir.path(), config)).await.unwrap_err();
    assert!(err.to_string().contains("cert.pem"), "{err}");
}

#[tokio::test]
async fn websocket_over_tls_is_served_with_the_https_origin() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let up = protocol_echo().await;
    let (sy, dir) = tls_switchyard(&up.url).await;
    let port = sy.tls_addrs[0].port();
    let tcp = TcpStream::connect(sy.tls_addrs[0]).await.unwrap();
    let tls = connector(&dir.path().join("localhost-ca.pem"), &[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{port}/ws/").into_client_request().unwrap();
    // Over TLS the page's own origin is https://: the default origin rule must see that.
    request.headers_mut().insert("origin", format!("https://localhost:{port}").parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::client_async(request, tls).await.expect("wss upgrade accepted");
    assert_eq!(response.status(), 101);
    assert_eq!(ws::welcome(&mut socket).await["user"], serde_json::Value::Null);
    let reply = ws::command(&mut socket, serde_json::json!({"id": 1, "echo": "over tls"})).await;
    assert_eq!(reply["echo"]["result"], "over tls");
    socket.close(None).await.unwrap();
}
