//! A real WebSocket client (tokio-tungstenite) for integration tests.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::PATIENCE;

/// A connected test client.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `ws://ADDR/PATH` with the same-origin `Origin` header (as a browser would).
pub async fn connect(addr: SocketAddr, path: &str) -> Client {
    let origin = format!("http://{addr}");
    connect_with(addr, path, &[("origin", origin.as_str())]).await.expect("upgrade accepted")
}

/// Opens a socket with exactly these extra headers; Err carries a refused handshake.
pub async fn connect_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Client, tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let (client, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(client)
}

/// The HTTP status of a refused upgrade.
pub async fn refused_status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    match connect_with(addr, path, headers).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the upgrade was accepted"),
    }
}

/// The next data message (pings and pongs skipped). Every reader here takes a socket
/// over any stream: plain TCP ([`Client`]) or TLS.
pub async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(client: &mut WebSocketStream<S>) -> Message {
    loop {
        let msg = tokio::time::timeout(PATIENCE, client.next()).await.expect("a frame within the patience");
        match msg.expect("the socket is open").expect("a readable frame") {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// The next text frame as JSON.
pub async fn next_json<S: AsyncRead + AsyncWrite + Unpin>(client: &mut WebSocketStream<S>) -> Value {
    match next_message(client).await {
        Message::Text(text) => serde_json::from_str(&text).expect("server frames are JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Reads the welcome frame and returns its content.
pub async fn welcome<S: AsyncRead + AsyncWrite + Unpin>(client: &mut WebSocketStream<S>) -> Value {
    let frame = next_json(client).await;
    frame.get("welcome").cloned().unwrap_or_else(|| panic!("first frame is not a welcome: {frame}"))
}

/// Sends `frame` (it must carry `id`) and returns the reply with that id, skipping pushes.
pub async fn command<S: AsyncRead + AsyncWrite + Unpin>(client: &mut WebSocketStream<S>, frame: Value) -> Value {
    let id = frame["id"].clone();
    client.send(Message::text(frame.to_string())).await.unwrap();
    loop {
        let reply = next_json(client).await;
        if reply.get("id") == Some(&id) {
            return reply;
        }
    }
}

/// Waits for the server's close frame, then finishes the closing handshake as a browser
/// does (reading on sends our close reply); returns the server's code and reason.
pub async fn closed<S: AsyncRead + AsyncWrite + Unpin>(client: &mut WebSocketStream<S>) -> (u16, String) {
    let outcome = loop {
        match next_message(client).await {
            Message::Close(Some(frame)) => break (u16::from(frame.code), frame.reason.to_string()),
            Message::Close(None) => break (1005, String::new()),
            _ => continue,
        }
    };
    let _ = tokio::time::timeout(PATIENCE, async { while let Some(Ok(_)) = client.next().await {} }).await;
    outcome
}
