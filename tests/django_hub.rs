//! The hub with real Django sessions: revocation seen on the wire and through the admin
//! API, a stock Django logout honoured at the next handshake, personal channels, channels
//! Django's authorize view opens (its answer cached), presence across one user's tabs,
//! resume tokens held to their user and to one use.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use http::Request;
use serde_json::{json, Value};
use support::browser::Browser;
use support::ws::*;
use support::*;

const KEY: &str = "admin-key";

struct Site {
    django: django::DjangoSite,
    sy: switchyard::server::Running,
    browser: Browser,
}

impl Site {
    /// The demo behind Switchyard with the defaults users get, an admin listener, a
    /// personal channel rule, `project:*` asking the demo's authorize view, and `room:*`
    /// with presence.
    async fn start() -> Self {
        let django = django::start();
        let config = format!(
            r#"{base}
{sections}
[admin]
listen = "127.0.0.1:0"
key_env = "ADMIN_KEY"
[[routes]]
path = "/ws/"
[[channels]]
pattern = "user:{{user_id}}"
subscribe = "authenticated"
[[channels]]
pattern = "project:*"
subscribe = "backend"
authorize = "{http}/ws/authorize/"
[[channels]]
pattern = "room:*"
subscribe = "anyone"
presence = true
"#,
            base = minimal_config(&django.url, ""),
            sections = django.switchyard_sections(),
            http = django.http,
        );
        let env: HashMap<String, String> = [("ADMIN_KEY".to_string(), KEY.to_string())].into();
        let config = switchyard::config::parse(&config, "test.toml", Path::new("."), &env).expect("valid config");
        let sy = switchyard::server::start(Arc::new(config)).await.expect("switchyard starts");
        let browser = Browser { addr: sy.plain_addrs[0] };
        Self { django, sy, browser }
    }

    /// A socket on `/ws/` as a browser holding `cookie` ("" for none); gives its welcome.
    async fn socket(&self, cookie: &str) -> (Client, Value) {
        self.socket_at(cookie, "/ws/").await
    }

    async fn socket_at(&self, cookie: &str, path: &str) -> (Client, Value) {
        let origin = format!("http://{}", self.browser.host());
        let mut headers = vec![("origin", origin.as_str())];
        if !cookie.is_empty() {
            headers.push(("cookie", cookie));
        }
        let mut client = connect_with(self.sy.plain_addrs[0], path, &headers).await.expect("upgrade accepted");
        let welcome = welcome(&mut client).await;
        (client, welcome)
    }

    async fn admin_get(&self, path: &str) -> Value {
        let request = Request::get(url(self.sy.admin_addr.unwrap(), path))
            .header("authorization", format!("Bearer {KEY}"))
            .body(bytes_body(""))
            .unwrap();
        support::browser::json(client().request(request).await.unwrap()).await
    }

    async fn admin(&self, path: &str, body: Value) -> u16 {
        let request = Request::post(url(self.sy.admin_addr.unwrap(), path))
            .header("authorization", format!("Bearer {KEY}"))
            .body(bytes_body(body.to_string()))
            .unwrap();
        client().request(request).await.unwrap().status().as_u16()
    }
}

fn session_key(cookie: &str) -> &str {
    cookie.split("; ").find_map(|c| c.strip_prefix("sessionid=")).expect("a sessionid")
}

#[tokio::test]
async fn a_stock_django_logout_refuses_the_old_cookie_at_the_next_handshake() {
    let site = Site::start().await;
    let cookie = site.browser.login("demo", "demo-password").await;
    assert_eq!(site.socket(&cookie).await.1["user"]["username"], "demo");
    site.browser.logout(&cookie).await;
    assert_eq!(site.socket(&cookie).await.1["user"], Value::Null, "the logged-out cookie still opened as demo");
}

#[tokio::test]
async fn a_logout_seen_on_the_wire_closes_that_sessions_sockets_at_once() {
    let site = Site::start().await;
    let cookie = site.browser.login("demo", "demo-password").await;
    let other = site.browser.login("demo", "demo-password").await;
    let (mut mine, _) = site.socket(&cookie).await;
    let (mut theirs, _) = site.socket(&other).await;
    site.browser.logout(&cookie).await;
    assert_eq!(closed(&mut mine).await, (4401, "logged out".to_string()));
    let reply = command(&mut theirs, json!({"id": 1, "ping": null})).await;
    assert_eq!(reply["ping"]["result"], "pong", "another session of the same user was closed");
}

#[tokio::test]
async fn admin_disconnect_closes_the_named_session_or_user_and_only_those() {
    let site = Site::start().await;
    let first = site.browser.login("demo", "demo-password").await;
    let second = site.browser.login("demo", "demo-password").await;
    let (mut a, _) = site.socket(&first).await;
    let (mut b, _) = site.socket(&second).await;
    let (mut anonymous, _) = site.socket("").await;
    assert_eq!(site.admin("/api/disconnect", json!({"session_key": session_key(&first)})).await, 200);
    assert_eq!(closed(&mut a).await.0, 4401);
    assert_eq!(command(&mut b, json!({"id": 1, "ping": null})).await["ping"]["result"], "pong");
    let (_, welcome) = site.socket(&second).await;
    let id = welcome["user"]["id"].clone();
    assert_eq!(site.admin("/api/disconnect", json!({"user": id})).await, 200);
    assert_eq!(closed(&mut b).await.0, 4401);
    assert_eq!(command(&mut anonymous, json!({"id": 2, "ping": null})).await["ping"]["result"], "pong");
}

#[tokio::test]
async fn a_personal_channel_is_the_users_own_only() {
    let site = Site::start().await;
    let cookie = site.browser.login("demo", "demo-password").await;
    let (mut socket, welcome) = site.socket(&cookie).await;
    let own = format!("user:{}", welcome["user"]["id"].as_str().unwrap());
    let reply = command(&mut socket, json!({"id": 1, "subscribe": [own, "user:999999"]})).await;
    assert_eq!(reply["subscribe"]["result"][0]["offset"], 0, "{reply}");
    assert_eq!(reply["subscribe"]["result"][1]["error"]["code"], "forbidden", "{reply}");
}

/// How often the demo's authorize view was asked on connection `welcome`'s behalf.
async fn authorize_calls(site: &Site, welcome: &Value) -> usize {
    let calls = site.django.hook_log(welcome["connection"].as_str().unwrap()).await;
    calls.iter().filter(|c| c["kind"] == "authorize").count()
}

#[tokio::test]
async fn a_backend_channel_asks_django_once_and_reuses_the_answer_within_its_ttl() {
    let site = Site::start().await;
    let cookie = site.browser.login("demo", "demo-password").await;
    let (mut first, first_welcome) = site.socket(&cookie).await;
    let reply = command(&mut first, json!({"id": 1, "subscribe": "project:alpha"})).await;
    assert_eq!(reply["subscribe"]["result"]["offset"], 0, "Django's view allows it: {reply}");
    assert_eq!(authorize_calls(&site, &first_welcome).await, 1);
    // Again on the same socket, and from a second tab of the same user: no new call.
    assert!(
        command(&mut first, json!({"id": 2, "unsubscribe": "project:alpha"})).await["unsubscribe"]["error"].is_null()
    );
    let reply = command(&mut first, json!({"id": 3, "subscribe": "project:alpha"})).await;
    assert_eq!(reply["subscribe"]["result"]["offset"], 0, "{reply}");
    let (mut second, second_welcome) = site.socket(&cookie).await;
    let reply = command(&mut second, json!({"id": 1, "subscribe": "project:alpha"})).await;
    assert_eq!(reply["subscribe"]["result"]["offset"], 0, "{reply}");
    assert_eq!(authorize_calls(&site, &first_welcome).await, 1, "the same socket asked again");
    assert_eq!(authorize_calls(&site, &second_welcome).await, 0, "the second tab asked again");
}

#[tokio::test]
async fn a_backend_channel_django_refuses_is_forbidden() {
    let site = Site::start().await;
    let cookie = site.browser.login("demo", "demo-password").await;
    let (mut socket, welcome) = site.socket(&cookie).await;
    let reply = command(&mut socket, json!({"id": 1, "subscribe": "project:staff"})).await;
    assert_eq!(reply["subscribe"]["error"]["code"], "forbidden", "{reply}");
    assert_eq!(authorize_calls(&site, &welcome).await, 1, "Django was asked");
}

/// Publishes a `marker` event to `channel` through the admin API.
async fn mark(site: &Site, channel: &str, n: u64) {
    let item = json!({"channel": channel, "event": "marker", "data": n});
    assert_eq!(site.admin("/api/publish", item).await, 200);
}

/// Sockets subscribed to `channel` (anonymous included), as the admin API counts them.
async fn present(site: &Site, channel: &str) -> u64 {
    site.admin_get(&format!("/api/presence?channel={channel}")).await["count"].as_u64().unwrap()
}

#[tokio::test]
async fn presence_counts_a_users_tabs_as_one_join_and_one_leave() {
    let site = Site::start().await;
    let cookie = site.browser.login("demo", "demo-password").await;
    let (mut watcher, _) = site.socket("").await;
    command(&mut watcher, json!({"id": 1, "subscribe": "room:lobby"})).await;
    let (mut tab1, welcome) = site.socket(&cookie).await;
    command(&mut tab1, json!({"id": 1, "subscribe": "room:lobby"})).await;
    let joined = next_json(&mut watcher).await;
    assert_eq!(joined["join"]["user"], welcome["user"], "{joined}");
    assert_eq!(joined["join"]["channel"], "room:lobby");

    // The second tab joins: the next frame the watcher gets is the marker, not a join.
    let (mut tab2, _) = site.socket(&cookie).await;
    command(&mut tab2, json!({"id": 1, "subscribe": "room:lobby"})).await;
    mark(&site, "room:lobby", 1).await;
    assert_eq!(next_json(&mut watcher).await["push"]["data"], 1, "a second join for the second tab");

    // One of the two closes: no leave.
    tab2.close(None).await.unwrap();
    eventually("the closed tab has left the room", || async { present(&site, "room:lobby").await == 2 }).await;
    mark(&site, "room:lobby", 2).await;
    assert_eq!(next_json(&mut watcher).await["push"]["data"], 2, "a leave while a tab is still open");

    // The last one closes: the leave.
    tab1.close(None).await.unwrap();
    let left = next_json(&mut watcher).await;
    assert_eq!(left["leave"]["user"], welcome["user"], "{left}");
}

/// Opens sockets with `?resume=token` as `cookie`'s user until the token's socket has
/// parked (it closes asynchronously: until then the token is unknown); gives the welcome.
async fn resume_as(site: &Site, cookie: &str, token: &str) -> (Client, Value) {
    let path = format!("/ws/?resume={token}");
    wait_for("the old socket parks its subscriptions", || async {
        let (socket, welcome) = site.socket_at(cookie, &path).await;
        (welcome["resumed"]["reason"] != UNKNOWN_TOKEN).then_some((socket, welcome))
    })
    .await
}

/// The `resumed.reason` of a token nobody parked (or already used).
const UNKNOWN_TOKEN: &str = "the resume token is unknown, used or expired";

/// Demo's socket on its personal channel, closed; gives its resume token and the channel.
async fn parked_personal_socket(site: &Site, cookie: &str) -> (String, String) {
    let (mut socket, welcome) = site.socket(cookie).await;
    let channel = format!("user:{}", welcome["user"]["id"].as_str().unwrap());
    command(&mut socket, json!({"id": 1, "subscribe": channel})).await;
    socket.close(None).await.unwrap();
    (welcome["resume"].as_str().unwrap().to_owned(), channel)
}

#[tokio::test]
async fn a_resume_token_is_refused_to_another_user() {
    let site = Site::start().await;
    let cookie = site.browser.login("demo", "demo-password").await;
    let (user, password) = django::OTHER_USER;
    let other = site.browser.login(user, password).await;
    let (token, channel) = parked_personal_socket(&site, &cookie).await;
    let (mut thief, welcome) = resume_as(&site, &other, &token).await;
    assert_eq!(welcome["user"]["username"], user);
    assert_eq!(
        welcome["resumed"],
        json!({"ok": false, "recovered": false, "reason": "the resume token belongs to another user"})
    );
    // Nothing of demo's reaches the other user: the next frame after an event on demo's
    // personal channel is the reply to a ping.
    mark(&site, &channel, 1).await;
    assert_eq!(next_json_after_ping(&mut thief).await, json!({"id": 9, "ping": {"result": "pong"}}));
}

#[tokio::test]
async fn a_resume_token_is_refused_on_its_second_use() {
    let site = Site::start().await;
    let cookie = site.browser.login("demo", "demo-password").await;
    let (token, channel) = parked_personal_socket(&site, &cookie).await;
    let (mut resumed, welcome) = resume_as(&site, &cookie, &token).await;
    assert_eq!(welcome["resumed"]["ok"], true, "{welcome}");
    assert_eq!(welcome["resumed"]["channels"][0]["channel"], channel.as_str(), "{welcome}");
    resumed.close(None).await.unwrap();
    let (mut again, welcome) = site.socket_at(&cookie, &format!("/ws/?resume={token}")).await;
    assert_eq!(welcome["resumed"], json!({"ok": false, "recovered": false, "reason": UNKNOWN_TOKEN}));
    mark(&site, &channel, 1).await;
    assert_eq!(next_json_after_ping(&mut again).await, json!({"id": 9, "ping": {"result": "pong"}}));
}

/// Sends a ping and gives the next frame: the pong unless something was queued before it.
async fn next_json_after_ping(socket: &mut Client) -> Value {
    use futures_util::SinkExt;
    let ping = json!({"id": 9, "ping": null}).to_string();
    socket.send(tokio_tungstenite::tungstenite::Message::text(ping)).await.unwrap();
    next_json(socket).await
}
