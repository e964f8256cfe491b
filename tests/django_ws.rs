//! WebSockets end to end with real Django: sessions written by Django resolve to the same
//! user in Switchyard, command views under gunicorn see `request.user` through the forwarded
//! cookie and verify the signature, state round-trips, hooks are logged exactly once, and a
//! logout closes the socket with 4401.

mod support;

use std::time::Duration;

use serde_json::json;
use support::browser::{json, Browser};
use support::ws::*;
use support::*;

struct Site {
    django: django::DjangoSite,
    sy: switchyard::server::Running,
    browser: Browser,
}

impl Site {
    async fn start() -> Self {
        Self::with("").await
    }

    /// The demo behind Switchyard with routes for every case; `extra` goes into `[websocket]`.
    async fn with(websocket: &str) -> Self {
        let django = django::start();
        let http = &django.http;
        let config = format!(
            r#"{base}
{sections}
[websocket]
{websocket}
[[routes]]
path = "/ws/"
on_connect = "{http}/ws/hooks/connect/"
on_disconnect = "{http}/ws/hooks/disconnect/"
[[routes]]
path = "/ws/private/"
auth = "authenticated"
[[routes]]
path = "/ws/staff/"
auth = "staff"
[commands."demo.*"]
backend = "http"
url = "{http}/ws/commands/{{command}}/"
[commands."chat.*"]
backend = "http"
url = "{http}/ws/commands/{{command}}/"
auth = "authenticated"
"#,
            base = minimal_config(&django.url, ""),
            sections = django.switchyard_sections(),
        );
        let sy = start_switchyard(&config).await;
        let browser = Browser { addr: sy.plain_addrs[0] };
        Self { django, sy, browser }
    }

    /// Opens a socket as a browser on this origin with `cookie` (may be empty).
    async fn socket(&self, path: &str, cookie: &str) -> Client {
        let origin = format!("http://{}", self.browser.host());
        let mut headers = vec![("origin", origin.as_str())];
        if !cookie.is_empty() {
            headers.push(("cookie", cookie));
        }
        connect_with(self.sy.plain_addrs[0], path, &headers).await.expect("upgrade accepted")
    }

    async fn logged_in(&self) -> String {
        self.browser.login("demo", "demo-password").await
    }
}

#[tokio::test]
async fn welcome_names_the_user_django_logged_in() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/", &cookie).await;
    let user = &welcome(&mut socket).await["user"];
    assert_eq!(user["username"], "demo");
    assert!(user["id"].is_string(), "ids are strings: {user}");
    assert_eq!(user["is_staff"], false);
    assert_eq!(user["is_superuser"], false);
}

#[tokio::test]
async fn command_view_sees_request_user_and_the_signed_payload_user() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/", &cookie).await;
    welcome(&mut socket).await;
    let reply = command(&mut socket, json!({"id": 1, "demo.whoami": null})).await;
    let result = &reply["demo.whoami"]["result"];
    assert_eq!(result["request_user"], "demo", "{reply}");
    assert_eq!(result["payload_user"]["username"], "demo", "{reply}");
}

#[tokio::test]
async fn state_round_trips_through_the_django_view() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/", "").await;
    welcome(&mut socket).await;
    for n in 1..=3 {
        let reply = command(&mut socket, json!({"id": n, "demo.count": null})).await;
        assert_eq!(reply["demo.count"]["result"]["count"], n, "{reply}");
    }
}

#[tokio::test]
async fn django_errors_become_command_errors() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/", "").await;
    welcome(&mut socket).await;
    let reply = command(&mut socket, json!({"id": 1, "demo.fail": {"status": 500}, "chat.send": {"text": "hi"}})).await;
    assert_eq!(reply["demo.fail"]["error"]["code"], "backend_error", "{reply}");
    assert_eq!(reply["chat.send"]["error"]["code"], "forbidden", "anonymous chat must be refused: {reply}");
}

#[tokio::test]
async fn chat_message_from_a_logged_in_user_reaches_every_socket() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut sender = site.socket("/ws/", &cookie).await;
    let mut listener = site.socket("/ws/", "").await;
    welcome(&mut sender).await;
    welcome(&mut listener).await;
    let reply = command(&mut sender, json!({"id": 1, "chat.send": {"text": "hello"}})).await;
    assert_eq!(reply["chat.send"]["result"]["ok"], true, "{reply}");
    let push = next_json(&mut listener).await;
    assert_eq!(push["push"]["event"], "chat.message");
    assert_eq!(push["push"]["data"]["text"], "hello");
    assert_eq!(push["push"]["data"]["user"], "demo");
}

#[tokio::test]
async fn anonymous_socket_on_an_authenticated_route_is_closed_with_4401() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/private/", "").await;
    assert_eq!(closed(&mut socket).await.0, 4401);
}

#[tokio::test]
async fn user_without_staff_on_a_staff_route_is_closed_with_4403() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/staff/", &cookie).await;
    assert_eq!(closed(&mut socket).await, (4403, "not allowed".to_string()));
}

#[tokio::test]
async fn logged_in_user_may_use_the_authenticated_route() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/private/", &cookie).await;
    assert_eq!(welcome(&mut socket).await["user"]["username"], "demo");
}

#[tokio::test]
async fn logout_closes_the_socket_with_4401() {
    let site = Site::with("revalidate = \"200ms\"").await;
    let cookie = site.logged_in().await;
    let mut socket = site.socket("/ws/private/", &cookie).await;
    welcome(&mut socket).await;
    site.browser.logout(&cookie).await;
    assert_eq!(closed(&mut socket).await, (4401, "session ended".to_string()));
}

#[tokio::test]
async fn hooks_are_logged_by_django_exactly_once() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/", "").await;
    let welcome = welcome(&mut socket).await;
    let id = welcome["connection"].as_str().unwrap().to_string();
    let reply = command(&mut socket, json!({"id": 1, "demo.whoami": null, "demo.count": null})).await;
    assert!(reply["demo.count"]["result"]["count"].is_number(), "{reply}");
    socket.close(None).await.unwrap();
    closed(&mut socket).await;
    let log_path = format!("/ws/hooks/log/?connection={id}");
    let mut calls = serde_json::Value::Null;
    for _ in 0..100 {
        calls = json(site.browser.send(site.browser.get(&log_path), bytes_body("")).await).await;
        if calls.to_string().contains("disconnect") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = calls.to_string();
    assert_eq!(text.matches("\"connect\"").count(), 1, "{text}");
    assert_eq!(text.matches("\"disconnect\"").count(), 1, "{text}");
}

#[tokio::test]
async fn on_connect_refusal_from_django_closes_with_its_code() {
    let site = Site::start().await;
    let mut socket = site.socket("/ws/?refuse=1", "").await;
    assert_eq!(closed(&mut socket).await, (4403, "refused by on_connect".to_string()));
}

#[tokio::test]
async fn unreachable_session_store_refuses_the_upgrade_with_503() {
    let site = Site::start().await;
    let cookie = site.logged_in().await;
    std::fs::remove_file(&site.django.db).unwrap();
    let origin = format!("http://{}", site.browser.host());
    let status =
        refused_status(site.sy.plain_addrs[0], "/ws/", &[("origin", origin.as_str()), ("cookie", cookie.as_str())])
            .await;
    assert_eq!(status, 503);
}
