//! `X-Request-Id` through real sockets: made per request, or taken from a trusted proxy
//! when well-formed; the same id reaches Django (an echoing upstream, and a WSGI app under
//! a real gunicorn), comes back on the response, is in the access line (text and JSON), and
//! goes with every backend call a socket makes, so Django's log of a command can be matched
//! to the socket.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use support::ws::{command, welcome};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An upstream that answers with the `X-Request-Id` it was sent (empty when none): as a
/// command backend its `result` is that id, as a `view` the one message it sends back.
async fn id_echo() -> Upstream {
    upstream(|req: Request<Incoming>| async move {
        let id = req.headers().get("x-request-id").map_or("", |v| v.to_str().unwrap_or("?")).to_string();
        Response::new(bytes_body(json!({"result": id, "messages": [id]}).to_string()))
    })
    .await
}

/// The id Django saw and the one the response carries.
async fn ids(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> (String, String) {
    let mut request = Request::get(url(addr, "/page"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client().request(request.body(bytes_body("")).unwrap()).await.unwrap();
    let returned = response.headers().get("x-request-id").expect("the response has an id").to_str().unwrap();
    let returned = returned.to_string();
    let seen: serde_json::Value = serde_json::from_slice(&read_body(response).await).unwrap();
    (seen["result"].as_str().unwrap().to_string(), returned)
}

fn is_ours(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

const TRUSTING: &str = "trusted_proxies = [\"127.0.0.1\"]\n";

async fn trusting(up: &Upstream) -> switchyard::server::Running {
    start_switchyard(&minimal_config(&up.url, "").replace("[upstream]", &format!("{TRUSTING}[upstream]"))).await
}

#[tokio::test]
async fn each_request_gets_its_own_id_which_reaches_django_and_comes_back() {
    let up = id_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let mut all = HashSet::new();
    for _ in 0..50 {
        let (seen, returned) = ids(sy.plain_addrs[0], &[]).await;
        assert!(is_ours(&seen), "{seen:?}");
        assert_eq!(seen, returned);
        all.insert(seen);
    }
    assert_eq!(all.len(), 50, "ids repeat");
}

#[tokio::test]
async fn the_id_reaches_a_wsgi_app_under_gunicorn() {
    let gunicorn = support::gunicorn::start("workers", 1);
    let sy = start_switchyard(&minimal_config(&gunicorn.url, "")).await;
    let response = client().get(url(sy.plain_addrs[0], "/request-id").parse().unwrap()).await.unwrap();
    let returned = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(read_body(response).await, returned.as_bytes(), "environ's HTTP_X_REQUEST_ID");
    assert!(is_ours(&returned), "{returned}");
}

#[tokio::test]
async fn an_untrusted_peers_id_is_replaced() {
    let up = id_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let (seen, returned) = ids(sy.plain_addrs[0], &[("x-request-id", "chosen-by-the-browser")]).await;
    assert!(is_ours(&seen), "{seen:?}");
    assert_eq!(seen, returned);
}

#[tokio::test]
async fn a_trusted_proxys_id_is_kept() {
    let up = id_echo().await;
    let sy = trusting(&up).await;
    let id = "Root=1-67891233-abcdef012345678912345678";
    assert_eq!(ids(sy.plain_addrs[0], &[("x-request-id", id)]).await, (id.to_string(), id.to_string()));
}

#[tokio::test]
async fn a_trusted_proxys_malformed_id_is_replaced() {
    let up = id_echo().await;
    let sy = trusting(&up).await;
    let long = "a".repeat(129);
    for bad in ["two words", "<script>alert(1)</script>", "quote\"d", "new%0Aline", long.as_str()] {
        let (seen, returned) = ids(sy.plain_addrs[0], &[("x-request-id", bad)]).await;
        assert!(is_ours(&seen), "{bad:?} was passed on as {seen:?}");
        assert_eq!(seen, returned, "{bad:?}");
    }
}

#[tokio::test]
async fn a_trusted_proxys_two_ids_are_both_replaced() {
    let up = id_echo().await;
    let sy = trusting(&up).await;
    let (seen, _) = ids(sy.plain_addrs[0], &[("x-request-id", "one"), ("x-request-id", "two")]).await;
    assert!(is_ours(&seen), "{seen:?}");
}

#[tokio::test]
async fn answers_switchyard_gives_itself_carry_an_id_too() {
    let (up, _) = counting_upstream(None).await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    for path in ["/_switchyard/client.js", "/ws/nowhere"] {
        let request = Request::get(url(sy.plain_addrs[0], path))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(bytes_body(""))
            .unwrap();
        let response = client().request(request).await.unwrap();
        let id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
        assert!(id.as_deref().is_some_and(is_ours), "{path}: {:?} {id:?}", response.status());
    }
}

#[tokio::test]
async fn the_json_access_line_carries_the_id() {
    let logs = support::logs::capture("switchyard::access=info");
    let up = id_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let (_, returned) = ids(sy.plain_addrs[0], &[]).await;
    let line = wait_for("the access line", || {
        std::future::ready(logs.lines().into_iter().find(|l| l["target"] == "switchyard::access"))
    })
    .await;
    assert_eq!(line["fields"]["request_id"], returned.as_str(), "{line}");
}

#[tokio::test]
async fn the_text_access_line_carries_the_id() {
    let logs = support::logs::capture_text("switchyard::access=info");
    let up = id_echo().await;
    let sy = start_switchyard(&minimal_config(&up.url, "")).await;
    let (_, returned) = ids(sy.plain_addrs[0], &[]).await;
    let line = wait_for("the access line", || {
        std::future::ready(logs.text().lines().find(|l| l.contains("switchyard::access")).map(str::to_string))
    })
    .await;
    assert!(line.contains(&format!("request_id={returned}")), "{line}");
}

/// Switchyard with a command backend (`t.*`) on `/ws/` and a `view` route on `/live/`,
/// both answered by `up`.
async fn with_backends(up: &Upstream) -> switchyard::server::Running {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"{url}\"\n[backends]\nsecret_env = \"SY_SECRET\"\n[commands.\"t.*\"]\nbackend = \"http\"\nurl = \"{url}/ws/commands/{{command}}/\"\n[[routes]]\npath = \"/ws/\"\n[[routes]]\npath = \"/live/\"\nprotocol = \"view\"\nview = \"{url}{{path}}\"\n",
        url = up.url
    );
    let env: std::collections::HashMap<&str, &str> = [("SY_SECRET", "s")].into();
    let config = Arc::new(switchyard::config::parse(&config, "t.toml", std::path::Path::new("."), &env).unwrap());
    switchyard::server::start(config).await.unwrap()
}

/// Opens a same-origin socket on `path`; the socket and its upgrade's `X-Request-Id`.
async fn socket(addr: std::net::SocketAddr, path: &str) -> (support::ws::Client, String) {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request.headers_mut().insert("origin", format!("http://{addr}").parse().unwrap());
    let (socket, upgraded) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(upgraded.status(), StatusCode::SWITCHING_PROTOCOLS);
    let id = upgraded.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(is_ours(&id), "{id}");
    (socket, id)
}

#[tokio::test]
async fn a_command_backend_call_carries_the_sockets_id() {
    let up = id_echo().await;
    let sy = with_backends(&up).await;
    let (mut socket, socket_id) = socket(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut socket).await;
    for n in 1..=2 {
        let reply = command(&mut socket, json!({"id": n, "t.echo": {}})).await;
        assert_eq!(reply["t.echo"]["result"], socket_id.as_str(), "call {n}: {reply}");
    }
}

#[tokio::test]
async fn a_view_post_carries_the_sockets_id() {
    use futures_util::SinkExt;
    let up = id_echo().await;
    let sy = with_backends(&up).await;
    let (mut socket, socket_id) = socket(sy.plain_addrs[0], "/live/").await;
    socket.send(tokio_tungstenite::tungstenite::Message::text("hello")).await.unwrap();
    let answer = support::ws::next_message(&mut socket).await;
    assert_eq!(answer.to_text().unwrap(), socket_id);
}
