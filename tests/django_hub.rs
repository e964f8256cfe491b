//! The hub with real Django sessions: revocation seen on the wire and through the admin
//! API, a stock Django logout honoured at the next handshake, personal channels.

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
    _django: django::DjangoSite,
    sy: switchyard::server::Running,
    browser: Browser,
}

impl Site {
    /// The demo behind Switchyard with the defaults users get, an admin listener, and a
    /// personal channel rule.
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
"#,
            base = minimal_config(&django.url, ""),
            sections = django.switchyard_sections(),
        );
        let env: HashMap<String, String> = [("ADMIN_KEY".to_string(), KEY.to_string())].into();
        let config = switchyard::config::parse(&config, "test.toml", Path::new("."), &env).expect("valid config");
        let sy = switchyard::server::start(Arc::new(config)).await.expect("switchyard starts");
        let browser = Browser { addr: sy.plain_addrs[0] };
        Self { _django: django, sy, browser }
    }

    async fn socket(&self, cookie: &str) -> (Client, Value) {
        let origin = format!("http://{}", self.browser.host());
        let mut headers = vec![("origin", origin.as_str())];
        if !cookie.is_empty() {
            headers.push(("cookie", cookie));
        }
        let mut client = connect_with(self.sy.plain_addrs[0], "/ws/", &headers).await.expect("upgrade accepted");
        let welcome = welcome(&mut client).await;
        (client, welcome)
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
